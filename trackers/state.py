"""The tracker's state: per-track arrays (``Tracks``) and its counters (``TrackerStats``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .kalman import DIM


@dataclass
class TrackerStats:
    """Timing on a monotonic clock (time.perf_counter), since the last reset."""

    updates: int = 0
    update_seconds: float = 0.0
    cmc_calls: int = 0
    cmc_seconds: float = 0.0
    cmc_fallbacks: int = 0
    tracks_born: int = 0
    recoveries: int = 0
    replays: int = 0          # recoveries re-run from the last observation (gaps of 2+ frames)
    relinks: int = 0

    @property
    def us_per_update(self) -> float:
        return 1e6 * self.update_seconds / max(self.updates, 1)

    @property
    def cmc_ms_per_call(self) -> float:
        return 1e3 * self.cmc_seconds / max(self.cmc_calls, 1)


def one_class(a: np.ndarray, b: np.ndarray) -> bool:
    """True when every entry of a and b is the same class id (or both are empty)."""
    k = b[0] if len(b) else (a[0] if len(a) else 0)
    return np.count_nonzero(a != k) == 0 and np.count_nonzero(b != k) == 0


class Frame(NamedTuple):
    """One frame's detections as the tracker's steps see them (``frame_detections``)."""

    xyxy: np.ndarray            # (D, 4) float64
    score: np.ndarray           # (D,)
    cls: np.ndarray             # (D,) class ids
    high: np.ndarray            # (D,) bool: score >= high_score
    low: np.ndarray             # (D,) bool: low_score <= score < high_score
    mixed: bool                 # tracks and detections of more than one class (else class checks are skipped)
    key: np.ndarray | None      # (D,) class group keys when ``mixed``
    named: bool                 # every class id has a name (else votes may need more columns)


def frame_detections(detections, track_cls: np.ndarray, config, groups) -> Frame:
    """``Frame`` of ``detections`` (``Detections``) for tracks of classes ``track_cls``."""
    cls, score = detections.class_id, detections.score
    mixed = not one_class(track_cls, cls)
    key, named = groups.keys_known(cls) if mixed else (None, True)
    high = score >= config.high_score
    low = ~high & (score >= config.low_score)
    return Frame(detections.xyxy.astype(np.float64), score, cls, high, low, mixed, key, named)


class Tracks:
    """Struct of arrays for all live tracks (row i is one track)."""

    FIELDS = ("id", "cls", "votes", "gkey", "score", "hits", "confirmed", "t_obs", "z_obs", "x", "P", "x_obs", "P_obs",
              "t_first", "z_first", "rate")

    def __init__(self) -> None:
        self.id = np.zeros(0, np.int64)
        self.cls = np.zeros(0, np.int32)              # voted class (trackers/classes.py)
        self.votes = np.zeros((0, 0), np.float32)     # (T, classes seen) score tallies
        self.gkey = np.zeros(0, np.int64)             # class group key (fixed: votes stay in the group)
        self.score = np.zeros(0, np.float32)          # last detection score
        self.hits = np.zeros(0, np.int64)             # detections matched so far
        self.confirmed = np.zeros(0, bool)
        self.t_obs = np.zeros(0)                      # time of the last detection
        self.z_obs = np.zeros((0, 4))                 # last detection, xyxy
        self.x = np.zeros((0, 2 * DIM))               # filter state now
        self.P = np.zeros((0, 3, DIM))                # covariance blocks (see BoxKalman)
        self.x_obs = np.zeros((0, 2 * DIM))           # filter state right after the last detection
        self.P_obs = np.zeros((0, 3, DIM))
        self.t_first = np.zeros(0)                    # time of the first detection
        self.z_first = np.zeros((0, 4))               # first detection, xyxy
        self.rate = np.zeros(0)                       # smoothed expansion rate (1/s), NaN at birth

    def __len__(self) -> int:
        return len(self.id)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def extend(self, other: "Tracks") -> None:
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))
