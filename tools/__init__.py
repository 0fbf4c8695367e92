"""Command-line tools (benchmarks, evaluation, data preparation); run them as scripts or ``python -m tools.X``."""
