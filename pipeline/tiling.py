"""Test-time tiling and crops at native scale, merging with a full pass, and weighted box fusion.

Used by the tiled teacher (``tools/pseudo_label.py``, ``tools/eval_detection.py --tiles``) and by the
pipeline's tracker-guided crops (``pipeline/crops.py``).

A frame is cut into ``tile`` x ``tile`` crops with ``overlap``; each crop is detected at native
scale, boxes cut by an inner tile edge are dropped (a car split by a tile edge would otherwise add
a partial-box false positive), and the tiles' boxes merge with a full-frame pass by class-aware NMS.
``weighted_boxes_fusion`` merges the views of several teachers or a flipped pass.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dashtrack_core.boxes import iou as box_iou
from .onnx_detector import nms_per_class
from dashtrack_core.records import Detections


# -- tiling ------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` (fraction) shared."""
    if length <= tile:
        return [0]
    step = tile * (1.0 - overlap)
    n = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles as (x0, y0, x1, y1) image pixels, row-major; tiles are clipped to the image."""
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def cut_by_inner_edge(xyxy: np.ndarray, tile: tuple[int, int, int, int], width: int, height: int,
                      margin: float = 8.0) -> np.ndarray:
    """(N,) bool: boxes (image pixels) that touch an edge of ``tile`` lying inside the image.

    A tile edge on the image border is an outer edge: a box touching it is the
    image's own truncation and is kept.
    """
    x0, y0, x1, y1 = tile
    cut = np.zeros(len(xyxy), bool)
    if x0 > 0:
        cut |= xyxy[:, 0] <= x0 + margin
    if y0 > 0:
        cut |= xyxy[:, 1] <= y0 + margin
    if x1 < width:
        cut |= xyxy[:, 2] >= x1 - margin
    if y1 < height:
        cut |= xyxy[:, 3] >= y1 - margin
    return cut


def shift(d: Detections, dx: float, dy: float) -> Detections:
    return Detections(d.xyxy + np.array([dx, dy, dx, dy], np.float32), d.score, d.class_id)


def crop_image(image: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The (contiguous) pixels of ``rect`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = rect
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def merge_with_crops(full: Detections | None, crops: Sequence[tuple[tuple[int, int, int, int], Detections]],
                     width: int, height: int, nms_iou: float = 0.5, margin: float = 8.0) -> Detections:
    """The full pass (image pixels; None: none) merged with crop passes (boxes in crop pixels).

    Each crop's boxes are shifted into the image; those touching an inner crop edge (one not
    on the image border) are partial objects and are dropped; the rest and the full pass are
    merged by class-aware NMS (``nms_iou``), highest score first.
    """
    parts = [full] if full is not None else []
    for rect, d in crops:
        d = shift(d, rect[0], rect[1])
        parts.append(d[~cut_by_inner_edge(d.xyxy, rect, width, height, margin)])
    merged = Detections.concat(parts)
    keep = nms_per_class(merged.xyxy, merged.score, merged.class_id, nms_iou)
    return merged[keep]


def detect_tiled(detector, image: np.ndarray, tile: int, overlap: float, nms_iou: float = 0.5,
                 full_pass: bool = True, margin: float = 8.0) -> Detections:
    """Full pass + native-scale tiles, boxes cut by inner tile edges dropped, class-aware NMS."""
    h, w = image.shape[:2]
    full = detector.detect([image])[0] if full_pass else None
    tiles = tile_grid(w, h, tile, overlap)
    crops = []
    if len(tiles) > 1 or not full_pass:
        crops = [(t, detector.detect([crop_image(image, t)])[0]) for t in tiles]
    return merge_with_crops(full, crops, w, h, nms_iou, margin)


def flip_boxes(d: Detections, width: int) -> Detections:
    xyxy = d.xyxy.copy()
    xyxy[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    return Detections(xyxy, d.score, d.class_id)


# -- weighted box fusion -------------------------------------------------------------
def weighted_boxes_fusion(views: Sequence[Detections], weights: Sequence[float] | None = None,
                          iou_threshold: float = 0.55) -> Detections:
    """Fuse the boxes of several views (teachers, flips) of one image.

    Per class, boxes are taken in descending score order; each joins the cluster
    whose *fused* box overlaps it most (IoU >= ``iou_threshold``) or starts a new one.
    A cluster's box is the score-weighted mean of its members; its score is
    ``sum_v w_v * best score of view v in the cluster / sum_v w_v`` (views without a
    member contribute 0).
    """
    weights = np.ones(len(views)) if weights is None else np.asarray(weights, np.float64)
    if len(weights) != len(views):
        raise ValueError(f"weighted_boxes_fusion: {len(weights)} weights for {len(views)} views")
    if not views:
        return Detections.empty()
    xyxy = np.concatenate([v.xyxy for v in views]).astype(np.float64)
    score = np.concatenate([v.score for v in views]).astype(np.float64)
    cls = np.concatenate([v.class_id for v in views])
    view = np.concatenate([np.full(len(v), k) for k, v in enumerate(views)])
    out_box, out_score, out_cls = [], [], []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        idx = idx[np.argsort(-score[idx], kind="stable")]
        members: list[list[int]] = []
        fused = np.zeros((0, 4))
        for i in idx:
            if len(fused):
                ious = box_iou(xyxy[i:i + 1], fused)[0]
                best = int(ious.argmax())
                if ious[best] >= iou_threshold:
                    members[best].append(i)
                    m = np.asarray(members[best])
                    wts = score[m] * weights[view[m]]
                    fused[best] = (xyxy[m] * wts[:, None]).sum(0) / max(wts.sum(), 1e-12)
                    continue
            members.append([i])
            fused = np.vstack([fused, xyxy[i]])
        for k, m in enumerate(members):
            best_per_view = np.zeros(len(views))
            for i in m:
                best_per_view[view[i]] = max(best_per_view[view[i]], score[i])
            out_box.append(fused[k])
            out_score.append(float((best_per_view * weights).sum() / weights.sum()))
            out_cls.append(c)
    if not out_box:
        return Detections.empty()
    order = np.argsort(-np.asarray(out_score), kind="stable")
    return Detections(np.asarray(out_box)[order], np.asarray(out_score)[order], np.asarray(out_cls)[order])
