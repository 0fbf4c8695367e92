"""Constant-velocity Kalman filter in box space, stepped for all tracks at once.

State per track (8,): four box components ``b`` and their rates ``db/dt``
(pixels per second).  ``b`` is either (cx, cy, w, h) or (x1, y1, x2, y2).
Measurement (4,): the same four components of a detected box.

Time-based: the transition and the process noise are built from ``dt`` in
seconds.  Process noise is the continuous white-acceleration model, so
predicting twice by dt/2 gives the same covariance as once by dt.  Noise
scales with the box size ``s = sqrt(w*h)`` so near and far objects are treated
alike.  The maths is the textbook filter (filterpy's ``KalmanFilter`` gives the
same numbers; ``tests/test_tracker_kalman.py`` checks it) written for the
block structure of ``F = [[I, dt I], [0, I]]``, ``H = [I 0]`` and diagonal noise.
"""
from __future__ import annotations

import numpy as np

DIM = 4  # box components


def xyxy_to_state_box(xyxy: np.ndarray, param: str) -> np.ndarray:
    """(N,4) xyxy -> (N,4) measurement in the filter's parameterisation.

    For ``xyxy`` a float64 input is returned as it is (no copy: every caller passes rows it
    gathered itself and only reads the result).
    """
    xyxy = np.asarray(xyxy, dtype=np.float64)
    if param == "xyxy":
        return xyxy
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, w, h], axis=1)


def state_box_to_xyxy(b: np.ndarray, param: str) -> np.ndarray:
    """(N,4) filter box -> (N,4) xyxy."""
    if param == "xyxy":
        return b.copy()
    half_w = np.maximum(b[:, 2], 0.0) / 2
    half_h = np.maximum(b[:, 3], 0.0) / 2
    return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], axis=1)


def box_size(b: np.ndarray, param: str) -> np.ndarray:
    """(N,4) filter box -> (N,) size sqrt(w*h), at least 1 pixel."""
    if param == "xyxy":
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    else:
        w, h = b[:, 2], b[:, 3]
    return np.sqrt(np.maximum(w, 1.0) * np.maximum(h, 1.0))


class BoxKalman:
    """Noise model and batched predict/update; holds no track state itself.

    F, Q, R, H and the initial covariance never couple different box
    components, so the 8x8 covariance of a track is four independent 2x2
    blocks (component, its rate).  They are stored as C (N, 3, 4):
    C[:, 0] = var(b), C[:, 1] = cov(b, db/dt), C[:, 2] = var(db/dt), per
    component.  Every step is then a handful of array operations over all
    tracks (predict: two batched small matrix products); ``full_covariance``
    rebuilds the 8x8 matrices (tests).
    """

    def __init__(self, param: str, meas_noise: float, accel_pos: float, accel_size: float,
                 init_vel_std: float) -> None:
        self.param = param
        self.meas_noise = float(meas_noise)
        if param == "xyxy":
            self.accel = np.full(DIM, float(accel_pos))
        else:
            self.accel = np.array([accel_pos, accel_pos, accel_size, accel_size], dtype=np.float64)
        self.accel_sq = self.accel ** 2
        self.init_vel_std = float(init_vel_std)
        self._q_dt, self._q_unit = None, None
        self._by_dt: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- the matrices, for the filterpy cross-check --------------------------
    @staticmethod
    def transition(dt: float) -> np.ndarray:
        """F (8, 8): b += dt * db/dt."""
        F = np.eye(2 * DIM)
        F[:DIM, DIM:] = dt * np.eye(DIM)
        return F

    def process_noise(self, size: np.ndarray, dt: float) -> np.ndarray:
        """Q (N, 8, 8) for white acceleration of density (accel * size)^2 over dt."""
        q = self.accel_sq[None, :] * (size ** 2)[:, None]                 # (N, 4)
        return full_covariance(np.stack([q * dt ** 3 / 3, q * dt ** 2 / 2, q * dt], axis=1))

    def measurement_noise(self, size: np.ndarray) -> np.ndarray:
        """R (N, 4, 4) diagonal, std = meas_noise * size."""
        return ((self.meas_noise * size) ** 2)[:, None, None] * np.eye(DIM)

    # -- filter steps -------------------------------------------------------
    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z (N, 4) -> x (N, 8) at rest, C (N, 3, 4)."""
        n = len(z)
        x = np.zeros((n, 2 * DIM))
        x[:, :DIM] = z
        size = box_size(z, self.param)[:, None]
        C = np.zeros((n, 3, DIM))
        C[:, 0] = (self.meas_noise * size) ** 2
        C[:, 2] = (self.init_vel_std * size) ** 2
        return x, C

    def predict(self, x: np.ndarray, C: np.ndarray, dt: float) -> None:
        """In place for all rows: x <- F x, P <- F P F' + Q (blockwise), dt in seconds.

        Per component, (var b, cov, var v) <- A (var b, cov, var v) + q (dt^3/3, dt^2/2, dt)
        with A = [[1, 2dt, dt^2], [0, 1, dt], [0, 0, 1]]: one batched 3x3 product over all
        tracks (a third of the cost of the same steps written element-wise).
        """
        if len(x) == 0:
            return
        if dt != self._q_dt:      # A, F' and the noise pattern per unit area, kept for recent dts
            # (frame times differ by float noise: 0.1 s steps give ~10 distinct dts, each met again)
            self._q_dt = dt
            mats = self._by_dt.get(dt)
            if mats is None:
                if len(self._by_dt) >= 64:
                    self._by_dt.clear()
                mats = self._by_dt[dt] = (self.accel_sq * np.array([[dt ** 3 / 3], [dt * dt / 2], [dt]]),
                                          np.array([[1.0, 2 * dt, dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]]),
                                          self.transition(dt).T)
            self._q_unit, self._A, self._Ft = mats
        b = x[:, :DIM]
        if self.param == "xyxy":
            wh = np.maximum(b[:, 2:] - b[:, :2], 1.0)
        else:
            wh = np.maximum(b[:, 2:], 1.0)
        q = (wh[:, 0] * wh[:, 1])[:, None, None] * self._q_unit      # from the prior box size
        np.matmul(x, self._Ft, out=x)
        np.matmul(self._A, C, out=C)
        C += q

    def update(self, x: np.ndarray, C: np.ndarray, z: np.ndarray, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return updated (x, C) for rows x (M, 8), C (M, 3, 4) and measurements z (M, 4): copies, or with
        ``copy=False`` the arrays given, updated in place (for callers that pass rows gathered by index)."""
        if len(x) == 0:
            return x, C
        if self.param == "xyxy":
            wh = np.maximum(z[:, 2:] - z[:, :2], 1.0)
        else:
            wh = np.maximum(z[:, 2:], 1.0)
        r = (self.meas_noise ** 2) * (wh[:, 0] * wh[:, 1])               # (M,) measurement variance
        if copy:
            x, C = x.copy(), C.copy()
        s = C[:, 0] + r[:, None]                     # innovation variance (M, 4)
        K = C[:, :2] / s[:, None]                    # (M, 2, 4) Kalman gains for b and db/dt
        y = z - x[:, :DIM]                           # innovation
        x += (K * y[:, None]).reshape(len(x), 2 * DIM)
        C[:, 2] -= K[:, 1] * C[:, 1]                 # var v -= k_v cov(b, v), with the prior cov
        C[:, :2] -= K[:, :1] * C[:, :2]              # var b, cov(b, v) *= 1 - k_b
        return x, C


def full_covariance(C: np.ndarray) -> np.ndarray:
    """(N, 3, 4) blocks -> (N, 8, 8) covariance matrices."""
    P = np.zeros((len(C), 2 * DIM, 2 * DIM))
    i = np.arange(DIM)
    P[:, i, i] = C[:, 0]
    P[:, i, i + DIM] = C[:, 1]
    P[:, i + DIM, i] = C[:, 1]
    P[:, i + DIM, i + DIM] = C[:, 2]
    return P
