"""Why did an id switch happen?  Classify every IDSW that trackeval's CLEAR counts.

``TrackLog`` records, per frame, which tracks ``KalmanTracker`` holds (alive,
confirmed) and which it matched to a detection; ``idsw_events`` replays
trackeval's CLEAR matching on the preprocessed KITTI data of a scored result
folder and returns each switch (ground-truth track now matched to id ``new``,
last matched to id ``old`` at frame ``last``).  ``classify`` names its cause:

- ``old_removed``: the old track was removed (coast timeout) before the new
  track was born, which then got a fresh id;
- ``duplicate``: the new track was born while the old one was coasting, and
  neither the passes nor relink gave the detection back to the old track;
- ``old_moved_on``: the new track was born while the old one was following
  some other detection (it had drifted onto another object or clutter);
- ``steal_swap``: the new id belonged to a track that already existed when the
  object was last seen with its old id (another track took the object over);
  ``+old_busy`` when the old track is matched to some other detection now.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

CLEAR_THRESHOLD = 0.5


@dataclass
class TrackLog:
    """Per-id history of one tracker run over one sequence (frames counted from 0)."""

    born: dict[int, int] = field(default_factory=dict)       # first frame the id existed
    removed: dict[int, int] = field(default_factory=dict)    # first frame it no longer existed
    removed_age: dict[int, float] = field(default_factory=dict)   # seconds since its last detection
    matched: dict[int, set[int]] = field(default_factory=dict)    # frames with a detection
    _alive: dict[int, float] = field(default_factory=dict)   # id -> time of its last detection

    def record(self, frame: int, timestamp: float, tracker) -> None:
        """Call after ``tracker.update`` of frame ``frame``."""
        tr = tracker.tracks
        now = {int(i): float(t) for i, t in zip(tr.id, tr.t_obs)}
        for i in set(self._alive) - set(now):
            self.removed[i] = frame
            self.removed_age[i] = timestamp - self._alive[i]
        for i, t in now.items():
            self.born.setdefault(i, frame)
            if abs(t - timestamp) < 1e-9:
                self.matched.setdefault(i, set()).add(frame)
        self._alive = now

    def alive(self, tid: int, frame: int) -> bool:
        return self.born.get(tid, frame + 1) <= frame < self.removed.get(tid, 1 << 30)


@dataclass(frozen=True)
class Switch:
    seq: str
    frame: int
    gt: int          # trackeval's (relabelled) ground-truth id
    old: int         # tracker id the ground truth was last matched to
    new: int
    last: int        # frame of that last match


def _original_ids(raw: dict, data: dict, t: int) -> np.ndarray:
    """Tracker ids of timestep t before trackeval relabelled them (found by identical boxes)."""
    raw_boxes, raw_ids = np.asarray(raw["tracker_dets"][t]), raw["tracker_ids"][t]
    out = []
    for box in np.asarray(data["tracker_dets"][t]):
        out.append(int(raw_ids[np.flatnonzero((raw_boxes == box).all(axis=1))[0]]))
    return np.array(out, np.int64)


def idsw_events(dataset, tracker_name: str, seq: str, cls: str) -> list[Switch]:
    """Every IDSW of CLEAR (same matching as ``trackeval.metrics.CLEAR``) for one sequence."""
    raw = dataset.get_raw_seq_data(tracker_name, seq)
    data = dataset.get_preprocessed_seq_data(raw, cls)
    n_gt = data["num_gt_ids"]
    prev_id = np.full(n_gt, -1)
    prev_frame = np.full(n_gt, -1)
    prev_step_id = np.full(n_gt, -1)
    events = []
    for t, (gt_ids, trk_ids) in enumerate(zip(data["gt_ids"], data["tracker_ids"])):
        if len(gt_ids) == 0 or len(trk_ids) == 0:    # CLEAR keeps prev_step_id here
            continue
        orig = _original_ids(raw, data, t)
        sim = data["similarity_scores"][t]
        score = 1000 * (orig[None, :] == prev_step_id[gt_ids][:, None]) + sim
        score[sim < CLEAR_THRESHOLD - np.finfo(float).eps] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > np.finfo(float).eps
        g, k = gt_ids[rows[ok]], orig[cols[ok]]
        for gi, ki in zip(g, k):
            if prev_id[gi] >= 0 and prev_id[gi] != ki:
                events.append(Switch(seq, t, int(gi), int(prev_id[gi]), int(ki), int(prev_frame[gi])))
        prev_id[g], prev_frame[g] = k, t
        prev_step_id[:] = -1
        prev_step_id[g] = k
    return events


def classify(ev: Switch, log: TrackLog) -> str:
    born_new = log.born.get(ev.new, ev.frame)
    old_matched = log.matched.get(ev.old, set())
    if born_new <= ev.last:
        busy = log.alive(ev.old, ev.frame) and ev.frame in old_matched
        return "steal_swap+old_busy" if busy else "steal_swap"
    if not log.alive(ev.old, born_new):
        return "old_removed"
    return "old_moved_on" if born_new in old_matched else "duplicate"


def explain(events: list[Switch], logs: dict[str, TrackLog]) -> tuple[Counter, list[str]]:
    """Counts per cause and one line per switch."""
    counts, lines = Counter(), []
    for ev in events:
        log = logs[ev.seq]
        cause = classify(ev, log)
        counts[cause] += 1
        extra = ""
        if ev.old in log.removed:
            extra = f" old removed at {log.removed[ev.old]} (age {log.removed_age[ev.old]:.1f}s)"
        lines.append(f"{ev.seq} f{ev.frame}: gt {ev.gt} id {ev.old} (last f{ev.last}, born f{log.born.get(ev.old)})"
                     f" -> {ev.new} (born f{log.born.get(ev.new)}) [{cause}]{extra}")
    return counts, lines
