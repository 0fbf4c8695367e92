"""Class groups and class votes of KalmanTracker's tracks.

Detectors flip between related classes from frame to frame (an SUV is a car,
then a truck; a motorcycle becomes a bicycle).  With class groups:
- association within a group crosses classes: the pair's similarity is lowered
  by ``class_switch_cost * (1 - share of the detection's class in the track's
  votes)``, but not below the pass's gate (the cost ranks candidates, it never
  unmatches a lone one); across groups a pair is never matched (similarity -inf);
- a track's class is the score-weighted vote of its detections: each matched
  detection adds its score to its class's tally, and the track's class changes
  only when another class's tally becomes strictly larger.

Without groups (``class_groups: []``) only equal class ids match and no track
ever sees a second class, so its class stays the one it was born with.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.detector import COCO_NAMES


class ClassGroups:
    """Maps class ids to group keys (equal keys: same group) for one detector's class names."""

    def __init__(self, groups: Sequence[Sequence[str]], class_names: Sequence[str] | None = None) -> None:
        names = COCO_NAMES if class_names is None else tuple(class_names)
        self.enabled = len(groups) > 0
        index = {n.strip().lower(): g for g, group in enumerate(groups) for n in group}
        self._n_groups = len(groups)
        # a class in no group (or an id beyond the names) is a group of its own: n_groups + id
        self._key = np.array([index.get(str(n).strip().lower(), self._n_groups + i) for i, n in enumerate(names)],
                             np.int64)

    def keys(self, cls: np.ndarray) -> np.ndarray:
        """(N,) group key of each class id."""
        n = len(self._key)
        if n == 0:
            return self._n_groups + cls.astype(np.int64)
        inside = (cls >= 0) & (cls < n)
        key = self._key[np.clip(cls, 0, n - 1)]
        if np.count_nonzero(inside) < len(cls):
            key = np.where(inside, key, self._n_groups + cls.astype(np.int64))
        return key

    def similarity(self, sim: np.ndarray, track_cls: np.ndarray, votes: np.ndarray, det_cls: np.ndarray,
                   cost: float, gate: float) -> np.ndarray:
        """(T, D) ``sim`` with class rules applied (see the module doc); pairs below ``gate`` become -inf.

        ``track_cls`` (T,) voted classes, ``votes`` (T, K) per-class tallies,
        ``det_cls`` (D,) the detections' (or other tracks') classes. The cost
        never takes a pair that passes ``gate`` below it: it only ranks, so a
        lone object whose class flips keeps its track.  Only pairs at or above
        the gate are looked at (a few per track), which keeps this cheaper than
        comparing every pair's classes.
        """
        r, c = np.nonzero(sim >= gate)
        out = np.full(sim.shape, -np.inf)
        if len(r) == 0:
            return out
        val = sim[r, c]
        tc, dc = track_cls[r], det_cls[c]
        diff = tc != dc
        if np.count_nonzero(diff):
            if not self.enabled:
                keep = ~diff
            else:
                d = diff.nonzero()[0]
                keep = ~diff
                ok = self.keys(tc[d]) == self.keys(dc[d])
                d = d[ok]
                keep[d] = True
                if len(d):
                    v = votes[r[d]]                                     # (n, K)
                    k = v.shape[1]
                    cls = dc[d]
                    share = np.where(cls < k, v[np.arange(len(d)), np.minimum(cls, k - 1)], 0.0)
                    share = share / np.maximum(v.sum(axis=1), 1e-12)
                    val[d] = np.maximum(val[d] - cost * (1.0 - share), gate)
            r, c, val = r[keep], c[keep], val[keep]
        out[r, c] = val
        return out


def widen(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """``votes`` with at least ``n_classes`` columns (new ones zero)."""
    if votes.shape[1] >= n_classes:
        return votes
    out = np.zeros((len(votes), n_classes), votes.dtype)
    out[:, : votes.shape[1]] = votes
    return out


def cast_votes(votes: np.ndarray, cls: np.ndarray, rows: np.ndarray, det_cls: np.ndarray,
               det_score: np.ndarray) -> None:
    """Add each matched detection's score to its class on its track (rows unique), in place;
    a track's class ``cls`` becomes the class with the largest tally (ties keep the current one)."""
    votes[rows, det_cls] += det_score
    flipped = det_cls != cls[rows]
    if np.count_nonzero(flipped) == 0:     # every vote went to the class already leading
        return
    r = rows[flipped]
    best = votes[r].argmax(axis=1)
    turn = votes[r, best] > votes[r, cls[r]]
    cls[r[turn]] = best[turn]
