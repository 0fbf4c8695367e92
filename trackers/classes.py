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

from dashtrack_core.detector import COCO_NAMES


class ClassGroups:
    """Maps class ids to group keys (equal keys: same group) for one detector's class names."""

    def __init__(self, groups: Sequence[Sequence[str]], class_names: Sequence[str] | None = None) -> None:
        names = COCO_NAMES if class_names is None else tuple(class_names)
        self.enabled = len(groups) > 0
        index = {n.strip().lower(): g for g, group in enumerate(groups) for n in group}
        self._n_groups = len(groups)
        self.n_names = len(names)
        # a class in no group (or an id beyond the names) is a group of its own: n_groups + id
        self._key = np.array([index.get(str(n).strip().lower(), self._n_groups + i) for i, n in enumerate(names)],
                             np.int64)

    def keys_known(self, cls: np.ndarray) -> tuple[np.ndarray, bool]:
        """``keys(cls)`` and whether every id has a name (is below the number of names)."""
        try:
            return self._key[cls], True
        except IndexError:
            return self.keys(cls), False

    def keys(self, cls: np.ndarray) -> np.ndarray:
        """(N,) group key of each class id (ids are >= 0, as every detector gives them)."""
        n = len(self._key)
        if len(cls) == 0 or n == 0:
            return self._n_groups + cls.astype(np.int64)
        try:                       # (the usual case: one lookup; ids are >= 0)
            return self._key[cls]
        except IndexError:
            pass
        inside = (cls >= 0) & (cls < n)
        key = self._key[np.clip(cls, 0, n - 1)]
        if np.count_nonzero(inside) < len(cls):
            key = np.where(inside, key, self._n_groups + cls.astype(np.int64))
        return key

    @staticmethod
    def penalise(sim: np.ndarray, gate: float, cross: np.ndarray, votes: np.ndarray, other_cls: np.ndarray,
                 cost: float) -> np.ndarray:
        """A copy of ``sim`` (T, D) with the class-switch cost on the ``cross`` pairs.

        ``cross``: (T, D) pairs at or above ``gate``, of one group, whose
        classes differ; ``votes`` (T, K) the tracks' class tallies,
        ``other_cls`` (D,) the detections' (or other tracks')
        classes. A pair pays ``cost * (1 - share of its class in the track's
        votes)`` but never drops below ``gate``: the cost only ranks, so a lone
        object whose class flips keeps its track.
        """
        flat = np.flatnonzero(cross)          # (a third of np.nonzero's cost on a 2-D mask)
        r, c = np.divmod(flat, cross.shape[1])
        oc = other_cls[c]
        v = votes[r]                                            # (n, K)
        k = v.shape[1]
        share = np.where(oc < k, v[np.arange(len(r)), np.minimum(oc, k - 1)], 0.0)
        share = share / np.maximum(v.sum(axis=1), 1e-12)
        out = sim.copy()
        out[r, c] = np.maximum(sim[r, c] - cost * (1.0 - share), gate)
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
    flat = votes.reshape(-1)                     # (a view: votes is C-contiguous)
    flat[rows * votes.shape[1] + det_cls] += det_score
    flipped = det_cls != cls[rows]
    if np.count_nonzero(flipped) == 0:     # every vote went to the class already leading
        return
    r = rows[flipped]
    best = votes[r].argmax(axis=1)
    turn = votes[r, best] > votes[r, cls[r]]
    cls[r[turn]] = best[turn]


def add_votes(votes: np.ndarray, cls: np.ndarray, rows: np.ndarray, det_cls: np.ndarray, det_score: np.ndarray,
              mixed: bool, cross: bool, unnamed: bool) -> np.ndarray:
    """Matched detections vote for their track's class (``cast_votes``); returns the tallies
    (a new array only when widened).

    The caller's knowledge of the frame picks the cheapest way: not ``mixed``
    (one class for every track and detection: a column add, no class can turn);
    no ``cross`` pair matched (every detection joined a track of its class: no
    class can turn); ``unnamed`` (a class id beyond the class names: the
    tallies may need more columns).
    """
    if not mixed:
        col = votes[:, int(det_cls[0])]        # a view (cheaper than 2-D indexing)
        col[rows] += det_score
        return votes
    if not cross:
        votes.reshape(-1)[rows * votes.shape[1] + det_cls] += det_score
        return votes
    if unnamed and int(det_cls.max()) >= votes.shape[1]:
        votes = widen(votes, int(det_cls.max()) + 1)
    cast_votes(votes, cls, rows, det_cls, det_score)
    return votes


def born_votes(votes: np.ndarray, n_names: int, cls: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the live tracks' tallies, widened if needed; the new tracks' tallies: their detection's score).

    Tallies have a column per class name (ids beyond the names add columns)."""
    width = max(votes.shape[1], n_names, int(cls.max()) + 1)
    new = np.zeros((len(cls), width), np.float32)
    new[np.arange(len(cls)), cls] = score
    return widen(votes, width), new
