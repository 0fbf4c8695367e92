"""KITTI tracking data for the evaluation harness: labels, detections, dropouts, results.

Layout (``../shared/data/kitti_tracking``):
  label_02/<seq>.txt                       frame id type trunc occ alpha x1 y1 x2 y2 ...
  detections_pointrcnn/<Class>/<seq>.txt   frame,type_id,x1,y1,x2,y2,score,...  (score: logit)
KITTI is recorded at 10 fps; frame f has timestamp f / 10 s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dashtrack_core.paths import shared_data_dir
from dashtrack_core.records import Detections

from ..association import iou

KITTI_FPS = 10.0
CLASS_IDS = {"Pedestrian": 1, "Car": 2, "Cyclist": 3}     # type_id of the detection files
# Class ids only --class-flip gives (no detection file has them): Car detections relabelled.
FLIP_CLASS_IDS = {"Van": 4, "Truck": 5}
# The tracker's class names by id (its class groups are by name: Car, Van, Truck are vehicles).
TRACKER_CLASS_NAMES = ("-", "Pedestrian", "Car", "Cyclist", "Van", "Truck")


# Image size (width, height) per sequence: KITTI tracking sequences come from the raw
# recordings of 2011-09-26 (0000-0013, 1242x375), 2011-09-28 (0014-0017, 1224x370) and
# 2011-09-29 (0018-0020, 1238x374); the largest label coordinates agree.
def frame_size(seq: str) -> tuple[int, int]:
    n = int(seq)
    if 14 <= n <= 17:
        return 1224, 370
    if 18 <= n <= 20:
        return 1238, 374
    return 1242, 375


def default_root() -> Path:
    """``../shared/data/kitti_tracking`` beside the repository root (or under $DASHTRACK_SHARED_DATA)."""
    return shared_data_dir() / "kitti_tracking"


def list_sequences(root: Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "label_02").glob("*.txt"))


@dataclass
class Sequence:
    name: str
    n_frames: int
    dets: list[Detections]          # per frame; score = sigmoid(raw logit)
    raw_score: list[np.ndarray]     # per frame, the file's raw score


def load_labels(root: Path, seq: str) -> np.ndarray:
    """Label rows as a structured array: frame, id, type, x1..y2."""
    rows = []
    for line in (Path(root) / "label_02" / f"{seq}.txt").read_text().splitlines():
        p = line.split()
        if len(p) >= 10:
            rows.append((int(p[0]), int(p[1]), p[2], *map(float, p[6:10])))
    return np.array(rows, dtype=[("frame", "i4"), ("id", "i4"), ("type", "U16"),
                                 ("x1", "f8"), ("y1", "f8"), ("x2", "f8"), ("y2", "f8")])


def load_sequence(root: Path, seq: str, classes: list[str], min_raw_score: float) -> Sequence:
    labels = load_labels(root, seq)
    parts = []
    for cls in classes:
        f = Path(root) / "detections_pointrcnn" / cls / f"{seq}.txt"
        if f.exists() and f.stat().st_size > 0:
            parts.append(np.loadtxt(f, delimiter=",", ndmin=2)[:, :7])
    raw = np.concatenate(parts) if parts else np.zeros((0, 7))
    n_frames = int(max(labels["frame"].max(initial=-1), raw[:, 0].max(initial=-1))) + 1
    raw = raw[raw[:, 6] >= min_raw_score]
    # degenerate boxes (< 1 px wide or tall, from clipping at the image edge) are
    # dropped for every tracker alike: they cannot overlap anything (norfair's IoU
    # returns NaN on them)
    raw = raw[(raw[:, 4] - raw[:, 2] >= 1.0) & (raw[:, 5] - raw[:, 3] >= 1.0)]
    frame_of = raw[:, 0].astype(int)
    dets, scores = [], []
    for f in range(n_frames):
        r = raw[frame_of == f]
        dets.append(Detections(r[:, 2:6], 1.0 / (1.0 + np.exp(-r[:, 6])), r[:, 1].astype(int)))
        scores.append(r[:, 6])
    return Sequence(seq, n_frames, dets, scores)


def apply_dropout(seq: Sequence, labels: np.ndarray, classes: list[str], k: int, fraction: float,
                  seed: int, min_iou: float = 0.5) -> tuple[Sequence, int]:
    """Remove detections of a seeded random `fraction` of GT tracks for k consecutive frames.

    A detection is removed when its IoU with the chosen GT box is >= min_iou.
    The RNG is seeded per sequence by (seed, sequence number). Returns the new
    sequence and the number of detections removed.
    """
    rng = np.random.default_rng([seed, int(seq.name)])
    gt = labels[np.isin(labels["type"], classes)]
    ids = np.unique(gt["id"])
    chosen = rng.choice(ids, size=int(round(fraction * len(ids))), replace=False) if len(ids) else ids
    keep = [np.ones(len(d), bool) for d in seq.dets]
    for tid in sorted(chosen.tolist()):
        rows = gt[gt["id"] == tid]
        frames = np.sort(rows["frame"])
        start = int(rng.integers(frames[0], max(frames[0], frames[-1] - k + 1) + 1))
        for r in rows[(rows["frame"] >= start) & (rows["frame"] < start + k)]:
            d = seq.dets[r["frame"]]
            if len(d):
                box = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]]])
                keep[r["frame"]] &= iou(box, d.xyxy)[0] < min_iou
    removed = int(sum((~m).sum() for m in keep))
    return Sequence(seq.name, seq.n_frames, [d[m] for d, m in zip(seq.dets, keep)],
                    [s[m] for s, m in zip(seq.raw_score, keep)]), removed


def apply_class_flip(seq: Sequence, labels: np.ndarray, fraction: float, seed: int,
                     min_iou: float = 0.5) -> tuple[Sequence, int]:
    """Relabel a seeded random `fraction` of the Car detections of ground-truth Car tracks to Van or Truck.

    A Car detection belongs to a GT Car track when its IoU with a GT Car box of
    that frame is >= min_iou; each such detection is relabelled with probability
    `fraction`, to Van or Truck (even odds). The RNG is seeded per sequence by
    (seed, sequence number). Returns the new sequence and the number relabelled.
    """
    rng = np.random.default_rng([seed, int(seq.name), 1])
    car, flips = CLASS_IDS["Car"], np.array(list(FLIP_CLASS_IDS.values()))
    gt = labels[labels["type"] == "Car"]
    dets, n = [], 0
    for f, d in enumerate(seq.dets):
        rows = gt[gt["frame"] == f]
        cls = d.class_id.copy()
        cand = (cls == car).nonzero()[0]
        if len(rows) and len(cand):
            boxes = np.stack([rows["x1"], rows["y1"], rows["x2"], rows["y2"]], axis=1)
            on_gt = cand[iou(boxes, d.xyxy[cand]).max(axis=0) >= min_iou]
            draw = rng.random(len(on_gt))
            target = rng.choice(flips, size=len(on_gt))
            hit = draw < fraction
            cls[on_gt[hit]] = target[hit]
            n += int(hit.sum())
        dets.append(Detections(d.xyxy, d.score, cls))
    return Sequence(seq.name, seq.n_frames, dets, seq.raw_score), n


def kitti_lines(frame: int, tracks: Detections, class_names: dict[int, str]) -> list[str]:
    """One KITTI result line per tracked box (3D fields filled with KITTI's 'unknown')."""
    out = []
    for (x1, y1, x2, y2), tid, cid, s in zip(tracks.xyxy, tracks.track_id, tracks.class_id, tracks.score):
        out.append(f"{frame} {int(tid)} {class_names[int(cid)]} -1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
                   f"-1 -1 -1 -1000 -1000 -1000 -10 {float(s):.4f}")
    return out
