"""Helpers of the training tools (``tools/train.py``): the detector speed bench."""
