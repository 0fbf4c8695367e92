#!/usr/bin/env python3
"""The detector threshold and the tracker's low-score pass, measured together (issue 21).

The tracker's second pass matches detections in [low_score, high_score) to existing tracks only;
a detector that drops boxes under its own threshold (0.3) starves it.  Two measurements, each with
its baseline in the same run:

- shared clips, the default detector and the pipeline's tracker settings (configs/default.yaml):
  the detector runs once per clip with its floor at the lowest setting and each setting keeps the
  boxes >= its floor, so only the floor differs.  Per setting: tracks (ids emitted), tracks born per
  minute, tracks shorter than 1 s per minute, boxes emitted with a detection behind them, coasted boxes.
- KITTI tracking (Car, 16 sequences, PointRCNN detections given, scores sigmoid(raw)):
  ``tools/eval_tracking.py --score-threshold RAW`` is the detector floor there (raw 2.0 = 0.881, the
  default); with the first pass and births held at 0.88 only the second pass sees the extra boxes.

    python -m bench.bench_low_pass [--json bench/results/low_pass_cpu.json] [--no-kitti]
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_low_pass --help")

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_class_groups import churn, detect_clip
from bench.common import SHARED, markdown_table, write_json

from pipeline.build import build_detector
from pipeline.config import load_config
from dashtrack_core.configtools import ConfigError
from trackers import KalmanTracker

REPO = Path(__file__).resolve().parents[1]
CLIPS = ("videos/udacity/test_video.mp4", "videos/udacity/project_video_cut.mp4", "videos/udacity/test_small1.mp4",
         "videos/udacity/test_small2.mp4", "videos/udacity/solidWhiteRight_960x540.mp4")
FLOORS = (0.3, 0.2, 0.1)          # 0.3: the detector threshold before; 0.1: tracker.low_score
# KITTI: (name, raw PointRCNN floor, tracker overrides)
KITTI = [
    ("floor 0.881 (default), tracker defaults", 2.0, []),
    ("floor 0.5, tracker defaults", 0.0, []),
    ("floor 0.1, tracker defaults", -2.2, []),
    ("floor 0.881, high/new 0.88", 2.0, ["high_score=0.88", "new_track_score=0.88"]),
    ("floor 0.5, high/new 0.88", 0.0, ["high_score=0.88", "new_track_score=0.88"]),
    ("floor 0.1, high/new 0.88", -2.2, ["high_score=0.88", "new_track_score=0.88"]),
]


def track_clip(tracker: KalmanTracker, dets, times, size) -> dict:
    """The churn counts this benchmark reports (``bench_class_groups.churn`` measures them)."""
    r = churn(tracker, dets, times, size)
    return {k: r[k] for k in ("frames", "minutes", "tracks", "short", "detected_boxes", "coasted_boxes")}


def clips(cfg) -> tuple[dict, list]:
    det = build_detector(dataclasses.replace(cfg.detector, score_threshold=min(FLOORS)))
    results: dict = {}
    for clip in CLIPS:
        dets, times, size = detect_clip(det, SHARED / clip, cfg.source)
        for floor in FLOORS:
            kept = [d[d.score >= floor] for d in dets]
            results.setdefault(Path(clip).name, {})[floor] = track_clip(
                KalmanTracker(cfg.tracker, det.class_names), kept, times, size)
    rows = []
    for floor in FLOORS:
        per = [results[Path(c).name][floor] for c in CLIPS]
        total = {k: sum(r[k] for r in per) for k in per[0]}
        results.setdefault("all clips", {})[floor] = total
        rows.append([floor, total["frames"], total["tracks"], f"{total['tracks'] / total['minutes']:.0f}",
                     f"{total['short'] / total['minutes']:.0f}", total["detected_boxes"], total["coasted_boxes"]])
    return results, rows


def kitti() -> tuple[dict, list]:
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, floor, sets in KITTI:
            out = Path(tmp) / "k.json"
            cmd = [sys.executable, "-m", "tools.eval_tracking", "--classes", "Car", "--trackers", "ours",
                   "--dropout-frames", "10", "--score-threshold", str(floor), "--json", str(out)]
            for s in sets:
                cmd += ["--set", s]
            subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
            ours = json.loads(out.read_text())["trackers"]["ours"]
            clean, k10 = ours["clean"]["car"], ours["dropout"]["K=10"]["car"]
            results[name] = {"raw_floor": floor, "set": sets, "clean": clean, "K=10": k10}
            rows.append([name, f"{clean['HOTA']:.2f}", f"{clean['IDF1']:.2f}", clean["IDSW"], clean["Frag"],
                         f"{k10['HOTA']:.2f} / {k10['IDF1']:.2f} / {k10['IDSW']}"])
    return results, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--no-kitti", action="store_true", help="only the shared clips")
    args = ap.parse_args(argv)
    missing = [c for c in CLIPS if not (SHARED / c).exists()]
    if missing:
        print(f"error: {SHARED / missing[0]} not found; put the shared data at {SHARED} (see its README)",
              file=sys.stderr)
        return 2
    try:
        cfg = load_config()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = {}
    results["clips"], rows = clips(cfg)
    print(markdown_table(["detector floor", "frames", "tracks", "born / min", "< 1 s / min", "detected boxes",
                          "coasted boxes"], rows))
    if not args.no_kitti:
        results["kitti"], rows = kitti()
        print(markdown_table(["KITTI Car", "HOTA", "IDF1", "IDSW", "Frag", "K=10 HOTA / IDF1 / IDSW"], rows))
    write_json(args.json, args, {str(k): v for k, v in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
