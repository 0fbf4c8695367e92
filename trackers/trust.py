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
coast_score_half_life_s)`` times ``1 - unseen / (2 * allowed unseen time)``,
so it decays to half of the plain decay where the box stops being emitted.
"""
from __future__ import annotations

import numpy as np

from .kalman import DIM


def covered_fraction(boxes: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """(N,) largest share of each box's area under any single box of ``cover`` (M, 4); 0 when M = 0."""
    if len(boxes) == 0 or len(cover) == 0:
        return np.zeros(len(boxes))
    return _covered(boxes.T.copy(), cover.T.copy())


def _covered(bt: np.ndarray, ct: np.ndarray) -> np.ndarray:
    """``covered_fraction`` on coordinate-major copies bt (4, N), ct (4, M): contiguous rows
    (broadcasting strided column views costs several times more on small arrays)."""
    iw = np.minimum.outer(bt[2], ct[2])
    iw -= np.maximum.outer(bt[0], ct[0])
    ih = np.minimum.outer(bt[3], ct[3])
    ih -= np.maximum.outer(bt[1], ct[1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    iw *= ih
    own = np.maximum((bt[2] - bt[0]) * (bt[3] - bt[1]), 1e-9)
    return iw.max(axis=1) / own


def coast_trust(config, *, unseen, history, pos_var, pred, x_obs, z_first, z_obs, inside, cover):
    """(ok, factor) for N coasting rows.

    unseen, history: (N,) seconds since the last detection / between the first and last one;
    pos_var: (N, 4) predicted variances of the box components; pred: (N, 4) predicted xyxy;
    x_obs: (N, 8) filter state right after the last detection; z_first, z_obs: (N, 4) first
    and last detected boxes (xyxy); inside: (N,) share of the predicted box in the frame, or
    None when the frame size is unknown; cover: (M, 4) boxes matched this frame.
    ok: emit the row; factor in (0, 1]: multiplies the last detection score.
    The cheap tests run first, the others only on the rows still trusted. Written on
    coordinate-major copies with few array operations: it runs every frame that has coasting tracks.
    """
    c = config
    allowed = np.minimum(c.coast_unseen_ratio * history, c.emit_coast_seconds)
    ok = unseen <= allowed + 1e-9
    pt = pred.T.copy()                                                    # (4, N)
    # position std / box size <= limit, squared: mean variance <= limit^2 * w * h
    ok &= pos_var.sum(axis=1) <= (4.0 * c.coast_max_pos_std ** 2) * (pt[2] - pt[0]) * (pt[3] - pt[1])
    if inside is not None:
        ok &= inside >= c.coast_min_inside
    idx = ok.nonzero()[0]
    if len(idx) and c.coast_max_covered < 1.0 and len(cover):
        ok[idx] = _covered(pt[:, idx], cover.T.copy()) <= c.coast_max_covered
        idx = ok.nonzero()[0]
    if len(idx) and c.coast_max_vel_change > 0:
        zo = z_obs[idx].T.copy()                                          # (4, K)
        zf = z_first[idx].T.copy()
        vel = x_obs[idx, DIM:].T.copy()
        scale = 0.5 / np.maximum(history[idx], 1e-9)
        if c.box_param == "xyxy":
            dx = 0.5 * (vel[0] + vel[2]) - (zo[0] + zo[2] - zf[0] - zf[2]) * scale
            dy = 0.5 * (vel[1] + vel[3]) - (zo[1] + zo[3] - zf[1] - zf[3]) * scale
        else:
            dx = vel[0] - (zo[0] + zo[2] - zf[0] - zf[2]) * scale
            dy = vel[1] - (zo[1] + zo[3] - zf[1] - zf[3]) * scale
        ok[idx] = dx * dx + dy * dy <= c.coast_max_vel_change ** 2 * (zo[2] - zo[0]) * (zo[3] - zo[1])
    # decays with the half-life, and to half of that where the allowed unseen time runs out
    factor = np.exp2(unseen * (-1.0 / c.coast_score_half_life_s)) * (1.0 - 0.5 * unseen / np.maximum(allowed, 1e-9))
    return ok, factor


def coast_trust_rows(config, tracks, rows, boxes, unseen, cover, inside):
    """``coast_trust`` for track rows ``rows`` of the tracker's struct of arrays ``tracks``
    (predicted ``boxes``, ``unseen`` seconds); returns (ok, factor)."""
    return coast_trust(config, unseen=unseen, history=tracks.t_obs[rows] - tracks.t_first[rows],
                       pos_var=tracks.P[rows, 0], pred=boxes, x_obs=tracks.x_obs[rows],
                       z_first=tracks.z_first[rows], z_obs=tracks.z_obs[rows], inside=inside, cover=cover)
