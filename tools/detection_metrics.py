"""Detection metrics: per-class precision, recall and F1 at one IoU, AP50 and COCO mAP, by object height.

Matching per image and class: detections in descending score order take the unmatched
ground-truth box with the highest IoU >= ``iou``.  P/R/F1 count detections with score
>= ``conf``; AP50 is 101-point interpolated (COCO style) over all detections.  Height
buckets (object height in image px): small < 25, medium 25-40, large >= 40.  Recall per
bucket counts ground truth of that height; a false positive falls in the bucket of its own
height.  Ground truth marked ``ignore`` is an ignore region: a detection on one is neither
a TP nor an FP.  mAP@[.5:.95] and AP50 come from faster-coco-eval (pycocotools if that is
missing).  Used by ``tools/eval_detection.py`` and the training loop's periodic evaluation.
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

from dashtrack_core import boxes
from tools.datasets import ImageLabels

BUCKETS: tuple[tuple[str, float, float], ...] = (("small", 0, 25), ("medium", 25, 40), ("large", 40, float("inf")))


# -- matching ------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray, crowd: bool = False) -> np.ndarray:
    """(N,4) x (M,4) -> (N,M); with crowd=True the union is the first box's area (COCO crowd rule)."""
    if not crowd:
        return boxes.iou(a, b)
    return boxes.intersection(a, b) / np.maximum(boxes.area(a)[:, None], 1e-9)


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
