"""Evaluate a detector on labelled images: per-class P/R/F1 at IoU 0.5, AP50 and COCO mAP, by object height.

    python tools/eval_detection.py --weights yolox_nano --images DIR --labels DIR_OR_JSON \
        --format kitti|yolo|coco|bdd [--last 20 | --select=0:10] [--tiles] [--conf 0.3] [--json OUT]

``--weights``: an .onnx file or a detector preset (yolox_nano, nanodet_m) run through
the pipeline's ONNX backend (a ``models/`` checkpoint ``variant:path.pth`` goes through
``models.build_detector``); ``default`` names the shipped model
(``configs/detectors/lite.yaml`` -> ``models/weights/lite.onnx``).  ``--tiles`` runs the detector tiled at native scale plus a full pass, as
``tools/pseudo_label.py`` does.

Ground-truth class names are mapped onto the dashcam classes (person, bicycle, car,
motorcycle, bus, truck, traffic light; KITTI Pedestrian/Person_sitting -> person,
Cyclist -> bicycle).  Boxes of other classes (KITTI Van, Tram, Misc, DontCare; COCO
crowd) are ignore regions: a detection on one is neither a TP nor an FP.

Matching per image and class: detections in descending score order take the unmatched
ground-truth box with the highest IoU >= --iou.  P/R/F1 count detections with score
>= --conf; AP50 is 101-point interpolated (COCO style) over all detections (teacher
run with score >= --det-threshold).  Height buckets (object height in image px):
small < 25, medium 25-40, large >= 40.  Recall per bucket counts ground truth of that
height; a false positive falls in the bucket of its own height.  mAP@[.5:.95] and AP50
overall and per class come from faster-coco-eval (pycocotools if that is missing).

Exit codes: 0 done, 2 bad input (missing folder, malformed labels, unknown weights).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2  # noqa: F401  (before av)
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.datasets import (DASHCAM_NAMES, FORMATS, DatasetError, ImageLabels, canonical_class,  # noqa: E402
                            image_size, read_labels)

EXIT_OK, EXIT_USAGE = 0, 2
BUCKETS: tuple[tuple[str, float, float], ...] = (("small", 0, 25), ("medium", 25, 40), ("large", 40, float("inf")))


class EvalError(RuntimeError):
    """Bad input for the evaluation; one line for the user."""


# -- matching ------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray, crowd: bool = False) -> np.ndarray:
    """(N,4) x (M,4) -> (N,M); with crowd=True the union is the first box's area (COCO crowd rule)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)[:, None]
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)[None, :]
    union = area_a if crowd else area_a + area_b - inter
    return inter / np.maximum(union, 1e-9)


def _bucket(height: np.ndarray) -> np.ndarray:
    """Index into BUCKETS for each height."""
    edges = np.array([b[2] for b in BUCKETS[:-1]])
    return np.searchsorted(edges, height, side="right")


def match_image(gt: ImageLabels, det_xyxy: np.ndarray, det_score: np.ndarray, det_cls: np.ndarray,
                iou_thr: float = 0.5) -> dict:
    """Greedy matching of one image's detections.

    Returns per detection: ``status`` (1 TP, 0 FP, -1 ignored), ``bucket`` (of the
    matched GT, else of the detection) and per GT: ``matched`` (bool).
    """
    n = len(det_xyxy)
    status = np.zeros(n, np.int8)
    bucket = _bucket(det_xyxy[:, 3] - det_xyxy[:, 1]) if n else np.zeros(0, np.int64)
    matched = np.zeros(len(gt), bool)
    valid = ~gt.ignore
    for c in np.unique(det_cls):
        d_idx = np.flatnonzero(det_cls == c)
        d_idx = d_idx[np.argsort(-det_score[d_idx], kind="stable")]
        g_idx = np.flatnonzero(valid & (gt.class_id == c))
        ig_idx = np.flatnonzero(gt.ignore & ((gt.class_id == c) | (gt.class_id < 0)))
        iou = _iou(det_xyxy[d_idx], gt.xyxy[g_idx])
        ign = _iou(det_xyxy[d_idx], gt.xyxy[ig_idx], crowd=True)
        for r, d in enumerate(d_idx):
            if len(g_idx):
                cand = np.where(matched[g_idx], -1.0, iou[r])
                j = int(cand.argmax())
                if cand[j] >= iou_thr:
                    matched[g_idx[j]] = True
                    status[d] = 1
                    h = gt.xyxy[g_idx[j], 3] - gt.xyxy[g_idx[j], 1]
                    bucket[d] = _bucket(np.array([h]))[0]
                    continue
            status[d] = -1 if (len(ig_idx) and ign[r].max() >= iou_thr) else 0
    return {"status": status, "bucket": bucket, "matched": matched}


def average_precision(scores: np.ndarray, tp: np.ndarray, n_pos: int) -> float:
    """COCO-style 101-point interpolated AP from (score, is-TP) of the counted detections."""
    if n_pos == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_pos
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    precision = np.maximum.accumulate(precision[::-1])[::-1]    # envelope
    pts = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, pts, side="left")
    return float(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0).mean())


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    if tp > 0:
        f1 = 2 * p * r / (p + r)
    else:   # no true positive: 0 when there was anything to find or anything claimed
        f1 = 0.0 if (tp + fp + fn) else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}


def evaluate(gts: Sequence[ImageLabels], dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
             names: Sequence[str], iou_thr: float = 0.5, conf: float = 0.3) -> dict:
    """P/R/F1 at ``conf`` and AP50, per class, overall and per height bucket.

    gts:  ground truth with class ids indexing ``names`` (ignore rows: regions).
    dets: per image (xyxy (N,4), score (N,), class_id (N,)).
    """
    if len(gts) != len(dets):
        raise ValueError(f"evaluate: {len(gts)} images of ground truth but {len(dets)} of detections")
    nb = len(BUCKETS)
    rows = {c: {"score": [], "status": [], "bucket": []} for c in range(len(names))}
    n_gt = np.zeros((len(names), nb), np.int64)
    fn_conf = np.zeros((len(names), nb), np.int64)
    for gt, (xyxy, score, cls) in zip(gts, dets):
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        score, cls = np.asarray(score, np.float64).reshape(-1), np.asarray(cls, np.int64).reshape(-1)
        m = match_image(gt, xyxy, score, cls, iou_thr)
        valid = ~gt.ignore
        g_b = _bucket(gt.xyxy[:, 3] - gt.xyxy[:, 1]) if len(gt) else np.zeros(0, np.int64)
        np.add.at(n_gt, (gt.class_id[valid], g_b[valid]), 1)
        # GT missed at the operating threshold: match again with only confident detections
        keep = score >= conf
        mc = match_image(gt, xyxy[keep], score[keep], cls[keep], iou_thr)
        miss = valid & ~mc["matched"]
        np.add.at(fn_conf, (gt.class_id[miss], g_b[miss]), 1)
        for c in np.unique(cls):
            sel = cls == c
            if c < 0 or c >= len(names):
                continue
            rows[c]["score"].append(score[sel])
            rows[c]["status"].append(m["status"][sel])
            rows[c]["bucket"].append(m["bucket"][sel])
    per_class, all_rows = {}, {"score": [], "status": [], "bucket": []}
    for c, name in enumerate(names):
        s = np.concatenate(rows[c]["score"]) if rows[c]["score"] else np.zeros(0)
        st = np.concatenate(rows[c]["status"]) if rows[c]["status"] else np.zeros(0, np.int8)
        b = np.concatenate(rows[c]["bucket"]) if rows[c]["bucket"] else np.zeros(0, np.int64)
        for k, v in (("score", s), ("status", st), ("bucket", b)):
            all_rows[k].append(v)
        per_class[name] = _summary(s, st, b, n_gt[c], fn_conf[c], conf)
    s, st, b = (np.concatenate(all_rows[k]) for k in ("score", "status", "bucket"))
    overall = _summary(s, st, b, n_gt.sum(0), fn_conf.sum(0), conf)
    overall["ap50"] = float(np.nanmean([v["ap50"] for v in per_class.values()])) \
        if any(not np.isnan(v["ap50"]) for v in per_class.values()) else float("nan")   # mean over classes
    return {"classes": per_class, "overall": overall, "iou": iou_thr, "conf": conf,
            "buckets": {name: [lo, hi] for name, lo, hi in BUCKETS}}


def _summary(score, status, bucket, n_gt_b, fn_b, conf) -> dict:
    counted = status >= 0
    confident = counted & (score >= conf)
    tp = int((confident & (status == 1)).sum())
    fp = int((confident & (status == 0)).sum())
    out = _prf(tp, fp, int(fn_b.sum()))
    out["gt"] = int(n_gt_b.sum())
    out["ap50"] = average_precision(score[counted], status[counted] == 1, int(n_gt_b.sum()))
    out["by_height"] = {}
    for k, (name, _, _) in enumerate(BUCKETS):
        in_b = bucket == k
        tp_b = int((confident & in_b & (status == 1)).sum())
        fp_b = int((confident & in_b & (status == 0)).sum())
        res = _prf(tp_b, fp_b, int(fn_b[k]))
        res["gt"] = int(n_gt_b[k])
        res["ap50"] = average_precision(score[counted & in_b], status[counted & in_b] == 1, int(n_gt_b[k]))
        out["by_height"][name] = res
    return out


# -- COCO mAP --------------------------------------------------------------------------
def coco_map(gts: Sequence[ImageLabels], dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
             names: Sequence[str], max_dets: int = 300) -> dict:
    """mAP@[.5:.95] and AP50, overall and per class, by faster-coco-eval (or pycocotools)."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
        backend = "faster-coco-eval"
    except ImportError:
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
            backend = "pycocotools"
        except ImportError:
            return {"backend": None, "error": "install faster-coco-eval (or pycocotools) for COCO mAP"}
    images, anns, res = [], [], []
    for i, (gt, (xyxy, score, cls)) in enumerate(zip(gts, dets), 1):
        images.append({"id": i, "width": gt.width or 0, "height": gt.height or 0, "file_name": gt.name})
        for box, c, ign in zip(gt.xyxy, gt.class_id, gt.ignore):
            if c < 0 and not ign:
                continue
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            cats = [int(c) + 1] if c >= 0 else [k + 1 for k in range(len(names))]   # ignore for every class
            for cat in cats:
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "iscrowd": int(bool(ign)),
                             "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})
        for box, s, c in zip(np.asarray(xyxy).reshape(-1, 4), np.asarray(score).reshape(-1), np.asarray(cls).reshape(-1)):
            res.append({"image_id": i, "category_id": int(c) + 1, "score": float(s),
                        "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    gt_dict = {"images": images, "annotations": anns,
               "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    if not res:
        return {"backend": backend, "map": 0.0, "ap50": 0.0, "classes": {}}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = np.asarray(ev.eval["precision"])      # (T iou, R recall, K class, A area, M maxdets)
    per_class = {}
    cat_ids = list(ev.params.catIds)
    for k, cid in enumerate(cat_ids):
        p = prec[:, :, k, 0, -1]
        if (p > -1).any():
            per_class[names[cid - 1]] = {"map": float(p[p > -1].mean()),
                                         "ap50": float(p[0][p[0] > -1].mean()) if (p[0] > -1).any() else float("nan")}
    return {"backend": backend, "map": float(ev.stats[0]), "ap50": float(ev.stats[1]), "classes": per_class}


# -- detector ------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SHIPPED_PRESET = REPO / "configs" / "detectors" / "lite.yaml"     # the model this project trained and ships
SHIPPED_ONNX = REPO / "models" / "weights" / "lite.onnx"
def resolve_weights(weights: str) -> str:
    """The teacher spec for ``--weights``; ``default`` is the shipped model."""
    if weights == "default":
        if not SHIPPED_ONNX.is_file():
            raise EvalError(f"--weights default: the shipped model {SHIPPED_ONNX} is missing; restore it with git "
                            "or retrain: python tools/train.py --config configs/train/lite.yaml --install")
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
        "command": "python tools/eval_detection.py " + " ".join(shlex.quote(str(a)) for a in args.argv),
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
