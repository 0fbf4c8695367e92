"""The records passed between stages.

``Frame`` is what a source yields; ``Detections`` is a struct of arrays for the
boxes of one frame.  Both are frozen: a stage that changes something builds a
new record (``dataclasses.replace`` or ``Detections.with_tracks``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True, eq=False, slots=True)
class Frame:
    """One decoded frame.

    image:      (H, W, 3) uint8, BGR.
    index:      0-based count of frames the source produced (decoded frames,
                never container metadata).
    timestamp:  presentation time in seconds (stream PTS, camera clock or
                index / fps for image folders).
    source:     a short name of the source (file name, ``camera0``, URL).
    captured_at: ``time.monotonic()`` when the frame left the decoder; used for
                capture-to-output latency.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source: str
    captured_at: float = 0.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


_COLUMNS = (("score", np.float32), ("class_id", np.int32), ("track_id", np.int64), ("coasted", np.bool_))
_REQUIRED = ("score", "class_id")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one frame, in that frame's pixel coordinates.

    xyxy:     (N, 4) float32, x1 y1 x2 y2.
    score:    (N,) float32 in [0, 1].
    class_id: (N,) int32, index into the detector's class names (after a
              tracker: the track's class, the vote of its detections).
    track_id: (N,) int64 or None when no tracker ran.
    coasted:  (N,) bool or None; True where the box is a tracker prediction
              with no detection behind it this frame.
    columns:  optional extra per-box columns, name -> (N,) array (e.g. the
              tracker's ``det_class``, ``ttc_s`` and ``in_path``); kept through selection,
              ``with_tracks`` and ``concat`` (a part without a column gets NaN
              for float columns, False for bool, -1 for int) and written by the JSONL writer.
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray | None = None
    coasted: np.ndarray | None = None
    columns: dict | None = None

    def __post_init__(self) -> None:
        # (runs for every record of every frame: reshape and checks only where needed)
        xyxy = np.ascontiguousarray(self.xyxy, dtype=np.float32)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            xyxy = xyxy.reshape(-1, 4)
        n = len(xyxy)
        object.__setattr__(self, "xyxy", _readonly(xyxy))
        for name, dtype in _COLUMNS:
            value = getattr(self, name)
            if value is None:
                if name in _REQUIRED:
                    raise ValueError(f"Detections: {name} is None")
                continue
            value = np.ascontiguousarray(value, dtype=dtype)
            if value.ndim != 1:
                value = value.reshape(-1)
            if len(value) != n:
                raise ValueError(f"Detections: xyxy has {n} rows but {name} has {len(value)} entries")
            object.__setattr__(self, name, _readonly(value))
        if self.columns:
            cols = {}
            for name, value in self.columns.items():
                value = np.asarray(value)
                if value.ndim != 1:
                    value = value.reshape(-1)
                if len(value) != n:
                    raise ValueError(f"Detections: xyxy has {n} rows but column {name} has {len(value)} entries")
                cols[name] = _readonly(value)       # like the other columns: frozen, not copied
            object.__setattr__(self, "columns", cols)
        else:
            object.__setattr__(self, "columns", None)

    @classmethod
    def empty(cls, tracked: bool = False) -> "Detections":
        if tracked:
            return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool))
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def tracked(self) -> bool:
        return self.track_id is not None

    def __getitem__(self, index) -> "Detections":
        """Select rows by a boolean mask, an index array or a slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.score[index],
            self.class_id[index],
            None if self.track_id is None else self.track_id[index],
            None if self.coasted is None else self.coasted[index],
            None if self.columns is None else {k: v[index] for k, v in self.columns.items()},
        )

    def with_tracks(self, track_id: np.ndarray, coasted: np.ndarray | None = None) -> "Detections":
        if coasted is None:
            coasted = np.zeros(len(self), bool)
        return Detections(self.xyxy, self.score, self.class_id, track_id, coasted, self.columns)

    def with_columns(self, **columns: np.ndarray) -> "Detections":
        """A copy with extra per-box columns added (or replaced)."""
        return Detections(self.xyxy, self.score, self.class_id, self.track_id, self.coasted,
                          {**(self.columns or {}), **columns})

    @staticmethod
    def concat(parts: Sequence["Detections"]) -> "Detections":
        parts = list(parts)
        if not parts:
            return Detections.empty()
        tracked = all(p.tracked for p in parts)
        return Detections(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.track_id for p in parts]) if tracked else None,
            np.concatenate([p.coasted for p in parts]) if tracked else None,
            _concat_columns(parts),
        )


def _concat_columns(parts: list[Detections]) -> dict | None:
    """Extra columns of ``parts`` joined; a part lacking one gets NaN (float), False (bool) or -1 (int)."""
    kinds: dict[str, np.dtype] = {}
    for p in parts:
        for k, v in (p.columns or {}).items():
            kinds.setdefault(k, v.dtype)
    if not kinds:
        return None
    out = {}
    for k, dtype in kinds.items():
        # a part lacking the column: NaN (float), False (bool), -1 (int: "none", e.g. det_class)
        fill = np.nan if np.issubdtype(dtype, np.floating) else (False if dtype == np.bool_ else -1)
        out[k] = np.concatenate([p.columns[k] if p.columns and k in p.columns
                                 else np.full(len(p), fill, dtype) for p in parts])
    return out


@dataclass(frozen=True, eq=False, slots=True)
class Packet:
    """What flows between stages: a frame and what the stages so far made of it.

    batch:      the preprocessed network input (``dashtrack_core.detector.Batch``).
    raw:        the network's raw output.
    detections: boxes after decode + NMS, with track ids after the tracking stage.
    """

    frame: Frame
    batch: object = None
    raw: object = None
    detections: Detections | None = None


@dataclass(frozen=True, eq=False, slots=True)
class PacketGroup:
    """Consecutive packets of one source run through the detector together
    (``detector.batch`` > 1): one network batch for all of them."""

    packets: tuple[Packet, ...]
    batch: object = None
    raw: object = None

    @property
    def frames(self) -> int:
        """How many frames the group holds (stage times are recorded per frame)."""
        return len(self.packets)
