"""Post-processing of the ONNX backend in numpy, in the order and with the comparison of the torch one
(``models/postprocess.py``; ``tests/test_postprocess_parity.py`` holds them to the same boxes):

    score threshold (score >= threshold) -> top-k -> decode -> clip to the image (a box left with no
    area dropped) -> class-aware NMS (suppress IoU > nms_iou) -> max detections

Each box keeps its best class among the kept ones.  Boxes come back in the original image's pixels.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from dashtrack_core.detector import Letterbox
from dashtrack_core.records import Detections


def nms_per_class(xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, iou: float) -> np.ndarray:
    """Class-aware NMS; returns kept indices sorted by descending score.

    Boxes of different classes never suppress each other: each class is shifted
    by a large offset before one OpenCV NMS call.
    """
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    offset = (class_id.astype(np.float32) * (float(xyxy.max()) + 1.0))[:, None]
    shifted = xyxy + offset
    xywh = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), 0.0, iou)
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-score[keep], kind="stable")]


def select(scores: np.ndarray, decode_rows: Callable[[np.ndarray], np.ndarray], lb: Letterbox,
           keep_mask: np.ndarray | None, score_threshold: float, top_k: int, nms_iou: float,
           max_detections: int) -> Detections:
    """(N, C) class scores of one image and ``decode_rows(idx) -> (len(idx), 4)`` xyxy in network-input
    pixels -> the image's ``Detections``; ``keep_mask`` (C,) bool: the classes kept (None: all)."""
    if keep_mask is not None:
        scores = np.where(keep_mask[None, :], scores, 0.0)       # class filter
    class_id = scores.argmax(1)
    score = scores[np.arange(len(scores)), class_id]
    idx = np.flatnonzero(score >= score_threshold)               # 1. score threshold
    if len(idx) > top_k:                                         # 2. top-k
        idx = idx[np.argpartition(-score[idx], top_k)[:top_k]]
    boxes = decode_rows(idx).astype(np.float32)                  # 3. decode the survivors only
    xyxy = lb.to_image(boxes)                                    # 4. letterbox undone, clipped to the image;
    area = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # a box left with no area is no detection
    if not area.all():                                           # (and OpenCV's NMS lets one such box
        idx, xyxy = idx[area], xyxy[area]                        # suppress every other, of any class)
    keep = nms_per_class(xyxy, score[idx], class_id[idx], nms_iou)[:max_detections]   # 5-6. NMS, cap
    idx = idx[keep]
    return Detections(xyxy[keep], score[idx], class_id[idx])
