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
    """``covered_fraction`` on coordinate-major copies bt (4, N), ct (4, M) (contiguous rows:
    broadcasting strided column views costs several times more on small arrays)."""
    wh = np.minimum(bt[2:, :, None], ct[2:, None, :])          # (2, N, M): right, bottom
    wh -= np.maximum(bt[:2, :, None], ct[:2, None, :])         # minus left, top: overlap w, h
    np.maximum(wh, 0.0, out=wh)
    own = np.maximum((bt[2] - bt[0]) * (bt[3] - bt[1]), 1e-9)
    return (wh[0] * wh[1]).max(axis=1) / own


def coast_trust(config, *, unseen, history, pos_var, pred, x_obs, z_first, z_obs, inside, cover):
    """(ok, factor) for N coasting rows.

    unseen, history: (N,) seconds since the last detection / between the first and last one;
    pos_var: (N, 4) predicted variances of the box components; pred: (N, 4) predicted xyxy;
    x_obs: (N, 8) filter state right after the last detection; z_first, z_obs: (N, 4) first
    and last detected boxes (xyxy); inside: (N,) share of the predicted box in the frame, or
    None when the frame size is unknown; cover: (M, 4) boxes matched this frame.
    ok: (N,) bool, emit the row; factor (N,) in (0, 1]: multiplies the last detection score.

    A frame has a few coasting rows, so the per-row tests run as Python arithmetic on
    lists (each numpy call on a handful of values costs 1-2 µs here, the tracker's budget
    is a few hundred); only the covered share, against every matched box, uses numpy, and
    it runs last, on the rows still trusted.
    """
    c = config
    n = len(unseen)
    un, hist, prd = unseen.tolist(), history.tolist(), pred.tolist()
    var = [sum(v) for v in pos_var.tolist()]
    ins = inside.tolist() if inside is not None else None
    var_limit = 4.0 * c.coast_max_pos_std ** 2          # 4 x mean variance <= limit^2 * w * h
    decay = -1.0 / c.coast_score_half_life_s
    ok, factor = [False] * n, [0.0] * n
    for i in range(n):
        allowed = min(c.coast_unseen_ratio * hist[i], c.emit_coast_seconds)
        # decays with the half-life, and to half of that where the allowed unseen time runs out
        factor[i] = 2.0 ** (un[i] * decay) * (1.0 - 0.5 * un[i] / max(allowed, 1e-9))
        x1, y1, x2, y2 = prd[i]
        ok[i] = (un[i] <= allowed + 1e-9 and var[i] <= var_limit * (x2 - x1) * (y2 - y1)
                 and (ins is None or ins[i] >= c.coast_min_inside))
    idx = [i for i in range(n) if ok[i]]
    if idx and c.coast_max_vel_change > 0:
        limit = c.coast_max_vel_change ** 2
        xyxy = c.box_param == "xyxy"
        zo, zf, vo = z_obs.tolist(), z_first.tolist(), x_obs[:, DIM:].tolist()
        for i in idx:
            o, f, v = zo[i], zf[i], vo[i]
            scale = 0.5 / max(hist[i], 1e-9)                   # centre velocity over the track's life
            dx = (0.5 * (v[0] + v[2]) if xyxy else v[0]) - (o[0] + o[2] - f[0] - f[2]) * scale
            dy = (0.5 * (v[1] + v[3]) if xyxy else v[1]) - (o[1] + o[3] - f[1] - f[3]) * scale
            ok[i] = dx * dx + dy * dy <= limit * (o[2] - o[0]) * (o[3] - o[1])
        idx = [i for i in idx if ok[i]]
    if idx and c.coast_max_covered < 1.0 and len(cover):
        share = _covered((pred if len(idx) == n else pred[idx]).T.copy(), cover.T.copy()).tolist()
        for i, f in zip(idx, share):
            ok[i] = f <= c.coast_max_covered
    return np.array(ok, bool), np.array(factor)


def coast_trust_rows(config, tracks, rows, boxes, unseen, cover, inside):
    """``coast_trust`` for track rows ``rows`` of the tracker's struct of arrays ``tracks``
    (predicted ``boxes``, ``unseen`` seconds); returns (ok, factor)."""
    return coast_trust(config, unseen=unseen, history=tracks.t_obs[rows] - tracks.t_first[rows],
                       pos_var=tracks.P[rows, 0], pred=boxes, x_obs=tracks.x_obs[rows],
                       z_first=tracks.z_first[rows], z_obs=tracks.z_obs[rows], inside=inside, cover=cover)
