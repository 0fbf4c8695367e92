"""Label data shared by the data tools: ``ImageLabels``/``LabelSet``, image helpers and the dashcam class
names.  The formats themselves (yolo, coco, kitti, bdd) and ``read_labels``, which dispatches on the
format's name, are in ``tools/label_formats.py``, which imports this module (never the other way).
Input that cannot be read at all raises ``DatasetError`` with a one-line message.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# The dashcam classes a pseudo-labelled dataset keeps, in output id order.
DASHCAM_NAMES: tuple[str, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light")

# Label names of other datasets mapped onto the dashcam names (lower case keys).
# None = not a dashcam class (kept as an ignore region by evaluation).
CANONICAL: dict[str, str | None] = {
    "person": "person", "pedestrian": "person", "person_sitting": "person", "rider": "person",
    "bicycle": "bicycle", "bike": "bicycle", "cyclist": "bicycle",
    "car": "car", "van": None, "motorcycle": "motorcycle", "motor": "motorcycle",
    "bus": "bus", "truck": "truck", "traffic light": "traffic light", "traffic_light": "traffic light",
    "tram": None, "train": None, "misc": None, "dontcare": None, "traffic sign": None,
}


class DatasetError(RuntimeError):
    """Input that cannot be read; the message is one line for the user."""


@dataclass
class ImageLabels:
    """The boxes of one image.

    name:     the image's key (file name relative to the image folder).
    image:    path of the image file, or None when it is missing.
    width, height: size declared by the labels (COCO/BDD), else the image's size.
    xyxy:     (N, 4) float64 absolute pixels.  For YOLO rows whose image is
              missing they stay normalised (``width`` is None then).
    class_id: (N,) int64 index into ``LabelSet.names``.
    ignore:   (N,) bool: DontCare / crowd regions, not objects.
    score:    (N,) float64 or None (predictions only).
    rows:     (N,) int64 source row (1-based line for txt, annotation index for JSON).
    problems: messages about rows that could not be parsed.
    """

    name: str
    image: Path | None
    width: int | None
    height: int | None
    xyxy: np.ndarray
    class_id: np.ndarray
    ignore: np.ndarray
    score: np.ndarray | None = None
    rows: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float64).reshape(-1, 4)
        n = len(self.xyxy)
        self.class_id = np.asarray(self.class_id, np.int64).reshape(-1)
        self.ignore = np.zeros(n, bool) if self.ignore is None else np.asarray(self.ignore, bool).reshape(-1)
        if self.rows is None:
            self.rows = np.arange(1, n + 1, dtype=np.int64)
        self.rows = np.asarray(self.rows, np.int64).reshape(-1)
        if self.score is not None:
            self.score = np.asarray(self.score, np.float64).reshape(-1)
        for name in ("class_id", "ignore", "rows") + (("score",) if self.score is not None else ()):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ImageLabels {self.name}: {name} has {len(getattr(self, name))} rows, xyxy {n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def select(self, mask: np.ndarray) -> "ImageLabels":
        """A copy keeping the rows where ``mask`` (bool or indices) selects."""
        return ImageLabels(self.name, self.image, self.width, self.height, self.xyxy[mask], self.class_id[mask],
                           self.ignore[mask], None if self.score is None else self.score[mask], self.rows[mask],
                           list(self.problems))

    @staticmethod
    def empty(name: str, image: Path | None, width: int | None, height: int | None) -> "ImageLabels":
        return ImageLabels(name, image, width, height, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))


@dataclass
class LabelSet:
    format: str
    names: list[str]
    items: list[ImageLabels]
    problems: list[str] = field(default_factory=list)   # dataset-level (unknown image ids, ...)
    source: str = ""

    def __len__(self) -> int:
        return len(self.items)


# -- image files ------------------------------------------------------------------
def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; other formats via OpenCV.

    None when the file is unreadable or not an image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                while True:
                    b = f.read(1)
                    while b and b != b"\xff":
                        b = f.read(1)
                    while b == b"\xff":
                        b = f.read(1)
                    if not b:
                        return None
                    marker = b[0]
                    if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                        continue
                    seg = f.read(2)
                    if len(seg) < 2:
                        return None
                    length = struct.unpack(">H", seg)[0]
                    if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                        data = f.read(5)
                        if len(data) < 5:
                            return None
                        h, w = struct.unpack(">HH", data[1:5])
                        return int(w), int(h)
                    f.seek(length - 2, 1)
    except OSError:
        return None
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such image folder; check --images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def canonical_class(name: str) -> str | None:
    """The dashcam class a dataset label maps to (None: not one of them)."""
    key = name.strip().lower()
    if key in CANONICAL:
        return CANONICAL[key]
    return key if key in DASHCAM_NAMES else None
