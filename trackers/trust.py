"""When a coasting track's predicted box deserves to be emitted, and how much it is trusted.

A coasted box (no detection behind it this frame) is the filter's prediction.
It is worth showing only while that prediction is likely still on the object;
measured on KITTI, most of them are ghosts of cars that left the view or hid
behind another one.  Each test uses only what the tracker knows (no ground truth):

- unseen time against observed history: a track seen for ``h`` seconds is
  coasted for at most ``coast_unseen_ratio * h`` (and ``emit_coast_seconds``);
- filter uncertainty: the predicted position standard deviation (mean over the
  four box components) must stay below ``coast_max_pos_std`` box sizes;
- inside the frame: at least ``coast_min_inside`` of the predicted box lies in
  the image (only when the frame size is known);
- not covered: at most ``coast_max_covered`` of the box lies under a box matched
  this frame (the object is then hidden behind it, or the prediction is on the
  wrong car);
- consistent velocity: the filter's centre velocity when last observed differs
  from the average velocity over the track's observed life by at most
  ``coast_max_vel_change`` box sizes per second (an erratic track's prediction
  is a guess).

The emitted score is the last detection score times ``0.5 ** (unseen /
coast_score_half_life_s)`` times ``(1 + share of the allowed unseen time left) / 2``,
so it decays to half of the plain decay where the box stops being emitted.
"""
from __future__ import annotations

import numpy as np

from .kalman import DIM, box_size


def _centres(xyxy: np.ndarray) -> np.ndarray:
    return 0.5 * (xyxy[:, :2] + xyxy[:, 2:])


def covered_fraction(boxes: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """(N,) largest share of each box's area under any single box of ``cover`` (M, 4); 0 when M = 0."""
    if len(boxes) == 0 or len(cover) == 0:
        return np.zeros(len(boxes))
    iw = np.minimum(boxes[:, None, 2], cover[None, :, 2]) - np.maximum(boxes[:, None, 0], cover[None, :, 0])
    ih = np.minimum(boxes[:, None, 3], cover[None, :, 3]) - np.maximum(boxes[:, None, 1], cover[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-9) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-9)
    return inter.max(axis=1) / area


def coast_trust(config, *, unseen, history, pos_var, pred, x_obs, z_first, z_obs, inside, cover):
    """(ok, factor) for N coasting rows.

    unseen, history: (N,) seconds since the last detection / between the first and last one;
    pos_var: (N, 4) predicted variances of the box components; pred: (N, 4) predicted xyxy;
    x_obs: (N, 8) filter state right after the last detection; z_first, z_obs: (N, 4) first
    and last detected boxes (xyxy); inside: (N,) share of the predicted box in the frame (1 when
    unknown); cover: (M, 4) boxes matched this frame.
    ok: emit the row; factor in [0, 1]: multiplies the last detection score.
    """
    c = config
    allowed = np.minimum(c.coast_unseen_ratio * history, c.emit_coast_seconds)
    size = box_size(pred, "xyxy")
    pos_std = np.sqrt(pos_var.mean(axis=1)) / size
    ok = (unseen <= allowed + 1e-9) & (pos_std <= c.coast_max_pos_std) & (inside >= c.coast_min_inside)
    if c.coast_max_covered < 1.0 and len(cover):
        ok &= covered_fraction(pred, cover) <= c.coast_max_covered
    if c.coast_max_vel_change > 0:
        v_life = (_centres(z_obs) - _centres(z_first)) / np.maximum(history, 1e-9)[:, None]
        vel = x_obs[:, DIM:]
        v_obs = 0.5 * (vel[:, :2] + vel[:, 2:]) if c.box_param == "xyxy" else vel[:, :2]
        change = np.hypot(*(v_obs - v_life).T) / box_size(z_obs, "xyxy")
        ok &= change <= c.coast_max_vel_change
    left = np.clip(1.0 - unseen / np.maximum(allowed, 1e-9), 0.0, 1.0)
    factor = 0.5 ** (unseen / c.coast_score_half_life_s) * (0.5 + 0.5 * left)
    return ok, factor


def coast_trust_rows(config, tracks, rows, boxes, unseen, cover, inside):
    """``coast_trust`` for track rows ``rows`` of the tracker's struct of arrays ``tracks``
    (predicted ``boxes``, ``unseen`` seconds); returns (ok, factor)."""
    return coast_trust(config, unseen=unseen, history=tracks.t_obs[rows] - tracks.t_first[rows],
                       pos_var=tracks.P[rows, 0], pred=boxes, x_obs=tracks.x_obs[rows],
                       z_first=tracks.z_first[rows], z_obs=tracks.z_obs[rows], inside=inside, cover=cover)
