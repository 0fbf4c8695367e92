"""Score the tracker's per-track time-to-contact and in-path on KITTI tracking (3D labels).

    python -m tools.eval_ttc --kitti-root ../shared/data/kitti_tracking [--seqs 0000,0003]
        [--json OUT] [--dump OUT.jsonl] [--tracker-config configs/tracker.yaml] [--set key=value ...]

The tracker runs on the PointRCNN Car detections as ``tools/eval_tracking.py``
does (raw score >= 2.0, timestamp frame / 10 s, the sequence's frame size),
with ``camera_height_m`` 1.65 (KITTI's camera; ``--set`` overrides). Each output
box is matched to a ground-truth Car/Van box at IoU >= 0.5 (Hungarian).
Ground truth from the labels' camera-frame position (x, z metres):
TTC = Z / (-dZ/dt), dZ/dt a central difference over +-0.4 s, only for
approaching objects (dZ/dt < -1 m/s) with TTC <= 8 s, not truncated;
in-path = |X| <= 1.75 m and Z <= 60 m.  Prints the median relative TTC error
|ttc - gt| / gt per ground-truth TTC bin with counts and coverage (share of
matched approaching boxes with a TTC), and in-path precision, recall and F1.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m tools.eval_ttc --help")

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from tools.eval_tracking import ours_config
from tools.tables import markdown_table
from trackers import KalmanTracker
from trackers.association import assign, iou
from trackers.eval import kitti, scoring

BINS = ((0.0, 2.0), (2.0, 4.0), (4.0, 8.0), (0.0, 4.0))
HALF_WINDOW = 4            # frames: +-0.4 s at 10 fps
MIN_CLOSING = 1.0          # m/s
MAX_TTC = 8.0
PATH_HALF_WIDTH, PATH_MAX_Z = 1.75, 60.0


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kitti-root", type=Path, default=kitti.default_root())
    ap.add_argument("--seqs", default="", help="comma-separated; default: every label_02/*.txt")
    ap.add_argument("--score-threshold", type=float, default=2.0, help="raw PointRCNN score floor")
    ap.add_argument("--tracker-config", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--dump", type=Path, default=None, help="one JSON line per output box")
    return ap.parse_args(argv)


def load_gt(root: Path, seq: str) -> dict[int, dict]:
    """frame -> {'box': (G,4), 'id', 'trunc', 'x', 'z'} for Car and Van labels."""
    per: dict[int, list] = {}
    for line in (root / "label_02" / f"{seq}.txt").read_text().splitlines():
        p = line.split()
        if len(p) >= 17 and p[2] in ("Car", "Van"):
            per.setdefault(int(p[0]), []).append((int(p[1]), int(float(p[3])), *map(float, p[6:10]),
                                                  float(p[13]), float(p[15])))
    out = {}
    for f, rows in per.items():
        a = np.array(rows, float)
        out[f] = {"id": a[:, 0].astype(int), "trunc": a[:, 1], "box": a[:, 2:6], "x": a[:, 6], "z": a[:, 7]}
    return out


def gt_ttc(gt: dict[int, dict], frame: int, gid: int) -> float:
    """Ground-truth TTC of object ``gid`` at ``frame`` (NaN unless approaching within the limits)."""
    zs = []
    for f in (frame - HALF_WINDOW, frame + HALF_WINDOW):
        g = gt.get(f)
        hit = None if g is None else np.nonzero(g["id"] == gid)[0]
        if hit is None or len(hit) == 0:
            return float("nan")
        zs.append(g["z"][hit[0]])
    dz = (zs[1] - zs[0]) / (2 * HALF_WINDOW / kitti.KITTI_FPS)
    g = gt[frame]
    z = g["z"][np.nonzero(g["id"] == gid)[0][0]]
    if dz >= -MIN_CLOSING:
        return float("nan")
    t = z / -dz
    return t if 0 < t <= MAX_TTC else float("nan")


def run_sequence(root: Path, seq: str, cfg, score_threshold: float, dump) -> list[tuple]:
    """Rows (gt_ttc, ttc, gt_in_path, in_path) for every output box matched to a ground-truth box."""
    data = kitti.load_sequence(root, seq, ["Car"], score_threshold)
    gt = load_gt(root, seq)
    tracker = KalmanTracker(cfg)
    tracker.set_frame_size(*kitti.frame_size(seq))
    rows = []
    for f, dets in enumerate(data.dets):
        out = tracker.update(dets, f / kitti.KITTI_FPS)
        cols = out.columns or {}
        ttc = cols.get("ttc_s", np.full(len(out), np.nan))
        path = cols.get("in_path", np.zeros(len(out), bool))
        if dump is not None:
            for i in range(len(out)):
                x1, y1, x2, y2 = (round(float(v), 2) for v in out.xyxy[i])
                dump.write(json.dumps({"seq": seq, "frame": f, "track_id": int(out.track_id[i]), "x1": x1, "y1": y1,
                                       "x2": x2, "y2": y2,
                                       "ttc_s": round(float(ttc[i]), 3) if np.isfinite(ttc[i]) else None,
                                       "in_path": bool(path[i])}) + "\n")
        g = gt.get(f)
        if g is None or len(out) == 0:
            continue
        sim = iou(out.xyxy.astype(np.float64), g["box"])
        for t, j in assign(sim, 0.5):
            true_path = abs(g["x"][j]) <= PATH_HALF_WIDTH and g["z"][j] <= PATH_MAX_Z
            truth = gt_ttc(gt, f, g["id"][j]) if g["trunc"][j] == 0 else float("nan")
            rows.append((truth, float(ttc[t]), bool(true_path), bool(path[t])))
    return rows


def score(rows: list[tuple]) -> dict:
    a = np.array([r[:2] for r in rows], float).reshape(-1, 2)
    gt_path = np.array([r[2] for r in rows], bool)
    pr_path = np.array([r[3] for r in rows], bool)
    bins = {}
    for lo, hi in BINS:
        m = np.isfinite(a[:, 0]) & (a[:, 0] > lo) & (a[:, 0] <= hi)
        have = m & np.isfinite(a[:, 1])
        err = np.abs(a[have, 1] - a[have, 0]) / a[have, 0]
        bins[f"{lo:g}-{hi:g}"] = {"matched_approaching": int(m.sum()), "with_ttc": int(have.sum()),
                                  "coverage": float(have.sum() / max(m.sum(), 1)),
                                  "median_rel_error": float(np.median(err)) if len(err) else None}
    tp = int(np.sum(gt_path & pr_path))
    prec = tp / max(int(pr_path.sum()), 1)
    rec = tp / max(int(gt_path.sum()), 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-9)
    return {"ttc_bins": bins, "in_path": {"precision": prec, "recall": rec, "f1": f1, "gt_in_path": int(gt_path.sum()),
                                          "predicted_in_path": int(pr_path.sum()), "matched_boxes": len(rows)}}


def main(argv=None) -> int:
    args = parse_args(argv)
    root = args.kitti_root
    if not (root / "label_02").is_dir() or not (root / "detections_pointrcnn").is_dir():
        print(f"error: {root}/label_02 or detections_pointrcnn not found "
              "(expected the layout of ../shared/data/kitti_tracking)", file=sys.stderr)
        return 2
    if not any(kv.partition("=")[0] == "camera_height_m" for kv in args.set):
        args.set = ["camera_height_m=1.65", *args.set]
    try:
        cfg = ours_config(args)
    except Exception as e:    # a bad --set / config: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    seqs = [s.strip() for s in args.seqs.split(",") if s.strip()] or kitti.list_sequences(root)
    unknown = [s for s in seqs if not (root / "label_02" / f"{s}.txt").exists()]
    if unknown:
        print(f"error: sequence(s) {', '.join(unknown)} not in {root}/label_02; choose from "
              f"{', '.join(kitti.list_sequences(root))}", file=sys.stderr)
        return 2
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    try:
        rows = [r for s in seqs for r in run_sequence(root, s, cfg, args.score_threshold, dump)]
    finally:
        if dump is not None:
            dump.close()
    result = score(rows)
    print("\n### time-to-contact, median relative error by ground-truth TTC\n")
    print(markdown_table(["gt TTC (s)", "matched approaching", "with TTC", "coverage", "median rel. error"], [
        [k, str(b["matched_approaching"]), str(b["with_ttc"]), f"{b['coverage']:.2f}",
         "-" if b["median_rel_error"] is None else f"{b['median_rel_error']:.3f}"]
        for k, b in result["ttc_bins"].items()]))
    p = result["in_path"]
    print("\n### in-path\n")
    print(markdown_table(["precision", "recall", "F1", "gt in path", "predicted in path", "matched boxes"],
                         [[f"{p['precision']:.3f}", f"{p['recall']:.3f}", f"{p['f1']:.3f}", str(p["gt_in_path"]),
                           str(p["predicted_in_path"]), str(p["matched_boxes"])]]))
    if args.json:
        report = {"command": "python -m tools.eval_ttc " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
                  "device": f"{platform.machine()}, {scoring.cpu_count()} CPU cores, CPU only",
                  "sequences": seqs, **result}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
