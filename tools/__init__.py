"""Command-line tools (evaluation, training, data preparation): run each as ``python -m tools.NAME`` from the
repository root.  Benchmarks live in ``bench/``; nothing here imports ``bench``."""
