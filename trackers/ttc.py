"""Time-to-contact and in-path per track, without camera calibration.

Time-to-contact (TTC) from scale change: an object at distance Z closing at
-dZ/dt has an image size s proportional to 1/Z, so ``s / (ds/dt) = Z / (-dZ/dt)``:
the seconds until contact at the current closing rate.  The size is the box
height of the Kalman filter's state (a car's image height does not change
when it turns, its width does), and its rate the filter's; the expansion rate
``(dh/dt) / h`` is smoothed further per track with an exponential moving
average (time constant ``ttc_smoothing_s``) so the value does not flicker.
Both the filter and the average lag: at a constant closing speed the true TTC
falls by one second per second and ``1 / rate`` reads it ``ttc_lag_s`` late,
so that much is subtracted.
Causal: only past frames enter.  NaN while the track has less than
``ttc_min_history_s`` of observed history, and when receding or static
(expansion rate <= 1 / ``ttc_max_s``).

In-path: a box's ground contact point (bottom centre, pixel ``u, v``) is in
the ego corridor when ``|u - u0| * H / (v - v_h) <= half_width``: with the
horizon row ``v_h``, straight ahead at column ``u0`` (the image centre) and the
camera ``H`` metres above the ground, a ground point ``v - v_h`` pixels below
the horizon is at distance ``Z = f H / (v - v_h)`` and its lateral offset is
``X = (u - u0) Z / f``; the focal length ``f`` cancels.  The horizon is
estimated online (``HorizonEstimator``) unless the config gives it.
"""
from __future__ import annotations

import math

import numpy as np

from .kalman import DIM


def expansion_rate(x: np.ndarray, param: str) -> np.ndarray:
    """(N,) (dh/dt) / h in 1/s from filter states x (N, 8); h at least 1 px."""
    if param == "xyxy":
        h = x[:, 3] - x[:, 1]
        dh = x[:, DIM + 3] - x[:, DIM + 1]
    else:
        h, dh = x[:, 3], x[:, DIM + 3]
    return dh / np.maximum(h, 1.0)


def smooth_rate(prev: np.ndarray, now: np.ndarray, dt: float, tau: float) -> np.ndarray:
    """Exponential moving average with time constant ``tau`` seconds; NaN ``prev`` starts at ``now``."""
    if tau <= 0 or dt <= 0:
        return np.where(np.isnan(prev), now, prev) if dt <= 0 else now
    a = 1.0 - math.exp(-dt / tau)
    return np.where(np.isnan(prev), now, prev + a * (now - prev))


def ttc_from_rate(rate: np.ndarray, history: np.ndarray, min_history: float, max_ttc: float,
                  lag: float = 0.0) -> np.ndarray:
    """(N,) seconds to contact, ``1 / rate - lag`` (at least 0.1 s); NaN when receding / static
    (rate <= 1/max_ttc) or the history is too short."""
    ok = (rate > 1.0 / max_ttc) & (history >= min_history - 1e-9)
    out = np.full(len(rate), np.nan)
    out[ok] = np.maximum(1.0 / rate[ok] - lag, 0.1)
    return out


def in_path(xyxy: np.ndarray, horizon_row: float, centre_col: float, camera_height: float,
            half_width: float) -> np.ndarray:
    """(N,) bool: the bottom centre of each box lies in the corridor ``|X| <= half_width`` metres."""
    if len(xyxy) == 0 or not np.isfinite(horizon_row):
        return np.zeros(len(xyxy), bool)
    u = 0.5 * (xyxy[:, 0] + xyxy[:, 2])
    below = xyxy[:, 3] - horizon_row
    lateral = np.abs(u - centre_col) * camera_height / np.maximum(below, 1e-9)
    return (below > 1.0) & (lateral <= half_width)


def track_columns(config, tracks, rows, boxes, extent, estimated_row: float) -> dict:
    """``ttc_s`` and ``in_path`` of the tracker's rows ``rows`` (emitted ``boxes``); ``extent``:
    the frame's x1 y1 x2 y2 (no corridor while unknown); ``estimated_row``: the horizon estimate."""
    c = config
    ttc_s = ttc_from_rate(tracks.rate[rows], tracks.t_obs[rows] - tracks.t_first[rows], c.ttc_min_history_s,
                          c.ttc_max_s, c.ttc_lag_s)
    if extent[2] <= extent[0]:
        return {"ttc_s": ttc_s, "in_path": np.zeros(len(rows), bool)}
    if c.horizon_frac is not None:
        row = c.horizon_frac * extent[3]
    elif np.isfinite(estimated_row):
        row = estimated_row
    else:
        row = c.horizon_fallback_frac * extent[3]
    return {"ttc_s": ttc_s, "in_path": in_path(boxes, row, c.ahead_frac * extent[2], c.camera_height_m,
                                               c.path_half_width_m)}


class HorizonEstimator:
    """Horizon row from boxes of objects of similar real height standing on a flat road.

    For such objects the image height grows linearly with the distance of the
    box bottom below the horizon: ``h = k (v - v_h)`` with ``k`` = object height /
    camera height.  A least-squares line ``h = a v + b`` over the last ``window``
    boxes gives ``v_h = -b / a``; two rounds drop points with residuals over 2.5
    robust standard deviations (occluded or truncated boxes, other vehicle
    kinds).  Boxes are sampled every ``sample_every``-th frame (cost; neighbouring
    frames add little) and the line refitted every ``refit_every``-th sample.
    ``row`` is NaN until ``min_points`` boxes spread over at least ``min_spread``
    of the frame height were seen, or when the fit is implausible (slope not in
    (0.2, 3), horizon outside the frame).
    """

    def __init__(self, window: int = 600, min_points: int = 30, min_spread: float = 0.1,
                 sample_every: int = 3, refit_every: int = 5):
        self.window, self.min_points, self.min_spread = window, min_points, min_spread
        self.sample_every, self.refit_every = sample_every, refit_every
        self.reset()

    def reset(self) -> None:
        self._v = np.zeros(self.window)
        self._h = np.zeros(self.window)
        self._n = 0             # points stored so far (ring buffer position = n % window)
        self._calls = 0
        self._since_fit = 0
        self.row = float("nan")

    def wants_sample(self) -> bool:
        """True on every ``sample_every``-th call (the tracker then passes this frame's boxes to ``add``)."""
        self._calls += 1
        return self._calls % self.sample_every == 1 or self.sample_every == 1

    def add(self, xyxy: np.ndarray, frame_height: float) -> None:
        """Feed detected boxes (those touching the frame's top or bottom edge are skipped); refits now and then."""
        if len(xyxy) == 0:
            return
        keep = (xyxy[:, 1] > 1.0) & (xyxy[:, 3] < frame_height - 1.0)
        v, h = xyxy[keep, 3], xyxy[keep, 3] - xyxy[keep, 1]
        if len(v) > self.window:
            v, h = v[-self.window:], h[-self.window:]
        at = (self._n + np.arange(len(v))) % self.window
        self._v[at], self._h[at] = v, h
        self._n += len(v)
        self._since_fit += 1
        if self._since_fit >= self.refit_every:
            self._since_fit = 0
            self.row = self.fit(frame_height)

    def fit(self, frame_height: float) -> float:
        m = min(self._n, self.window)
        if m < self.min_points:
            return float("nan")
        v, h = self._v[:m], self._h[:m]
        if v.max() - v.min() < self.min_spread * frame_height:
            return float("nan")
        a, b = _line(v, h)
        for _ in range(2):
            res = h - (a * v + b)
            keep = np.abs(res) <= 2.5 * (1.4826 * np.median(np.abs(res)) + 1e-6)
            if np.count_nonzero(keep) < self.min_points // 2:
                break
            a, b = _line(v[keep], h[keep])
        if not 0.2 < a < 3.0:
            return float("nan")
        row = -b / a
        return float(row) if 0.0 <= row < frame_height else float("nan")


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y = a x + b."""
    mx, my = x.mean(), y.mean()
    dx = x - mx
    a = float(dx @ (y - my)) / max(float(dx @ dx), 1e-12)
    return a, float(my - a * mx)
