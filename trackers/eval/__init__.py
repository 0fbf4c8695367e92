"""Evaluation helpers (KITTI I/O, peer adapters, trackeval scoring); not used at runtime."""
