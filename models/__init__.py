"""Detector models: the single-scale fast family (ResNet18 / MobileNetV2) and YOLOX.

``build_detector(spec, ...)`` returns an object implementing ``dashtrack_core.detector.Detector``.
"""
from .detector import TorchDetector, build_detector
from .registry import ModelSpec, build_model, list_variants, load_variant

__all__ = ["TorchDetector", "build_detector", "ModelSpec", "build_model", "list_variants", "load_variant"]
