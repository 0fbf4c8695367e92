"""The tracker's motion filter, injectable: what ``KalmanTracker`` needs of one, and the default.

A filter steps every track at once and keeps no track state itself; the tracker holds
the arrays and hands them in.  The layout is fixed, because the other steps read it:

- state ``x`` (N, 8): four box components (``box_param``: cx cy w h, or x1 y1 x2 y2)
  then their rates per second (time-to-contact reads the height rate, the coast
  trust test the centre velocity, camera-motion compensation warps both);
- covariance ``C`` (N, 3, 4): per box component var(b), cov(b, db/dt), var(db/dt)
  (the coast trust test and the Mahalanobis pass read ``C[:, 0]``).

Pass a factory ``(TrackerConfig) -> MotionFilter`` as ``KalmanTracker(...,
motion_filter=...)``; without one the tracker uses ``kalman_filter`` (``BoxKalman``,
the constant-velocity Kalman filter of ``kalman.py``).
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .kalman import BoxKalman


class MotionFilter(Protocol):
    meas_noise: float       # measurement std per box size (the Mahalanobis pass's gate)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Measurements z (N, 4) -> new tracks' x (N, 8), C (N, 3, 4)."""

    def predict(self, x: np.ndarray, C: np.ndarray, dt: float) -> None:
        """Advance every row by ``dt`` seconds, in place."""

    def update(self, x: np.ndarray, C: np.ndarray, z: np.ndarray, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Rows x (M, 8), C (M, 3, 4) corrected by measurements z (M, 4): copies, or with
        ``copy=False`` the arrays given, updated in place."""


FilterFactory = Callable[..., MotionFilter]


def build(factory: FilterFactory | None, config) -> MotionFilter:
    """``factory(config)`` (``kalman_filter`` when None), checked to have what the tracker calls."""
    if factory is None:
        return kalman_filter(config)
    if not callable(factory):
        raise TypeError(f"motion_filter must be a factory (TrackerConfig) -> filter, got {type(factory).__name__}; "
                        "pass e.g. trackers.motion.kalman_filter")
    f = factory(config)
    missing = [n for n in ("initiate", "predict", "update", "meas_noise") if not hasattr(f, n)]
    if missing:
        raise TypeError(f"motion_filter {getattr(factory, '__name__', factory)!s} made a {type(f).__name__} "
                        f"without {', '.join(missing)}; a filter needs initiate, predict, update and meas_noise "
                        "(trackers/motion.py)")
    return f


def kalman_filter(config) -> BoxKalman:
    """The default: the constant-velocity Kalman filter with the config's noise model."""
    c = config
    return BoxKalman(c.box_param, c.meas_noise, c.accel_noise_pos, c.accel_noise_size, c.init_vel_std)
