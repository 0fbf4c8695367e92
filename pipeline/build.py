"""Config -> detector and tracker, in one place.

    det = build_detector(cfg.detector)            # OnnxDetector or models.TorchDetector
    trk = build_tracker(cfg, det.class_names)     # trackers.KalmanTracker, or None without tracking

Each ``DetectorConfig`` field is mapped to its backend's arguments here, once.  A field the chosen
backend does not use is refused with one line (``ConfigError``, exit 2) when it was asked for, and
noted with one line when it is only the shipped default (``configs/default.yaml``, written for the
ONNX model, names ``format: decoded``, which a torch model has no use for).  "Asked for" is a value
other than both the dataclass default and the shipped default: a ``--set`` or a ``--config`` YAML
that repeats the shipped value cannot be told from it, and is only noted.

The model file's own preprocessing (colour, mean/std, letterbox, pad value, class names, output
layout) wins over the config for both backends, with one line when they disagree
(``pipeline/model_file.py``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .config import DEFAULT_CONFIG, AppConfig, DetectorConfig, load_config
from dashtrack_core.configtools import ConfigError
from .model_file import file_wins, print_note, show_value
from .onnx_detector import DetectorError, OnnxDetector
from trackers import KalmanTracker

# Fields every backend honours (the runner reads batch and the crop settings for any detector).
COMMON = ("backend", "model", "imgsz", "input_size", "classes", "score_threshold", "nms_iou", "max_detections",
          "top_k", "device", "crops", "crop_budget", "crop_small_px", "crop_size", "crop_band", "crop_merge_iou",
          "crop_edge_margin", "batch")
# Preprocessing: the model file's values win (pipeline/model_file.py); a file without them takes the config's.
PREPROCESS = ("letterbox", "pad_value", "color", "mean", "std", "class_names")
# What a backend does not use, and why (the refusal's reason).
UNUSED: dict[str, dict[str, str]] = {
    "onnx": {"half": "fp16 is a torch-backend setting on CUDA; export an fp16 ONNX file instead"},
    "torch": {
        "format": "a torch model decodes its own outputs",
        "workers": "the torch backend runs one inference call at a time; batch frames with detector.batch",
        "threads": "onnxruntime threads; torch uses its own thread pool (torch.set_num_threads)",
        "spin": "an onnxruntime setting",
    },
}


def backend_of(cfg: DetectorConfig) -> str:
    """The backend that will run: an ``.onnx`` model always runs on onnxruntime."""
    return "onnx" if cfg.backend == "onnx" or cfg.model.endswith(".onnx") else "torch"


def shipped_detector() -> DetectorConfig:
    """The detector section of ``configs/default.yaml`` (what a run gets when nobody asks for more)."""
    return load_config(DEFAULT_CONFIG).detector


def check_fields(cfg: DetectorConfig, backend: str, shipped: DetectorConfig | None = None,
                 note: Callable[[str], None] = print_note) -> None:
    """Refuse (``ConfigError``) a field ``backend`` does not use when it was asked for; note it when
    it is the shipped default; say nothing when it is the dataclass default."""
    plain = DetectorConfig()
    shipped = shipped if shipped is not None else shipped_detector()
    for name, why in UNUSED[backend].items():
        value = getattr(cfg, name)
        if value == getattr(plain, name):
            continue
        shown = show_value(value)
        if value == getattr(shipped, name):
            note(f"detector.{name}={shown} (from the defaults) is not used by the {backend} backend; ignored")
            continue
        raise ConfigError(f"detector.{name}={shown}: the {backend} backend does not use it ({why}); "
                          f"remove the setting or choose a model that uses it")


def build_detector(cfg: DetectorConfig, *, shipped: DetectorConfig | None = None,
                   note: Callable[[str], None] = print_note):
    """The detector ``cfg`` names: ``OnnxDetector`` or ``models.TorchDetector``."""
    backend = backend_of(cfg)
    check_fields(cfg, backend, shipped, note)
    if backend == "onnx":
        return OnnxDetector(cfg if cfg.backend == "onnx" else dataclasses.replace(cfg, backend="onnx"))
    det = _build_torch(cfg)
    spec = det.spec
    prep = spec.preprocess
    file_wins(cfg, {"letterbox": prep.letterbox, "pad_value": prep.pad_value, "color": prep.color,
                    "mean": prep.mean, "std": prep.std, "class_names": spec.class_names}, cfg.model, note)
    return det


def torch_arguments(cfg: DetectorConfig, device: str) -> dict[str, Any]:
    """``models.build_detector`` keyword arguments of a config: the one mapping of the torch backend."""
    return dict(device=device, score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou,
                max_detections=cfg.max_detections, top_k=cfg.top_k, classes=cfg.classes or None, half=cfg.half,
                imgsz=cfg.imgsz, input_size=cfg.input_size)


def _build_torch(cfg: DetectorConfig):
    try:
        from models import build_detector as build_torch
    except ImportError as e:
        raise DetectorError(f"the torch detector backend is unavailable ({e}); use an ONNX model") from None
    device = cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return build_torch(cfg.model, **torch_arguments(cfg, device))
    except (OSError, ValueError, RuntimeError, KeyError) as e:   # CheckpointError is a ValueError
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DetectorError(f"--model {cfg.model}: {message}") from None


def detector_config(cfg: AppConfig, shipped: DetectorConfig | None = None,
                    note: Callable[[str], None] = print_note) -> DetectorConfig:
    """The detector settings a run uses.  With the tracker on, the detector keeps boxes down to
    ``tracker.low_score``: the tracker's second pass exists for them (they only extend existing tracks;
    a new track still needs ``tracker.new_track_score``).  Chosen by measurement (BENCHMARKS.md, "Detector
    threshold and the tracker's low-score pass").  A ``detector.score_threshold`` asked for (not the shipped
    one) stays the floor, with one line saying what the tracker then misses; without tracking it is the floor."""
    det = cfg.detector
    low = cfg.tracker.low_score
    if not cfg.pipeline.track or low >= det.score_threshold:
        return det
    shipped = shipped if shipped is not None else shipped_detector()
    if det.score_threshold != shipped.score_threshold:
        note(f"detector.score_threshold {det.score_threshold} is the detector's floor, so the tracker's second pass "
             f"sees no box under it (tracker.low_score {low}); leave it at {shipped.score_threshold} to let the "
             f"tracker use boxes down to {low}, or raise tracker.new_track_score for fewer new tracks")
        return det
    return dataclasses.replace(det, score_threshold=low)


def build_tracker(cfg: AppConfig, class_names=None):
    """The configured tracker, or None when tracking is off; ``class_names``: the detector's
    (the tracker's class groups are by name; None: COCO's).  Every ``TrackerConfig`` field is
    the tracker's own argument: the dataclass holds the defaults, YAML only overrides them."""
    if not cfg.pipeline.track:
        return None
    return KalmanTracker(cfg.tracker, class_names)


__all__ = ["build_detector", "build_tracker", "detector_config", "check_fields", "backend_of", "torch_arguments", "UNUSED", "COMMON",
           "PREPROCESS", "DetectorError"]
