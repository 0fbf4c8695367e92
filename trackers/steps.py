"""The steps of ``KalmanTracker.update`` after association, each a function of explicit inputs.

- ``update_matched``: the motion filter's update of matched tracks (re-run from the last
  observation after a gap of two or more frames), class votes, hits, confirmation;
- ``coast_status``: which tracks were matched, how long each has been unseen, which are
  still visible in the frame;
- ``output``: the emitted rows (matched tracks and trusted coasting ones);
- ``deaths``: tracks that missed while tentative, coasted too long or left the frame;
- ``births``: new tracks from unmatched strong detections, and their output when
  confirmed at birth.
"""
from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from dashtrack_core.records import Detections

from .classes import add_votes, born_votes
from .kalman import DIM, state_box_to_xyxy, xyxy_to_state_box
from .state import Tracks
from . import trust, ttc

SAME_TIME = 1e-9


def update_matched(config, tracks, motion, groups, m, frame, timestamp: float, prev_t, times, stats) -> None:
    """Update tracks ``m.ti`` with detections ``m.di`` (``passes.Matches``) of ``frame``.

    A track last observed before the previous frame counts as a recovery; one last observed
    before the frame ahead of that is re-run first (``replay_gap``; ``times``: recent frame
    times, ``prev_t``: the previous frame's, None on the first).
    """
    c, tr, ti, di = config, tracks, m.ti, m.di
    if len(ti) == 0:
        return
    xyxy, score = frame.xyxy[di], frame.score[di]      # (gathered once: each is used twice)
    z = xyxy_to_state_box(xyxy, c.box_param)
    t_last = tr.t_obs[ti]
    gap = t_last < (prev_t if prev_t is not None else timestamp) - SAME_TIME
    # Replayed only after two or more missed frames: after one, the replay's single
    # virtual observation (the midpoint) changes little (KITTI scores are the same)
    # and it was the costliest step of a frame with a few one-frame misses.
    earlier = times[-2] if len(times) >= 2 else -np.inf
    replay = t_last < earlier - SAME_TIME     # (implies gap: earlier < prev_t)
    if c.reupdate_on_recovery and np.count_nonzero(replay):
        stats.replays += np.count_nonzero(replay)
        replay_gap(tr, motion, c.box_param, times, ti[replay], z[replay], timestamp)
    x_new, P_new = motion.update(tr.x[ti], tr.P[ti], z, copy=False)   # gathered rows: copies already
    tr.x[ti], tr.P[ti] = x_new, P_new
    tr.x_obs[ti], tr.P_obs[ti] = x_new, P_new
    stats.recoveries += np.count_nonzero(gap)
    hits = tr.hits[ti] + 1
    tr.hits[ti] = hits
    if groups.enabled:       # (without groups no track sees a second class)
        tr.votes = add_votes(tr.votes, tr.cls, ti, frame.cls[di], score, frame.mixed,
                             m.cross_class, frame.mixed and not frame.named)
    tr.score[ti] = score
    tr.t_obs[ti] = timestamp
    tr.z_obs[ti] = xyxy
    tr.confirmed[ti] |= hits >= c.min_hits


def replay_gap(tracks, motion, param: str, times, rows: np.ndarray, z: np.ndarray, timestamp: float) -> None:
    """Re-run tracks `rows` from their last observation up to now (OC-SORT's re-update).

    Virtual observations, interpolated linearly between the last detection
    and `z`, are fed at every frame time in between (``times``, oldest first).  Rows whose
    last detection has the same time step together (usually all of them).
    Leaves the rows predicted to `timestamp`; the caller then updates them with `z`.
    """
    t_obs = tracks.t_obs[rows]
    groups = set(t_obs.tolist())      # (np.unique costs ten times as much on a few rows)
    for t0 in sorted(groups):
        same = slice(None) if len(groups) == 1 else t_obs == t0
        sel, zs = rows[same], z[same]
        x, C = tracks.x_obs[sel], tracks.P_obs[sel]          # copies (gathered by index)
        z0 = xyxy_to_state_box(tracks.z_obs[sel], param)
        step = (zs - z0) / (timestamp - t0)
        t_prev = t0
        for t in times[bisect.bisect_right(times, t0 + SAME_TIME):]:  # frame times strictly between
            if t >= timestamp - SAME_TIME:
                break
            motion.predict(x, C, t - t_prev)
            x, C = motion.update(x, C, z0 + (t - t0) * step, copy=False)
            t_prev = t
        motion.predict(x, C, timestamp - t_prev)
        tracks.x[sel], tracks.P[sel] = x, C


class Coast(NamedTuple):
    """Per track (T,), before removals and births: matched this frame, its detection row (-1:
    none), seconds since its last detection, share of its predicted box in the frame (None:
    frame size unknown), visible (matched, or enough of it in the frame)."""

    matched_now: np.ndarray
    det_of_track: np.ndarray
    age: np.ndarray
    inside: np.ndarray | None
    visible: np.ndarray


def coast_status(config, tracks, m, timestamp: float, pred, extent) -> Coast:
    n_t = len(tracks)
    matched_now = np.zeros(n_t, bool)
    matched_now[m.ti] = True
    det_of_track = np.full(n_t, -1)
    det_of_track[m.ti] = m.di
    age = timestamp - tracks.t_obs
    if extent[2] > extent[0]:    # frame size known (an image was given)
        inside = visible_fraction(pred, extent)
        visible = matched_now | (inside >= config.min_visible_fraction)
    else:
        inside = None
        visible = np.ones(n_t, bool)
    return Coast(matched_now, det_of_track, age, inside, visible)


def visible_fraction(boxes: np.ndarray, e: np.ndarray) -> np.ndarray:
    """(T,) share of each box's area inside the frame extent ``e`` (x1 y1 x2 y2; 1 when unknown)."""
    if e[2] <= e[0] or len(boxes) == 0:
        return np.ones(len(boxes))
    iw = np.minimum(boxes[:, 2], e[2]) - np.maximum(boxes[:, 0], e[0])
    ih = np.minimum(boxes[:, 3], e[3]) - np.maximum(boxes[:, 1], e[1])
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-9) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-9)
    return np.maximum(iw, 0.0) * np.maximum(ih, 0.0) / area


def output(config, tracks, s: Coast, frame, pred, ti, extent, horizon_row: float) -> Detections:
    """The emitted rows: confirmed, visible tracks matched now or unseen at most
    ``emit_coast_seconds``; coasting ones only with a proper, trusted predicted box (``pred``)."""
    c, tr = config, tracks
    emit = tr.confirmed & s.visible & (s.matched_now | (s.age <= c.emit_coast_seconds + SAME_TIME))
    if c.emit_min_hits > c.min_hits:
        emit &= tr.hits >= c.emit_min_hits
    rows = emit.nonzero()[0]
    if len(rows) == 0:
        return Detections.empty(tracked=True)
    age = s.age
    # coasting rows were not updated: their box is the prediction
    boxes = pred[rows] if c.emit_detection_box else state_box_to_xyxy(tr.x[rows, :DIM], c.box_param)
    if c.coast_trust:     # every coasting row's score comes from trust.py, every matched one's is the detection's
        score = tr.score[rows].astype(np.float64)
    else:
        score = tr.score[rows] * 0.5 ** (age[rows] / c.coast_score_half_life_s)
    live = s.matched_now[rows]
    li = live.nonzero()[0]                   # (indices: cheaper than the mask twice)
    d = s.det_of_track[rows[li]]
    if c.emit_detection_box:
        boxes[li] = frame.xyxy[d]
    score[li] = frame.score[d]
    if len(li) == len(rows):                          # this frame's detector class; -1: coasted
        det_class = frame.cls[d]
    else:
        det_class = np.full(len(rows), -1, np.int32)
        det_class[li] = frame.cls[d]
    coast = ~live
    if np.count_nonzero(coast):      # a degenerate predicted box is not emitted
        ok = live | ((boxes[:, 2] - boxes[:, 0] > 1.0) & (boxes[:, 3] - boxes[:, 1] > 1.0))
        if c.coast_trust:        # nor one whose prediction is not trusted (trust.py)
            ci = coast.nonzero()[0]
            cover = frame.xyxy[s.det_of_track[ti]] if len(ti) else np.zeros((0, 4))
            rc = rows[ci]
            inside = s.inside[rc] if s.inside is not None else None
            trusted, factor = trust.coast_trust_rows(c, tr, rc, boxes[ci], age[rc], cover, inside)
            ok[ci] &= trusted
            score[ci] = tr.score[rc] * factor
        if np.count_nonzero(ok) < len(ok):
            rows, boxes, score, coast, det_class = rows[ok], boxes[ok], score[ok], coast[ok], det_class[ok]
    cols = {"det_class": det_class}
    if c.ttc:
        cols.update(ttc.track_columns(c, tr, rows, boxes, extent, horizon_row))
    return Detections(boxes, score, tr.cls[rows], tr.id[rows], coast, cols)


def deaths(config, tracks, s: Coast) -> None:
    """Remove tentative tracks that missed, and confirmed ones coasting longer than
    ``max_coast_seconds`` or predicted out of the frame."""
    alive = np.where(tracks.confirmed, s.visible & (s.age <= config.max_coast_seconds + SAME_TIME), s.matched_now)
    if np.count_nonzero(alive) < len(tracks):
        tracks.keep(alive)


def births(config, tracks, motion, groups, frame, d_free, timestamp: float, next_id: int) -> np.ndarray:
    """Append a track for each unmatched detection scoring at least ``new_track_score`` (and
    ``high_score``); ids from ``next_id`` on.  Returns the detection rows born (the last tracks)."""
    c = config
    born = (d_free & (frame.score >= max(c.new_track_score, c.high_score))).nonzero()[0]
    n = len(born)
    if n == 0:
        return born
    xyxy, score, cls = frame.xyxy[born], frame.score[born], frame.cls[born]
    new = Tracks()
    new.id = np.arange(next_id, next_id + n, dtype=np.int64)
    new.cls = cls.astype(np.int32)
    new.gkey = groups.keys(new.cls)
    if groups.enabled:
        tracks.votes, new.votes = born_votes(tracks.votes, groups.n_names, new.cls, score)
    else:
        new.votes = np.zeros((n, tracks.votes.shape[1]), np.float32)
    new.score = score.astype(np.float32)
    new.hits = np.ones(n, np.int64)
    new.confirmed = np.full(n, c.min_hits <= 1)
    new.t_obs = np.full(n, timestamp)
    new.z_obs = xyxy.copy()
    new.x, new.P = motion.initiate(xyxy_to_state_box(xyxy, c.box_param))
    new.x_obs, new.P_obs = new.x.copy(), new.P.copy()
    new.t_first = new.t_obs.copy()
    new.z_first = new.z_obs.copy()
    new.rate = np.full(n, np.nan)
    tracks.extend(new)
    return born


def newborn_output(config, tracks, frame, born: np.ndarray, extent, horizon_row: float) -> Detections:
    """The output rows of the tracks just born from detections ``born`` of ``frame`` (the
    last tracks; confirmed at birth when ``min_hits <= 1``)."""
    n = len(born)
    xyxy, cls = frame.xyxy[born], frame.cls[born]
    cols = {"det_class": np.asarray(cls, np.int32)}
    if config.ttc:
        rows = np.arange(len(tracks) - n, len(tracks))
        cols.update(ttc.track_columns(config, tracks, rows, xyxy, extent, horizon_row))
    return Detections(xyxy, frame.score[born], cls, tracks.id[-n:], np.zeros(n, bool), cols)
