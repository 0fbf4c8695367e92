"""Helpers of ``python -m tools.train``: the training config, the weight EMA, the per-family loss and init."""
