"""Image measurements for the data audit: exposure, sharpness and near-duplicate thumbnails.

``tools/audit_data.py`` turns them into issues with its thresholds.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class ImageStats:
    mean: float
    dark_fraction: float
    bright_fraction: float
    sharpness: float
    thumb: np.ndarray = field(repr=False)


def image_stats(path: Path) -> ImageStats | None:
    """Exposure, sharpness and a thumbnail of an image (None if it cannot be decoded)."""
    gray = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if gray is None or gray.size == 0:
        return None
    h, w = gray.shape
    gray = cv2.resize(gray, (512, max(1, round(h * 512 / w))), interpolation=cv2.INTER_AREA)
    return ImageStats(
        mean=float(gray.mean()),
        dark_fraction=float((gray <= 5).mean()),
        bright_fraction=float((gray >= 250).mean()),
        sharpness=float(cv2.Laplacian(gray, cv2.CV_64F).var()),
        thumb=cv2.resize(gray, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32),
    )


class NearDuplicates:
    """Flags an image whose thumbnail is within ``threshold`` of one of the last ``window`` kept images."""

    def __init__(self, threshold: float, window: int):
        self.threshold = threshold
        self.recent: deque[tuple[str, np.ndarray]] = deque(maxlen=max(1, window))

    def check(self, name: str, thumb: np.ndarray) -> tuple[str, float] | None:
        best = None
        for other, t in self.recent:
            d = float(np.abs(thumb - t).mean())
            if d <= self.threshold and (best is None or d < best[1]):
                best = (other, d)
        if best is None:
            self.recent.append((name, thumb))
        return best
