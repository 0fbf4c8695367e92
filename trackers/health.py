"""Tracking health without ground truth, from the tracker's output stream.

Fed every frame with the tracked ``Detections`` and the frame time (seconds),
``TrackHealth`` counts, over stream time:

- tracks born (an id emitted for the first time) and ended (an id not emitted
  for more than ``end_after_s``, or still open at ``report``) per minute;
- confirmed-track lifetime: first emission to last detected (not coasted) emission, seconds,
  mean and median over ended tracks;
- coasted share of emitted boxes;
- id churn: ended tracks that lived less than ``short_s`` (1 s), per minute --
  flicker from false positives or id switches;
- relinks and recoveries, taken from the tracker's own ``stats`` when given.

Works for any tracker that emits ``track_id`` (and ``coasted``).
"""
from __future__ import annotations

import threading

import numpy as np


class TrackHealth:
    """Thread-safe: ``update`` from the tracking thread, ``report`` from any other."""

    def __init__(self, end_after_s: float = 1.5, short_s: float = 1.0) -> None:
        self.end_after_s = float(end_after_s)
        self.short_s = float(short_s)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._first: dict[int, float] = {}       # open tracks: id -> first emission time
        self._last_det: dict[int, float] = {}    # id -> last detected (not coasted) emission
        self._last_seen: dict[int, float] = {}   # id -> last emission of any kind
        self.lifetimes: list[float] = []         # ended tracks
        self.born = 0
        self.boxes = 0
        self.coasted = 0
        self.t0: float | None = None
        self.t1: float | None = None

    def update(self, tracks, timestamp: float) -> None:
        with self._lock:
            self._update(tracks, float(timestamp))

    def _update(self, tracks, t: float) -> None:
        if self.t0 is None:
            self.t0 = t
        self.t1 = t
        if tracks is None or tracks.track_id is None:
            return
        n = len(tracks)
        self.boxes += n
        coast = tracks.coasted if tracks.coasted is not None else np.zeros(n, bool)
        self.coasted += int(np.count_nonzero(coast))
        for tid, c in zip(tracks.track_id.tolist(), coast.tolist()):
            if tid not in self._first:
                self._first[tid] = t
                self._last_det[tid] = t
                self.born += 1
            self._last_seen[tid] = t
            if not c:
                self._last_det[tid] = t
        gone = [tid for tid, ts in self._last_seen.items() if t - ts > self.end_after_s]
        for tid in gone:
            self._close(tid)

    def _close(self, tid: int) -> None:
        self.lifetimes.append(self._last_det[tid] - self._first[tid])
        del self._first[tid], self._last_det[tid], self._last_seen[tid]

    def report(self, tracker_stats=None) -> dict:
        """Counters so far; tracks still open are counted as ended now (their lifetime so far)."""
        with self._lock:
            return self._report(tracker_stats)

    def _report(self, tracker_stats) -> dict:
        lifetimes = self.lifetimes + [self._last_det[k] - self._first[k] for k in self._first]
        minutes = max(((self.t1 or 0.0) - (self.t0 or 0.0)) / 60.0, 1e-9)
        short = sum(1 for x in lifetimes if x < self.short_s)
        out = {
            "stream_s": round(minutes * 60.0, 3),
            "tracks_born": self.born,
            "tracks_ended": len(lifetimes),
            "born_per_min": round(self.born / minutes, 2),
            "ended_per_min": round(len(lifetimes) / minutes, 2),
            "lifetime_mean_s": round(float(np.mean(lifetimes)), 3) if lifetimes else None,
            "lifetime_median_s": round(float(np.median(lifetimes)), 3) if lifetimes else None,
            "coasted_share": round(self.coasted / self.boxes, 4) if self.boxes else 0.0,
            "short_tracks": short,
            "short_s": self.short_s,
            "id_churn_per_min": round(short / minutes, 2),
        }
        if tracker_stats is not None:
            out["relinks"] = int(getattr(tracker_stats, "relinks", 0))
            out["recoveries"] = int(getattr(tracker_stats, "recoveries", 0))
        return out


def format_health(h: dict) -> str:
    """One line for the end-of-run report."""
    life = "-" if h["lifetime_mean_s"] is None else f"{h['lifetime_mean_s']:.1f} / {h['lifetime_median_s']:.1f} s"
    line = (f"tracks: born {h['tracks_born']} ({h['born_per_min']:.1f}/min), ended {h['tracks_ended']} "
            f"({h['ended_per_min']:.1f}/min), lifetime mean / median {life}, coasted {100 * h['coasted_share']:.1f}% "
            f"of boxes, churn {h['short_tracks']} tracks < {h['short_s']:g} s ({h['id_churn_per_min']:.1f}/min)")
    if "relinks" in h:
        line += f", relinks {h['relinks']}, recoveries {h['recoveries']}"
    return line
