"""What the command line checks before a run, and the one line it prints as a run starts.

- ``parse_classes("car,person")``: class names or COCO ids -> names; a bad one is a ``ConfigError``
  listing the valid names (exit 2).
- ``check_device(cfg)``: ``detector.device`` is auto, cpu, cuda or cuda:N, and cuda only where this
  backend has a CUDA device; returns the note to print for ``auto`` without CUDA.
- ``describe_run(cfg, detector, source)``: ``run: dashcam.onnx (onnx on cpu), input 384x640 for
  1280x720 frames, tracker on``.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

from .batching import SharedDetector
from .build import detector_config
from .config import AppConfig
from dashtrack_core.configtools import ConfigError
from dashtrack_core.detector import COCO_NAMES

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def parse_classes(text: str, names: tuple[str, ...] = COCO_NAMES) -> tuple[str, ...]:
    """``"car,person"`` or ``"2,0"`` (COCO ids) or a mix -> class names, in the order given."""
    out: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.isdigit():
            if int(item) >= len(names):
                raise ConfigError(f"--classes {text}: id {item} is not a COCO class id; use 0..{len(names) - 1} "
                                  f"or names ({', '.join(names)})")
            name = names[int(item)]
        else:
            name = item.lower().replace("_", " ")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"--classes {text}: {item!r} is not a class{hint}; valid: {', '.join(names)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"--classes {text!r}: no class given; e.g. --classes car,person (names or COCO ids)")
    return tuple(out)


def cuda_available(backend: str) -> tuple[bool, str]:
    """Whether ``backend`` can run on CUDA here, and why not (for the error line)."""
    if backend == "onnx":
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return True, ""
        return False, "onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu on a CUDA machine)"
    import torch

    if torch.cuda.is_available():
        return True, ""
    return False, "torch sees no CUDA device"


def check_device(cfg: AppConfig) -> str | None:
    """Refuse an unknown device, or cuda where there is none (``ConfigError``, exit 2); the note for auto on CPU."""
    device, backend = cfg.detector.device, cfg.detector.backend
    if cfg.detector.model.endswith(".onnx"):
        backend = "onnx"
    if not DEVICE_RE.match(device):
        raise ConfigError(f"--device {device}: unknown device; use {DEVICE_CHOICES}")
    if device == "cpu":
        return None
    ok, why = cuda_available(backend)
    if device.startswith("cuda"):
        if not ok:
            raise ConfigError(f"--device {device}: no CUDA here ({why}); use --device cpu, or auto to take CUDA when present")
        if ":" in device and backend == "torch":
            import torch

            index, count = int(device.split(":")[1]), torch.cuda.device_count()
            if index >= count:
                raise ConfigError(f"--device {device}: this machine has {count} CUDA device(s): use cuda:0..cuda:{count - 1}")
        return None
    return None if ok else "note: --device auto: no CUDA here, running on the CPU"


def _unwrap(detector):
    """The real detector behind a ``SharedDetector`` (several sources)."""
    return detector.detector if isinstance(detector, SharedDetector) else detector


def detector_device(detector) -> tuple[str, str]:
    """(backend, device) of a built detector: onnx by its first execution provider, torch by its device."""
    inner = _unwrap(detector)
    session = getattr(inner, "session", None)
    if session is not None:
        return "onnx", "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return "torch", str(getattr(inner, "device", "cpu"))


def frame_size(source) -> tuple[int, int] | None:
    """(width, height) of a file or stream's frames before the first is decoded, when the container says."""
    while hasattr(source, "inner"):
        source = source.inner
    stream = getattr(source, "stream", None)
    ctx = getattr(stream, "codec_context", None)
    width, height = getattr(ctx, "width", 0), getattr(ctx, "height", 0)
    return (int(width), int(height)) if width and height else None


def describe_run(cfg: AppConfig, detector, source=None) -> str:
    """One line: the detector file, its input shape, backend and device, and whether the tracker runs."""
    model = cfg.detector.model
    name = Path(model).name if ("/" in model or model.endswith(".onnx")) else model
    backend, device = detector_device(detector)
    inner = _unwrap(detector)
    size = frame_size(source) if source is not None else None
    if size is not None and hasattr(inner, "input_shape"):
        h, w = inner.input_shape(*size)
        shape = f"input {h}x{w} for {size[0]}x{size[1]} frames"
    elif getattr(inner, "fixed_shape", None):
        shape = f"input {inner.fixed_shape[0]}x{inner.fixed_shape[1]}"
    elif getattr(inner, "imgsz", None):
        shape = f"input long side {inner.imgsz}, short side from each frame"
    else:
        shape = "input size from the model"
    classes = f", classes {','.join(cfg.detector.classes)}" if cfg.detector.classes else ""
    floor = detector_config(cfg, note=lambda _: None).score_threshold          # what the detector really keeps
    tracker = f"tracker on (new tracks at score >= {cfg.tracker.new_track_score:g})" if cfg.pipeline.track else "tracker off"
    return f"run: {name} ({backend} on {device}), {shape}, score >= {floor:g}{classes}, {tracker}"
