"""Evaluate a detector on labelled images: per-class P/R/F1 at IoU 0.5, AP50 and COCO mAP, by object height.

    python -m tools.eval_detection --weights yolox_nano --images DIR --labels DIR_OR_JSON \
        --format kitti|yolo|coco|bdd [--last 20 | --select=0:10] [--tiles] [--conf 0.3] [--json OUT]

``--weights``: an .onnx file or a detector preset (yolox_nano, nanodet_m) run through
the pipeline's ONNX backend (a ``models/`` checkpoint ``variant:path.pth`` goes through
``models.build_detector``); ``default`` names the shipped model
(``configs/detectors/dashcam.yaml`` -> ``models/weights/dashcam.onnx``).  ``--tiles`` runs the detector tiled at native scale plus a full pass, as
``tools/pseudo_label.py`` does.

Ground-truth class names are mapped onto the dashcam classes (person, bicycle, car,
motorcycle, bus, truck, traffic light; KITTI Pedestrian/Person_sitting -> person,
Cyclist -> bicycle).  Boxes of other classes (KITTI Van, Tram, Misc, DontCare; COCO
crowd) are ignore regions: a detection on one is neither a TP nor an FP.

Matching, buckets by object height (< 25, 25-40, >= 40 px) and the COCO mAP are in
``tools/detection_metrics.py``.  P/R/F1 count detections with score >= --conf; AP50 is over
all detections (run with score >= --det-threshold).

Exit codes: 0 done, 2 bad input (missing folder, malformed labels, unknown weights).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.eval_detection --help")

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2  # noqa: F401  (before av)
import numpy as np

from tools.datasets import DASHCAM_NAMES, DatasetError, ImageLabels, canonical_class, image_size
from tools.detection_metrics import BUCKETS, coco_map, evaluate
from tools.label_formats import FORMATS, read_labels

EXIT_OK, EXIT_USAGE = 0, 2


class EvalError(RuntimeError):
    """Bad input for the evaluation; one line for the user."""


# -- detector ------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SHIPPED_PRESET = REPO / "configs" / "detectors" / "dashcam.yaml"  # the default model this project trained and ships
SHIPPED_ONNX = REPO / "models" / "weights" / "dashcam.onnx"
def resolve_weights(weights: str) -> str:
    """The teacher spec for ``--weights``; ``default`` is the shipped model."""
    if weights == "default":
        if not SHIPPED_ONNX.is_file():
            raise EvalError(f"--weights default: the shipped model {SHIPPED_ONNX} is missing; restore it with git "
                            "or retrain: python -m tools.train --config configs/train/dashcam.yaml --install")
        return str(SHIPPED_PRESET)
    p = Path(weights)
    if weights.endswith(".onnx") and not p.is_file():
        raise EvalError(f"--weights {weights}: no such file")
    torch_spec = ":" in weights or weights.endswith((".pth", ".pt"))   # models/ variant:checkpoint
    if not (torch_spec or weights.endswith((".onnx", ".yaml", ".yml")) or weights in ("yolox_nano", "nanodet_m")):
        raise EvalError(f"--weights {weights}: expected an .onnx file, a preset (yolox_nano, nanodet_m), "
                        "a models/ checkpoint (variant:path.pth) or default")
    return weights


def run_detector(weights: str, images: Sequence[Path], det_threshold: float, tiles: bool, tile_size: int | None,
                 overlap: float, threads: int, progress: bool):
    from tools.pseudo_label import LabelConfig, LabelError, label_frame, load_teacher

    try:
        teacher = load_teacher(resolve_weights(weights), det_threshold, threads)
    except LabelError as e:
        raise EvalError(str(e)) from None
    cfg = LabelConfig(tile_size=(tile_size if tiles else 0), overlap=overlap, score_threshold=det_threshold)
    out, t_det = [], 0.0
    it = images
    if progress:
        from tqdm import tqdm
        it = tqdm(images, desc="detect", unit="img", file=sys.stderr)
    for path in it:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise EvalError(f"{path}: not a readable image")
        t0 = time.monotonic()
        d = label_frame(img, [teacher], cfg)
        t_det += time.monotonic() - t0
        out.append((d.xyxy.astype(np.float64), d.score.astype(np.float64), d.class_id.astype(np.int64)))
    return out, teacher, t_det


def to_dashcam(items: Sequence[ImageLabels], names: Sequence[str]) -> list[ImageLabels]:
    """Ground truth with class ids remapped onto DASHCAM_NAMES; other classes become ignore regions (id -1)."""
    lut = np.array([DASHCAM_NAMES.index(m) if (m := canonical_class(n)) in DASHCAM_NAMES else -1 for n in names]
                   + [-1], np.int64)
    out = []
    for it in items:
        cid = lut[np.where(it.class_id >= 0, np.minimum(it.class_id, len(names)), len(names))]
        out.append(ImageLabels(it.name, it.image, it.width, it.height, it.xyxy, cid, it.ignore | (cid < 0),
                               None, it.rows))
    return out


def select(items: list, spec: str | None) -> list:
    """``START:STOP`` slice (Python semantics, e.g. ``-20:``) of the sorted images."""
    if not spec:
        return items
    try:
        parts = [int(p) if p.strip() else None for p in spec.split(":")]
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise EvalError(f"--select {spec!r}: expected START:STOP, e.g. -20: or 0:10") from None
    return items[slice(*parts)]


# -- CLI -------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help=".onnx file, yolox_nano, nanodet_m or default")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True, help="label folder (yolo, kitti) or JSON (coco, bdd)")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--select", default=None, help="START:STOP slice of the sorted images, e.g. --select=-20:")
    ap.add_argument("--last", type=int, default=None, help="only the last N sorted images (= --select=-N:)")
    ap.add_argument("--tiles", action="store_true", help="run the detector tiled (native scale) + full pass")
    ap.add_argument("--tile-size", type=int, default=None, help="default: the detector's input size")
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--conf", type=float, default=0.3, help="score threshold for P/R/F1 (default %(default)s)")
    ap.add_argument("--det-threshold", type=float, default=0.05, help="detector score floor (for AP)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.last is not None:
        if args.select or args.last < 1:
            ap.error("--last N needs N >= 1 and no --select")
        args.select = f"-{args.last}:"
    return args


def _fmt(v: float) -> str:
    return "   -" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def print_table(res: dict) -> None:
    print(f"{'class':<14} {'GT':>5} {'TP':>5} {'FP':>5} {'P':>6} {'R':>6} {'F1':>6} {'AP50':>6}   "
          + "  ".join(f"R<{hi:g}" if name == "small" else (f"R{lo:g}-{hi:g}" if np.isfinite(hi) else f"R>={lo:g}")
                      for name, lo, hi in BUCKETS))
    rows = list(res["classes"].items()) + [("all", res["overall"])]
    for name, r in rows:
        if r["gt"] == 0 and r["tp"] + r["fp"] == 0:
            continue
        bh = r["by_height"]
        print(f"{name:<14} {r['gt']:>5} {r['tp']:>5} {r['fp']:>5} {_fmt(r['precision']):>6} {_fmt(r['recall']):>6} "
              f"{_fmt(r['f1']):>6} {_fmt(r['ap50']):>6}   "
              + "  ".join(f"{_fmt(bh[b]['recall']):>6}" for b, _, _ in BUCKETS))


def _jsonable(o):
    if isinstance(o, float) and np.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_jsonable(v) for v in o]
    return o


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    try:
        resolve_weights(args.weights)
        labels = read_labels(args.format, args.labels, args.images)
        items = [it for it in labels.items if it.image is not None]
        if not items:
            raise EvalError(f"{args.labels}: no labelled image found under {args.images}")
        items = select(items, args.select)
        gts = to_dashcam(items, labels.names)
        dets, teacher, t_det = run_detector(args.weights, [it.image for it in items], args.det_threshold,
                                            args.tiles, args.tile_size, args.overlap, args.threads,
                                            not args.no_progress)
    except (DatasetError, EvalError) as e:
        print(f"eval_detection: {e}", file=sys.stderr)
        return EXIT_USAGE
    for g in gts:
        if not g.width:
            g.width, g.height = image_size(g.image) or (0, 0)
    res = evaluate(gts, dets, DASHCAM_NAMES, args.iou, args.conf)
    res["coco"] = coco_map(gts, dets, DASHCAM_NAMES)
    res["run"] = {
        "weights": args.weights, "model": teacher.model, "tiles": args.tiles,
        "tile_size": (args.tile_size or teacher.input_size) if args.tiles else None, "overlap": args.overlap,
        "images": len(items), "labels": str(args.labels), "format": args.format, "select": args.select,
        "det_threshold": args.det_threshold, "detect_s": round(t_det, 2),
        "ms_per_image": round(1000 * t_det / len(items), 1), "total_s": round(time.monotonic() - t0, 2),
        "command": "python -m tools.eval_detection " + " ".join(shlex.quote(str(a)) for a in args.argv),
        "host": platform.platform(),
    }
    print(f"{args.weights}{' tiled' if args.tiles else ''} on {len(items)} images ({args.labels}); "
          f"IoU {args.iou}, P/R/F1 at score >= {args.conf}")
    print_table(res)
    c = res["coco"]
    if c.get("backend"):
        print(f"COCO ({c['backend']}): mAP@[.5:.95] {c['map']:.3f}  AP50 {c['ap50']:.3f}; "
              f"{res['run']['ms_per_image']} ms/image")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(res), indent=1))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
