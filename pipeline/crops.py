"""Native-resolution crops for small objects, guided by the tracker (``detector.crops``).

Per frame, besides the full frame (letterboxed down to the network input), the detector
sees up to ``crop_budget`` crops cut from the frame at native scale (a crop is the size of
the network input, so nothing is shrunk):

- around each small tracked object (height < ``crop_small_px``): its box predicted to this
  frame from the track's velocity, centred in the crop, so the crop keeps its surroundings
  (a traffic light is recognised by its pole and the crossing);
- one tile (or more, when no small object needs a slot) of a horizon band that rotates
  across frames, so a new small object is found within a few frames and the tracker
  carries it between visits.

The plan comes from a ``CropPlanner``: the track stage ``update``s it with each frame's
tracks (and the detections no track took, so a fresh find is revisited on the next frame
and can be confirmed), the preprocess stage asks it for a ``plan`` (a frame or more of lag;
boxes are extrapolated by the frames in between).  Crops go through the model in the same
batch as the frame; a crop's boxes touching an inner crop edge are partial objects and
are dropped before the class-aware NMS merge with the full pass (``pipeline/tiling.py``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dashtrack_core.boxes import iou as box_iou
from dashtrack_core.configtools import ConfigError
from dashtrack_core.detector import Batch
from dashtrack_core.records import Detections
from .tiling import crop_image, merge_with_crops, tile_starts

Rect = tuple[int, int, int, int]   # x0, y0, x1, y1 in frame pixels


@dataclass(frozen=True)
class CropSettings:
    """What the planner needs (from ``DetectorConfig``'s ``crop_*`` keys and the network input)."""

    budget: int = 2                        # crops per frame, the horizon tile included (budget 1: it alternates)
    small_px: float = 40.0                 # tracked boxes shorter than this get a crop
    size: tuple[int, int] = (416, 416)     # crop (height, width) in frame pixels
    band: tuple[float, float] = (0.25, 0.6)  # horizon band, fractions of the frame height (top, bottom)
    context: float = 1.0                   # box heights of context kept around a small object (>= 16 px)
    stale_frames: int = 5                  # an untracked find is revisited this many frames at most
    find_score: float = 0.3                # an untracked detection needs this score to count as a find


class CropPlanner:
    """Thread-safe crop plan: ``update`` from the track stage, ``plan`` from the preprocess stage."""

    def __init__(self, settings: CropSettings, size_for: Callable[[int, int], tuple[int, int]] | None = None):
        self.s = settings
        self._size_for = size_for or (lambda width, height: settings.size)   # frame (w, h) -> crop (h, w)
        self._lock = threading.Lock()
        self._tracks: dict[int, tuple] = {}     # id -> (box, velocity px/frame or None, frame)
        self._finds: tuple[np.ndarray, int] = (np.zeros((0, 4), np.float32), -1)   # untracked small boxes
        self._covered: dict[int, int] = {}      # track id -> last frame a crop covered it
        self._horizon_next = 0

    # -- from the track stage ---------------------------------------------------
    def update(self, frame_index: int, tracked: Detections, detections: Detections | None = None) -> None:
        """The tracks after frame ``frame_index`` (``track_id`` set, else every box counts as a find)
        and optionally that frame's detections: the small ones no track overlaps are new finds."""
        small = self.s.small_px
        with self._lock:
            tracks: dict[int, tuple] = {}
            if tracked.tracked:
                for box, tid in zip(tracked.xyxy, tracked.track_id):
                    tid = int(tid)
                    old = self._tracks.get(tid)
                    vel = None
                    if old is not None and frame_index > old[2]:
                        step = (box - old[0]) / (frame_index - old[2])
                        # smoothed (one noisy box does not fling it); the first step is taken as it is
                        vel = step if old[1] is None else 0.5 * old[1] + 0.5 * step
                    elif old is not None:
                        vel = old[1]
                    tracks[tid] = (box.astype(np.float32), None if vel is None else vel.astype(np.float32), frame_index)
                self._covered = {t: f for t, f in self._covered.items() if t in tracks}
                finds_from = detections
            else:
                finds_from = tracked
            self._tracks = tracks
            finds = np.zeros((0, 4), np.float32)
            if finds_from is not None and len(finds_from):
                xyxy = finds_from.xyxy
                keep = ((xyxy[:, 3] - xyxy[:, 1]) < small) & (finds_from.score >= self.s.find_score)
                if tracked.tracked and len(tracked) and keep.any():
                    keep &= box_iou(xyxy, tracked.xyxy).max(1) < 0.3     # a track holds it already
                order = np.argsort(-finds_from.score[keep], kind="stable")      # the surest first
                finds = xyxy[keep][order].astype(np.float32)
            self._finds = (finds, frame_index)

    # -- from the preprocess stage ------------------------------------------------
    def plan(self, frame_index: int, width: int, height: int) -> list[Rect]:
        """Crop rectangles for frame ``frame_index`` (at most ``budget``): small objects first
        (the longest unvisited first), then horizon tiles in rotation."""
        s = self.s
        if s.budget <= 0:
            return []
        size = self._size_for(width, height)
        ch, cw = min(size[0], height), min(size[1], width)
        if ch >= height and cw >= width:
            return []                            # a crop would be the whole frame: nothing to gain
        rects: list[Rect] = []
        with self._lock:
            cands = self._candidates(frame_index)
            # one slot is the horizon's; a budget of 1 gives it every other frame
            for_objects = s.budget - 1 if s.budget > 1 else (frame_index % 2)
            for tid, box in cands:
                if len(rects) >= for_objects:
                    break
                need = self._with_context(box, width, height)
                if not any(_inside(need, r, width, height) for r in rects):
                    rects.append(_centred(box, ch, cw, width, height))
                if tid is not None:
                    self._covered[tid] = frame_index
            tiles = self._horizon_tiles(width, height, ch, cw)
            while len(rects) < s.budget and tiles:
                t = tiles[self._horizon_next % len(tiles)]
                self._horizon_next += 1
                if t in rects:
                    break
                rects.append(t)
        return rects

    def _candidates(self, frame_index: int) -> list[tuple[int | None, np.ndarray]]:
        small = self.s.small_px
        out = []
        for tid, (box, vel, seen) in self._tracks.items():
            pred = box if vel is None else box + vel * max(0, frame_index - seen)
            if pred[3] - pred[1] < small:
                out.append((tid, pred))
        # the longest unvisited track first, then the smallest
        out.sort(key=lambda c: (self._covered.get(c[0], -1), float(c[1][3] - c[1][1])))
        finds, at = self._finds
        if 0 <= frame_index - at <= self.s.stale_frames:
            out = [(None, b) for b in finds] + out      # a fresh find first: one more look confirms it
        return out

    def _with_context(self, box: np.ndarray, width: int, height: int) -> np.ndarray:
        pad = max(16.0, self.s.context * float(box[3] - box[1]))
        return np.clip(box + np.array([-pad, -pad, pad, pad], np.float32), 0, [width, height, width, height])

    def _horizon_tiles(self, width: int, height: int, ch: int, cw: int) -> list[Rect]:
        """Tiles of ch x cw along the horizon band (~10% overlap), row-major."""
        top, bottom = (int(round(f * height)) for f in self.s.band)
        if bottom - top <= ch:                   # one row centred on the band
            ys = [int(np.clip((top + bottom) // 2 - ch // 2, 0, height - ch))]
        else:
            ys = [top + y for y in tile_starts(bottom - top, ch, 0.1)]
        return [(x, y, x + cw, y + ch) for y in ys for x in tile_starts(width, cw, 0.1)]


def _centred(box: np.ndarray, ch: int, cw: int, width: int, height: int) -> Rect:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(round(cx - cw / 2), 0, width - cw))
    y0 = int(np.clip(round(cy - ch / 2), 0, height - ch))
    return (x0, y0, x0 + cw, y0 + ch)


def _inside(box: np.ndarray, rect: Rect, width: int, height: int, margin: float = 8.0) -> bool:
    """``box`` lies in ``rect`` away from its inner edges (an edge on the frame border does not cut)."""
    x0, y0, x1, y1 = rect
    return bool((box[0] >= x0 + (margin if x0 > 0 else 0)) and (box[1] >= y0 + (margin if y0 > 0 else 0))
                and (box[2] <= x1 - (margin if x1 < width else 0)) and (box[3] <= y1 - (margin if y1 < height else 0)))


# -- the detector side ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CropBatch:
    """A frame and its crops preprocessed as one batch (element 0 is the frame)."""

    batch: Batch
    rects: tuple[Rect, ...]
    width: int
    height: int

    def __len__(self) -> int:
        return 1


def network_input_hw(detector) -> tuple[int, int] | None:
    """(height, width) of the detector's network input, when it has a fixed one."""
    inner = getattr(detector, "detector", None)       # a wrapper (SharedDetector of several streams)
    if inner is not None and inner is not detector:
        return network_input_hw(inner)
    if hasattr(detector, "in_h") and hasattr(detector, "in_w"):
        return int(detector.in_h), int(detector.in_w)
    spec = getattr(detector, "spec", None)
    if spec is not None and getattr(spec, "input_size", None):
        return tuple(int(v) for v in spec.input_size)
    return None


class CropDetector:
    """Runs a detector on one frame plus its crops in one batch and merges the boxes."""

    def __init__(self, detector, merge_iou: float = 0.5, edge_margin: float = 8.0, max_detections: int = 100):
        self.detector = detector
        self.class_names = detector.class_names
        self.merge_iou, self.edge_margin, self.max_detections = merge_iou, edge_margin, max_detections

    def preprocess(self, image: np.ndarray, rects: Sequence[Rect]) -> CropBatch:
        images = [image] + [crop_image(image, r) for r in rects]
        return CropBatch(self.detector.preprocess(images), tuple(rects), image.shape[1], image.shape[0])

    def infer(self, cb: CropBatch):
        return self.detector.infer(cb.batch)

    def postprocess(self, raw, cb: CropBatch) -> Detections:
        return self.merge(self.detector.postprocess(raw, cb.batch), cb)

    def merge(self, dets: Sequence[Detections], cb: CropBatch) -> Detections:
        """The frame's boxes (``dets[0]``) merged with its crops' (``dets[1:]``)."""
        if not cb.rects:
            return dets[0]
        merged = merge_with_crops(dets[0], list(zip(cb.rects, dets[1:])), cb.width, cb.height,
                                  self.merge_iou, self.edge_margin)
        return merged[: self.max_detections]

    def detect(self, image: np.ndarray, rects: Sequence[Rect]) -> Detections:
        cb = self.preprocess(image, rects)
        return self.postprocess(self.infer(cb), cb)


def crop_size_for(detector, crop_size: Sequence[int] | None) -> Callable[[int, int], tuple[int, int]]:
    """Frame (width, height) -> crop (height, width): ``crop_size`` when set, else the network input the
    detector uses for such frames (so a crop runs at native scale in the frame's batch)."""
    if crop_size:
        fixed = (int(crop_size[0]), int(crop_size[1]))
        return lambda width, height: fixed
    inner = detector
    while getattr(inner, "detector", None) is not None and inner.detector is not inner:   # SharedDetector
        inner = inner.detector
    if callable(getattr(inner, "input_shape", None)):         # a shape per frame size (detector.imgsz)
        return lambda width, height: tuple(int(v) for v in inner.input_shape(width, height))
    hw = network_input_hw(inner)
    if hw is None:
        raise ConfigError("detector.crop_size: the model has no fixed input size; set detector.crop_size: [H, W]")
    return lambda width, height: hw


def build_crops(cfg, detector) -> tuple[CropDetector, CropPlanner]:
    """The crop detector and planner a ``DetectorConfig`` with ``crops: on`` asks for."""
    size_for = crop_size_for(detector, cfg.crop_size)
    settings = CropSettings(budget=cfg.crop_budget, small_px=cfg.crop_small_px, band=tuple(cfg.crop_band))
    return (CropDetector(detector, cfg.crop_merge_iou, cfg.crop_edge_margin, cfg.max_detections),
            CropPlanner(settings, size_for))
