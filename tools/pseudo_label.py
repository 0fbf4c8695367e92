"""Pseudo-label videos, image folders or image sequences with COCO teachers; write a YOLO/COCO dataset.

    python tools/pseudo_label.py --source ../shared/data/images/pandaset_002_front \
        --source ../shared/data/videos/udacity/test_small2.mp4 --every 5 \
        --teacher yolox_nano [--teacher nanodet_m] [--flip] [--tile-size 416 --overlap 0.25] \
        --out runs/pseudo/pandaset [--format yolo,coco]

What one frame goes through, in order:

1. For every teacher, and for the horizontally flipped frame with ``--flip`` (one "view" each):
   a full pass (the whole frame letterboxed to the teacher's input) plus, unless
   ``--tile-size 0``, tiles cut at native scale (default: the teacher's input size,
   ``--overlap`` between neighbours).  A tile box that touches an *inner* tile edge
   (one that is not the image border) is a partial object and is dropped; the
   neighbouring tile or the full pass holds it whole.  The view's boxes are merged by
   class-aware NMS (``--nms-iou``).
2. Views are fused with weighted box fusion (``--wbf-iou``): coordinates are the
   score-weighted mean of a cluster, the score is the mean over views of each view's
   best score in it (a view that missed the object counts 0), so agreement is rewarded.
3. Only the dashcam classes are kept (person, bicycle, car, motorcycle, bus, truck,
   traffic light, ids 0-6 in that order), and boxes with score >= ``--score-threshold``.

Output: ``OUT/images/*.jpg`` (JPEG), ``OUT/labels/*.txt`` (YOLO) and/or
``OUT/annotations.json`` (COCO, with scores), ``OUT/dataset.yaml`` and
``OUT/provenance.json`` (teachers, tiling, thresholds, source files, frames, command, timing).

Exit codes: 0 done, 2 bad input (missing source, unknown teacher, unwritable output).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2  # noqa: F401  (before av, which pipeline imports)
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline  # noqa: E402,F401  (imports cv2 before av)
from pipeline.onnx_detector import nms_per_class  # noqa: E402
from pipeline.records import Detections  # noqa: E402
from tools.datasets import DASHCAM_NAMES, ImageLabels  # noqa: E402
from tools.label_formats import coco_dict, write_yolo  # noqa: E402

EXIT_OK, EXIT_USAGE = 0, 2
PRESETS = ("yolox_nano", "nanodet_m")


class LabelError(RuntimeError):
    """Bad input for the labeller; one line for the user."""


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


def detect_tiled(detector, image: np.ndarray, tile: int, overlap: float, nms_iou: float = 0.5,
                 full_pass: bool = True, margin: float = 8.0) -> Detections:
    """Full pass + native-scale tiles, boxes cut by inner tile edges dropped, class-aware NMS."""
    h, w = image.shape[:2]
    parts = [detector.detect([image])[0]] if full_pass else []
    tiles = tile_grid(w, h, tile, overlap)
    if len(tiles) > 1 or not full_pass:
        for t in tiles:
            d = detector.detect([np.ascontiguousarray(image[t[1]:t[3], t[0]:t[2]])])[0]
            d = shift(d, t[0], t[1])
            parts.append(d[~cut_by_inner_edge(d.xyxy, t, w, h, margin)])
    merged = Detections.concat(parts)
    keep = nms_per_class(merged.xyxy, merged.score, merged.class_id, nms_iou)
    return merged[keep]


def flip_boxes(d: Detections, width: int) -> Detections:
    xyxy = d.xyxy.copy()
    xyxy[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    return Detections(xyxy, d.score, d.class_id)


# -- weighted box fusion -------------------------------------------------------------
def _iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    union = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


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
                ious = _iou_one(xyxy[i], fused)
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


# -- teachers ----------------------------------------------------------------------
@dataclass
class Teacher:
    name: str
    detector: object
    to_dashcam: np.ndarray     # (C,) teacher class id -> dashcam id, -1 = dropped
    input_size: int            # longest input side (native tile size)
    model: str

    def to_dashcam_ids(self, d: Detections) -> Detections:
        ids = self.to_dashcam[d.class_id] if len(d) else np.zeros(0, np.int64)
        keep = ids >= 0
        return Detections(d.xyxy[keep], d.score[keep], ids[keep])


def load_teacher(spec: str, score_threshold: float, threads: int = 0) -> Teacher:
    """A preset name (yolox_nano, nanodet_m), an .onnx file, or a models/ spec (torch backend)."""
    from pipeline.config import DetectorConfig, detector_preset
    from pipeline.configtools import ConfigError, from_mapping
    from pipeline.onnx_detector import DetectorError, build_detector

    try:
        if spec in PRESETS:
            section = dict(detector_preset(spec))
        elif spec.endswith(".onnx"):
            section = {"backend": "onnx", "model": spec}
        elif spec.endswith((".yaml", ".yml")):
            section = dict(detector_preset(spec))
        else:
            section = {"backend": "torch", "model": spec, "classes": []}
        section.update(score_threshold=score_threshold, max_detections=300, threads=threads)
        if section.get("backend", "onnx") == "onnx":
            section["classes"] = list(DASHCAM_NAMES)
        cfg = from_mapping(DetectorConfig, section, "teacher")
        if cfg.backend == "onnx" and not Path(cfg.model).is_file():
            raise LabelError(f"teacher {spec}: model file {cfg.model} not found")
        det = build_detector(cfg)
    except (ConfigError, DetectorError, ValueError, ImportError) as e:
        raise LabelError(f"teacher {spec}: {e}") from None
    names = list(det.class_names)
    to_dash = np.array([DASHCAM_NAMES.index(n) if n in DASHCAM_NAMES else -1 for n in names], np.int64)
    if not (to_dash >= 0).any():
        raise LabelError(f"teacher {spec}: predicts none of the dashcam classes ({', '.join(DASHCAM_NAMES)})")
    if hasattr(det, "in_h"):                                   # ONNX backend
        size = max(det.in_h, det.in_w)
    elif getattr(getattr(det, "spec", None), "input_size", None):  # models/ TorchDetector
        size = max(det.spec.input_size)
    else:
        size = max(cfg.input_size) if cfg.input_size else 416
    return Teacher(spec, det, to_dash, int(size), cfg.model)


@dataclass(frozen=True)
class LabelConfig:
    tile_size: int | None = None     # None: each teacher's input size; 0: no tiling
    overlap: float = 0.25
    edge_margin: float = 8.0
    flip: bool = False
    nms_iou: float = 0.5
    wbf_iou: float = 0.55
    score_threshold: float = 0.3


def label_frame(image: np.ndarray, teachers: Sequence[Teacher], cfg: LabelConfig) -> Detections:
    """The fused dashcam-class boxes of one BGR frame (see the module docstring for the order)."""
    w = image.shape[1]
    views = []
    for t in teachers:
        tile = t.input_size if cfg.tile_size is None else cfg.tile_size
        for flip in ((False, True) if cfg.flip else (False,)):
            img = np.ascontiguousarray(image[:, ::-1]) if flip else image
            if tile:
                d = detect_tiled(t.detector, img, tile, cfg.overlap, cfg.nms_iou, margin=cfg.edge_margin)
            else:
                d = t.detector.detect([img])[0]
            d = t.to_dashcam_ids(flip_boxes(d, w) if flip else d)
            views.append(d)
    fused = views[0] if len(views) == 1 else weighted_boxes_fusion(views, iou_threshold=cfg.wbf_iou)
    return fused[fused.score >= cfg.score_threshold]


# -- sources -----------------------------------------------------------------------
def iter_frames(spec: str, every: int, max_frames: int | None, fps: float | None):
    """(Frame, source_name) for every ``every``-th decoded frame of a video / image folder / glob."""
    from pipeline.config import SourceConfig
    from pipeline.sources import SourceError, open_source

    p = Path(spec)
    if not any(ch in spec for ch in "*?[") and not p.exists():
        raise LabelError(f"source {spec}: no such file or folder")
    folder = p if p.is_dir() else None
    if fps is None and (folder is not None or any(ch in spec for ch in "*?[") or p.suffix.lower() in
                        (".jpg", ".jpeg", ".png", ".bmp")):
        stamps = (folder or p.parent) / "timestamps.json"
        fps = None if stamps.is_file() else 1.0     # timestamps only go into provenance
    try:
        src = open_source(spec, SourceConfig(fps=fps))
    except SourceError as e:
        raise LabelError(f"source {spec}: {e}") from None
    kept = 0
    try:
        for frame in src:
            if frame.index % every:
                continue
            yield frame
            kept += 1
            if max_frames and kept >= max_frames:
                break
    except SourceError as e:
        raise LabelError(f"source {spec}: {e}") from None
    finally:
        close = getattr(src, "close", None)
        if close:
            close()


def _stem(spec: str) -> str:
    p = Path(spec.split("*")[0].rstrip("/") or ".")
    name = p.name if p.is_dir() else p.stem
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "source"


def _sha256(path: str) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


# -- CLI ---------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", required=True,
                    help="video file, image folder or glob (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="output dataset folder (under runs/)")
    ap.add_argument("--teacher", action="append", default=None,
                    help="yolox_nano, nanodet_m, an .onnx file or a models/ checkpoint (repeatable; "
                         "default yolox_nano)")
    ap.add_argument("--tile-size", type=int, default=None,
                    help="tile side in px at native scale (default: the teacher's input size; 0 = full pass only)")
    ap.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default %(default)s)")
    ap.add_argument("--edge-margin", type=float, default=8.0, help="px from an inner tile edge counted as cut")
    ap.add_argument("--flip", action="store_true", help="add a horizontally flipped view")
    ap.add_argument("--det-threshold", type=float, default=0.2, help="teacher score floor per pass")
    ap.add_argument("--score-threshold", type=float, default=0.3, help="kept label score after fusion")
    ap.add_argument("--nms-iou", type=float, default=0.5, help="merging passes of one view")
    ap.add_argument("--wbf-iou", type=float, default=0.55, help="fusing views")
    ap.add_argument("--every", type=int, default=1, help="keep every N-th frame (default %(default)s)")
    ap.add_argument("--max-frames", type=int, default=None, help="per source, after --every")
    ap.add_argument("--fps", type=float, default=None, help="image sequences without timestamps.json")
    ap.add_argument("--format", default="yolo", help="yolo, coco or yolo,coco (default %(default)s)")
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    fmts = {f.strip() for f in args.format.split(",") if f.strip()}
    if not fmts or fmts - {"yolo", "coco"}:
        ap.error(f"--format {args.format!r}: allowed yolo, coco or yolo,coco")
    args.formats = fmts
    if args.every < 1:
        ap.error("--every must be >= 1")
    if not 0 <= args.overlap < 1:
        ap.error("--overlap must be in [0, 1)")
    args.teacher = args.teacher or ["yolox_nano"]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def run(args: argparse.Namespace) -> dict:
    cfg = LabelConfig(tile_size=args.tile_size, overlap=args.overlap, edge_margin=args.edge_margin, flip=args.flip,
                      nms_iou=args.nms_iou, wbf_iou=args.wbf_iou, score_threshold=args.score_threshold)
    teachers = [load_teacher(t, args.det_threshold, args.threads) for t in args.teacher]
    out: Path = args.out
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabelError(f"--out {out}: cannot create ({e.strerror})") from None
    labels: list[ImageLabels] = []
    frames_info, sources_info = [], []
    t_label = t_total = 0.0
    t0 = time.monotonic()
    progress = None
    if not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(desc="pseudo-label", unit="frame", file=sys.stderr)
    for spec in args.source:
        stem = _stem(spec)
        n_src = 0
        for frame in iter_frames(spec, args.every, args.max_frames, args.fps):
            s = time.monotonic()
            det = label_frame(frame.image, teachers, cfg)
            t_label += time.monotonic() - s
            name = f"{stem}_{frame.index:06d}.jpg"
            if not cv2.imwrite(str(out / "images" / name), frame.image, [cv2.IMWRITE_JPEG_QUALITY, args.jpeg_quality]):
                raise LabelError(f"--out {out}: cannot write {name}")
            h, w = frame.image.shape[:2]
            labels.append(ImageLabels(name, out / "images" / name, w, h, det.xyxy, det.class_id, None,
                                      det.score))
            frames_info.append({"image": name, "source": spec, "frame_index": frame.index,
                                "timestamp": round(frame.timestamp, 6), "boxes": len(det)})
            n_src += 1
            if progress is not None:
                progress.update(1)
        sources_info.append({"source": str(spec), "frames_kept": n_src,
                             "sha256": _sha256(spec) if Path(spec).is_file() else None})
    if progress is not None:
        progress.close()
    t_total = time.monotonic() - t0
    names = list(DASHCAM_NAMES)
    if "yolo" in args.formats:
        write_yolo(out / "labels", labels)
    if "coco" in args.formats:
        coco = coco_dict(labels, names, {"description": "pseudo-labels by tools/pseudo_label.py"})
        by_img = {i + 1: it for i, it in enumerate(labels)}
        k = 0
        for img_id, it in by_img.items():   # scores in the same order coco_dict wrote the rows
            for s in it.score:
                coco["annotations"][k]["score"] = round(float(s), 4)
                k += 1
        (out / "annotations.json").write_text(json.dumps(coco))
    (out / "dataset.yaml").write_text(
        "# pseudo-labels written by tools/pseudo_label.py; see provenance.json\n"
        f"path: {out.resolve()}\ntrain: images\nval: images\nnames:\n"
        + "".join(f"  {k}: {json.dumps(n)}\n" for k, n in enumerate(names)))
    counts = np.bincount(np.concatenate([it.class_id for it in labels]) if labels else np.zeros(0, int),
                         minlength=len(names))
    prov = {
        "tool": "tools/pseudo_label.py",
        "command": "python tools/pseudo_label.py " + " ".join(shlex.quote(str(a)) for a in args.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "teachers": [{"name": t.name, "model": t.model, "sha256": _sha256(t.model) if t.model.endswith(".onnx") else None,
                      "input_size": t.input_size} for t in teachers],
        "tiling": {"tile_size": cfg.tile_size if cfg.tile_size is not None else "teacher input size",
                   "overlap": cfg.overlap, "edge_margin_px": cfg.edge_margin, "full_pass": True,
                   "inner_edge_boxes": "dropped"},
        "flip": cfg.flip, "fusion": "weighted box fusion" if len(teachers) * (2 if cfg.flip else 1) > 1 else "none",
        "thresholds": {"teacher_score": args.det_threshold, "label_score": cfg.score_threshold,
                       "nms_iou": cfg.nms_iou, "wbf_iou": cfg.wbf_iou},
        "every": args.every, "max_frames": args.max_frames,
        "classes": names, "formats": sorted(args.formats),
        "sources": sources_info, "frames": frames_info,
        "boxes_per_class": {n: int(c) for n, c in zip(names, counts)},
        "timing": {"frames": len(labels), "label_s": round(t_label, 2), "total_s": round(t_total, 2),
                   "ms_per_frame": round(1000 * t_label / max(1, len(labels)), 1)},
        "host": {"platform": platform.platform(), "python": platform.python_version()},
    }
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    return prov


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        prov = run(args)
    except LabelError as e:
        print(f"pseudo_label: {e}", file=sys.stderr)
        return EXIT_USAGE
    tm = prov["timing"]
    print(f"{tm['frames']} frames labelled in {tm['total_s']} s ({tm['ms_per_frame']} ms/frame); "
          f"boxes: {prov['boxes_per_class']}; dataset in {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
