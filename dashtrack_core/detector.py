"""The detector protocol the stage chain runs.

A detector turns a batch of BGR uint8 frames into one ``Detections`` per frame,
boxes in the original image's pixel coordinates.  It is split in three steps so
the pipeline can run them on separate threads (preprocess, inference, decode);
``detect`` chains them for callers that want one call.

    batch  = det.preprocess(images)     # letterbox / resize / normalise
    raw    = det.infer(batch)           # the network forward pass
    dets   = det.postprocess(raw, batch)  # decode + NMS, letterbox undone

``batch`` is a ``Batch``: the network input plus, per image, what is needed to
map boxes back (scale, padding offsets, original size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from .records import Detections

# The 80 COCO class names in the order COCO-trained detectors predict them.
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

# The dashcam classes kept by default (COCO names).
DASHCAM_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
)


def frame_input_shape(width: int, height: int, imgsz: int, stride: int = 32) -> tuple[int, int]:
    """The (height, width) network input for a width x height frame: the long side is ``imgsz``,
    the short side follows the frame's aspect ratio; both rounded UP to a multiple of ``stride``.

    1280x720 at 672 -> (384, 672); 1242x375 at 832 -> (256, 832); 720x1280 at 672 -> (672, 384).
    The letterbox then pads only the rounding (a few rows or columns).
    """
    if width <= 0 or height <= 0 or imgsz <= 0 or stride <= 0:
        raise ValueError(f"frame {width}x{height}, imgsz {imgsz}, stride {stride}: all must be positive")
    long_side = math.ceil(imgsz / stride) * stride
    short = min(width, height) * long_side / max(width, height)
    short_side = max(stride, math.ceil(short / stride - 1e-9) * stride)
    return (short_side, long_side) if width >= height else (long_side, short_side)


@dataclass(frozen=True)
class Preprocess:
    """How a model's weights expect their input, described once: the torch variants' YAML ``preprocess``
    section (``models/registry.py``), a checkpoint's ``meta.preprocess``, an exported ONNX file's
    ``dashtrack`` metadata, and ``DetectorConfig.preprocess`` (the flat ``detector.*`` fields) all are
    this record; the ONNX path, the torch path and the training loader read it the same way
    (``Letterbox.fit`` with ``letterbox``, a ``pad_value`` canvas, ``color`` order, ``(x - mean) / std``)."""

    color: Literal["bgr", "rgb"] = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 0..255 units, in ``color`` order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    letterbox: Literal["topleft", "center", "stretch"] = "topleft"
    pad_value: float = 114.0  # canvas fill, 0..255 units, before normalisation

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` of an (N, 3, H, W) float32 batch whose channels are already in ``color``
        order (mean and std are given in that order): the one formula of the ONNX path and the training
        loader (the torch path folds the same numbers into its on-device scale and bias)."""
        mean = np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        if not mean.any() and (std == 1).all():
            return x
        return (x - mean) * (1.0 / std)


@dataclass(frozen=True, eq=False)
class Letterbox:
    """How one image was mapped into the network input: input = image * scale + (pad_x, pad_y)."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int   # original image size
    height: int
    new_w: int = 0   # size of the resized image inside the network input
    new_h: int = 0

    @classmethod
    def fit(cls, width: int, height: int, in_h: int, in_w: int, mode: str) -> "Letterbox":
        """Fit a width x height image into an in_h x in_w input.

        topleft: keep aspect, paste at the top-left (YOLOX); center: keep aspect, centred
        (NanoDet); stretch: resize to fill.  Sizes are floored, as YOLOX does.
        """
        if mode == "stretch":
            return cls(in_w / width, in_h / height, 0.0, 0.0, width, height, in_w, in_h)
        r = min(in_w / width, in_h / height)
        new_w, new_h = int(width * r), int(height * r)
        pad_x, pad_y = ((in_w - new_w) // 2, (in_h - new_h) // 2) if mode == "center" else (0, 0)
        return cls(r, r, float(pad_x), float(pad_y), width, height, new_w, new_h)

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        """Map (N, 4) boxes from network-input pixels back to the original image, clipped."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0::2] = (xyxy[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (xyxy[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out


@dataclass(frozen=True, eq=False)
class Batch:
    """A preprocessed batch: ``data`` is whatever the backend's ``infer`` takes
    (a (B, 3, H, W) float32 array for ONNX, a device tensor for torch)."""

    data: Any
    letterboxes: tuple[Letterbox, ...]

    def __len__(self) -> int:
        return len(self.letterboxes)


@runtime_checkable
class Detector(Protocol):
    """What the pipeline needs from a detector backend."""

    class_names: tuple[str, ...]

    def preprocess(self, images: Sequence[np.ndarray]) -> Batch: ...

    def infer(self, batch: Batch) -> Any: ...

    def postprocess(self, raw: Any, batch: Batch) -> list[Detections]: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...
