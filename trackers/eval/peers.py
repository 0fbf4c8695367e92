"""Peer trackers behind one interface, for benchmarks only (not runtime dependencies).

Each adapter: ``update(dets: Detections, timestamp) -> Detections`` (tracked)
called every frame, boxes are the matched detections' boxes.  Peers are
imported lazily; ``available()`` says which import and why not.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from dashtrack_core.records import Detections

from .. import KalmanTracker, TrackerConfig

PEERS = ("sv-bytetrack", "norfair", "boxmot-ocsort", "boxmot-bytetrack")
_MODULE = {"sv-bytetrack": "supervision", "norfair": "norfair",
           "boxmot-ocsort": "boxmot", "boxmot-bytetrack": "boxmot"}


def available(name: str) -> tuple[bool, str]:
    if name == "ours":
        return True, ""
    mod = _MODULE.get(name)
    if mod is None:
        return False, f"unknown tracker {name!r}; known: ours, {', '.join(PEERS)}"
    if importlib.util.find_spec(mod) is None:
        return False, f"package {mod!r} is not installed in this environment"
    try:
        importlib.import_module(mod)
    except Exception as e:  # an installed but broken peer is reported, not fatal
        return False, f"import {mod} failed: {type(e).__name__}: {e}"
    return True, ""


def _tracked(dets: Detections, idx: np.ndarray, ids: np.ndarray) -> Detections:
    if len(idx) == 0:
        return Detections.empty(tracked=True)
    return dets[idx].with_tracks(ids)


class Ours:
    def __init__(self, config: TrackerConfig, fps: float, emit_coasted: bool = True, class_names=None,
                 frame_size: tuple[int, int] | None = None) -> None:
        self.tracker = KalmanTracker(config, class_names)
        if frame_size is not None:       # as the pipeline, which passes every image
            self.tracker.set_frame_size(*frame_size)
        self.emit_coasted = emit_coasted

    def update(self, dets: Detections, timestamp: float) -> Detections:
        out = self.tracker.update(dets, timestamp)
        return out if self.emit_coasted else out[~out.coasted]


class SvByteTrack:
    def __init__(self, fps: float) -> None:
        import supervision as sv
        self.sv = sv
        self.tracker = sv.ByteTrack(frame_rate=int(round(fps)))

    def update(self, dets: Detections, timestamp: float) -> Detections:
        d = self.sv.Detections(xyxy=dets.xyxy.astype(np.float32), confidence=dets.score.astype(np.float32),
                               class_id=dets.class_id.astype(int), data={"row": np.arange(len(dets))})
        out = self.tracker.update_with_detections(d)
        if len(out) == 0:
            return Detections.empty(tracked=True)
        return _tracked(dets, np.asarray(out.data["row"], int), np.asarray(out.tracker_id, np.int64))


class Norfair:
    """norfair with IoU distance; emits objects matched in this frame."""

    def __init__(self, fps: float) -> None:
        import norfair
        self.nf = norfair
        self.tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.7)

    def update(self, dets: Detections, timestamp: float) -> Detections:
        nf_dets = [self.nf.Detection(points=b.reshape(2, 2).astype(float), scores=np.array([s, s]),
                                     label=int(c), data=i)
                   for i, (b, s, c) in enumerate(zip(dets.xyxy, dets.score, dets.class_id))]
        objs = self.tracker.update(detections=nf_dets)
        rows, ids = [], []
        for o in objs:
            ld = o.last_detection
            if ld is not None and any(ld is d for d in nf_dets):
                rows.append(ld.data)
                ids.append(o.id)
        return _tracked(dets, np.array(rows, int), np.array(ids, np.int64))


class BoxmotTracker:
    def __init__(self, kind: str, fps: float) -> None:
        import boxmot
        cls = boxmot.OcSort if kind == "ocsort" else boxmot.ByteTrack
        self.tracker = cls()
        self.frame = np.zeros((375, 1242, 3), np.uint8)

    def update(self, dets: Detections, timestamp: float) -> Detections:
        arr = np.concatenate([dets.xyxy, dets.score[:, None], dets.class_id[:, None]], axis=1).astype(np.float32)
        out = np.asarray(self.tracker.update(arr, self.frame))
        if out.size == 0:
            return Detections.empty(tracked=True)
        out = out.reshape(-1, out.shape[-1])
        return _tracked(dets, out[:, 7].astype(int), out[:, 4].astype(np.int64))


def make(name: str, fps: float, config: TrackerConfig | None = None, emit_coasted: bool = True,
         class_names=None, frame_size: tuple[int, int] | None = None):
    """``class_names`` (ours only): the names of the detections' class ids (None: COCO's);
    ``frame_size`` (width, height): the image extent, given to ours (peers do not use it)."""
    if name == "ours":
        return Ours(config or TrackerConfig(), fps, emit_coasted, class_names, frame_size)
    if name == "sv-bytetrack":
        return SvByteTrack(fps)
    if name == "norfair":
        return Norfair(fps)
    if name in ("boxmot-ocsort", "boxmot-bytetrack"):
        return BoxmotTracker(name.split("-")[1], fps)
    raise ValueError(f"unknown tracker {name!r}")
