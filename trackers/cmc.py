"""Camera-motion compensation: a global 2x3 similarity transform between frames.

Corners (capped count) on a subsampled grey previous frame are followed into
the current frame with pyramidal Lucas-Kanade; a partial affine (rotation,
uniform scale, translation) is fitted with RANSAC.  Whenever that fails (no
previous frame, no texture, too few inliers, a degenerate fit) the result is
``None``: no compensation, counted in ``fallbacks``.  Never raises on image
content.
"""
from __future__ import annotations

import time

import cv2
import numpy as np


class CameraMotion:
    def __init__(self, max_width: int = 320, max_corners: int = 100, min_inliers: int = 15) -> None:
        self.max_width = int(max_width)
        self.max_corners = int(max_corners)
        self.min_inliers = int(min_inliers)
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._prev_scale = 1.0
        self.calls = 0
        self.fallbacks = 0
        self.seconds = 0.0

    def _grey_small(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Grey frame at most max_width wide, by integer-stride subsampling (cheap:
        converting the full frame to grey first costs more than the whole flow)."""
        h, w = image.shape[:2]
        step = max(1, -(-w // self.max_width))          # ceil(w / max_width)
        small = np.ascontiguousarray(image[::step, ::step])
        grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return grey, 1.0 / step

    def estimate(self, image: np.ndarray | None) -> np.ndarray | None:
        """Return A (2, 3) mapping previous-frame pixels to this frame's, or None."""
        t0 = time.perf_counter()
        self.calls += 1
        try:
            A = self._estimate(image)
        finally:
            self.seconds += time.perf_counter() - t0
        if A is None:
            self.fallbacks += 1
        return A

    def _estimate(self, image: np.ndarray | None) -> np.ndarray | None:
        if image is None or image.ndim not in (2, 3) or image.size == 0:
            self._prev = None
            return None
        grey, scale = self._grey_small(np.ascontiguousarray(image))
        prev, self._prev = self._prev, grey
        if prev is None or prev.shape != grey.shape:
            return None
        pts = cv2.goodFeaturesToTrack(prev, maxCorners=self.max_corners, qualityLevel=0.01,
                                      minDistance=8, blockSize=3)
        if pts is None or len(pts) < self.min_inliers:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None, winSize=(15, 15), maxLevel=2)
        if nxt is None:
            return None
        ok = status.reshape(-1).astype(bool)
        src, dst = pts.reshape(-1, 2)[ok], nxt.reshape(-1, 2)[ok]
        if len(src) < self.min_inliers:
            return None
        A, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                 ransacReprojThreshold=1.5, maxIters=500)
        if A is None or inliers is None or int(inliers.sum()) < self.min_inliers:
            return None
        if not np.all(np.isfinite(A)):
            return None
        s = float(np.sqrt(abs(np.linalg.det(A[:, :2]))))
        if not 0.5 < s < 2.0:     # implausible zoom between consecutive frames
            return None
        A = A.astype(np.float64)
        A[:, 2] /= scale          # translation back to full-resolution pixels
        return A


def warp_states(x: np.ndarray, A: np.ndarray, param: str) -> None:
    """Apply A (2, 3) in place to states x (N, 8) (positions and their rates).

    Covariances are left as they are: frame-to-frame motion is a few pixels and
    the process noise already covers that much uncertainty.
    """
    if len(x) == 0:
        return
    L, t = A[:, :2], A[:, 2]
    if param == "xyxy":
        for i in (0, 2):
            x[:, i:i + 2] = x[:, i:i + 2] @ L.T + t
            x[:, 4 + i:6 + i] = x[:, 4 + i:6 + i] @ L.T
    else:
        s = float(np.sqrt(abs(np.linalg.det(L))))
        x[:, 0:2] = x[:, 0:2] @ L.T + t
        x[:, 4:6] = x[:, 4:6] @ L.T
        x[:, 2:4] *= s
        x[:, 6:8] *= s
