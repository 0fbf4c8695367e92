"""Pseudo-label videos, image folders or image sequences with COCO teachers; write a YOLO/COCO dataset.

    python -m tools.pseudo_label --source ../shared/data/images/pandaset_002_front \
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

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.pseudo_label --help")

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2  # noqa: F401  (before av, which pipeline imports)
import numpy as np

import pipeline  # noqa: F401  (imports cv2 before av)
from dashtrack_core.records import Detections
from tools.datasets import DASHCAM_NAMES, ImageLabels
from tools.label_formats import coco_dict, write_yolo
from tools.tiling import detect_tiled, flip_boxes, weighted_boxes_fusion

EXIT_OK, EXIT_USAGE = 0, 2
PRESETS = ("yolox_nano", "nanodet_m")


class LabelError(RuntimeError):
    """Bad input for the labeller; one line for the user."""


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
    from dashtrack_core.configtools import ConfigError, from_mapping
    from pipeline.build import DetectorError, build_detector

    try:
        if spec in PRESETS:
            section = dict(detector_preset(spec))
        elif spec.endswith(".onnx"):
            section = {"backend": "onnx", "model": spec}
        elif spec.endswith((".yaml", ".yml")):
            section = dict(detector_preset(spec))
        else:
            section = {"backend": "torch", "model": spec, "classes": []}
        section.update(score_threshold=score_threshold, max_detections=300)
        if section.get("backend", "onnx") == "onnx":
            section.update(classes=list(DASHCAM_NAMES), threads=threads)   # onnxruntime threads
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
def _check_source(spec: str) -> Path:
    p = Path(spec)
    if not any(ch in spec for ch in "*?[") and not p.exists():
        raise LabelError(f"source {spec}: no such file or folder")
    return p


def iter_frames(spec: str, every: int, max_frames: int | None, fps: float | None):
    """(Frame, source_name) for every ``every``-th decoded frame of a video / image folder / glob."""
    from pipeline.config import SourceConfig
    from pipeline.sources import SourceError, open_source

    p = _check_source(spec)
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
    for spec in args.source:          # a missing source is named before any teacher is loaded
        _check_source(spec)
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
        "command": "python -m tools.pseudo_label " + " ".join(shlex.quote(str(a)) for a in args.argv),
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
