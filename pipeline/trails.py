"""Preview trails: the recent path of each track's box-bottom centre, drawn thin in its colour."""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from dashtrack_core.records import Detections


class Trails:
    """Keeps the last ``seconds`` of bottom-centre points per track id (tracks unseen that long are dropped)."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = float(seconds)
        self._points: dict[int, deque] = {}

    def update(self, dets: Detections, timestamp: float) -> None:
        t = float(timestamp)
        if dets.track_id is not None:
            u = 0.5 * (dets.xyxy[:, 0] + dets.xyxy[:, 2])
            v = dets.xyxy[:, 3]
            for tid, x, y in zip(dets.track_id.tolist(), u.tolist(), v.tolist()):
                self._points.setdefault(tid, deque()).append((t, x, y))
        for tid in list(self._points):
            pts = self._points[tid]
            while pts and t - pts[0][0] > self.seconds:
                pts.popleft()
            if not pts:
                del self._points[tid]

    def points(self, tid: int) -> np.ndarray:
        """(K, 2) x, y of one track's trail, oldest first (empty when unknown)."""
        pts = self._points.get(tid)
        return np.array([(x, y) for _, x, y in pts], np.float64).reshape(-1, 2) if pts else np.zeros((0, 2))

    def draw(self, img: np.ndarray, color_of) -> np.ndarray:
        """Draw every trail in place as a 1 px polyline in ``color_of(track_id)``."""
        for tid, pts in self._points.items():
            if len(pts) >= 2:
                poly = np.round(np.array([(x, y) for _, x, y in pts])).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(img, [poly], False, color_of(tid), 1, cv2.LINE_AA)
        return img
