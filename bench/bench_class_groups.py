#!/usr/bin/env python3
"""Track churn on the shared clips with the default detector: class groups off vs on.

The default detector (configs/default.yaml, YOLOX-Nano) runs once per clip and
the same detections feed both trackers, so only the tracker differs:
  groups off   tracker.class_groups: [] (only equal classes match; the tracker before groups)
  groups on    the default class groups (trackers/config.py)
Per clip and setting: tracks emitted, tracks born per minute (ids ever
emitted), tracks shorter than 1 s per minute (first to last frame with a
detection behind the id, < 1 s), the frames where the detector's class of a
track's box changed (det-class flips) and where the class we output for a
track changed (output class changes).  Clips: the four 1280x720 Udacity
clips and the PandaSet front camera as an image folder (timestamps.json).

    python -m bench.bench_class_groups [--json bench/results/class_groups_cpu.json]
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_class_groups --help")

import argparse
import sys
import time

import numpy as np

from bench.common import SHARED, markdown_table, write_json

from pipeline.config import load_config
from dashtrack_core.configtools import ConfigError
from pipeline.build import build_detector
from pipeline.sources import open_source
from trackers import KalmanTracker

CLIPS = ("videos/udacity/test_video.mp4", "videos/udacity/project_video_cut.mp4",
         "videos/udacity/test_small1.mp4", "videos/udacity/test_small2.mp4", "images/pandaset_002_front")
SETTINGS = {"groups off": {"class_groups": []}, "groups on": {}}
SHORT_S = 1.0


def detect_clip(det, path, source_cfg) -> tuple[list, list[float], tuple[int, int]]:
    """Every frame's detections, timestamps and the frame size (h, w)."""
    dets, times, size = [], [], (0, 0)
    src = open_source(str(path), source_cfg)
    try:
        for frame in src:
            dets.append(det.detect([frame.image])[0])
            times.append(frame.timestamp)
            size = frame.image.shape[:2]
    finally:
        src.close()
    return dets, times, size


def churn(tracker: KalmanTracker, dets, times, size) -> dict:
    # update() reads only the image's shape (the frame extent) unless CMC is on
    image = np.broadcast_to(np.zeros(1, np.uint8), (*size, 3)) if not tracker.config.cmc else None
    seen: dict[int, list[float]] = {}      # id -> [first, last] time with a detection
    emitted: set[int] = set()
    det_cls: dict[int, int] = {}
    out_cls: dict[int, int] = {}
    det_flips = out_changes = detected = coasted_boxes = 0
    for d, t in zip(dets, times):
        out = tracker.update(d, t, image)
        if not len(out):               # nothing emitted (an empty result carries no columns)
            continue
        for tid, cls, dc, coasted in zip(out.track_id.tolist(), out.class_id.tolist(),
                                         out.columns["det_class"].tolist(), out.coasted.tolist()):
            emitted.add(tid)
            if tid in out_cls and out_cls[tid] != cls:
                out_changes += 1
            out_cls[tid] = cls
            if coasted:
                coasted_boxes += 1
                continue
            detected += 1
            span = seen.setdefault(tid, [t, t])
            span[1] = t
            if tid in det_cls and det_cls[tid] != dc:
                det_flips += 1
            det_cls[tid] = dc
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    minutes = max((times[-1] - times[0] + dt) / 60.0, 1e-9) if times else 1e-9
    short = sum(1 for a, b in seen.values() if b - a + dt < SHORT_S - 1e-9)
    return {"frames": len(times), "minutes": minutes, "tracks": len(emitted), "short": short,
            "born_per_min": len(emitted) / minutes, "short_per_min": short / minutes,
            "detected_boxes": detected, "coasted_boxes": coasted_boxes,
            "det_class_flips": det_flips, "output_class_changes": out_changes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    paths = [SHARED / c for c in CLIPS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: {missing[0]} not found; put the shared data at {SHARED} (see its README)", file=sys.stderr)
        return 2
    try:
        cfg = load_config()
        trackers = {name: load_config(overrides={f"tracker.{k}": v for k, v in over.items()}).tracker
                    for name, over in SETTINGS.items()}
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    det = build_detector(cfg.detector)
    results, rows = {}, []
    for path in paths:
        t0 = time.perf_counter()
        dets, times, size = detect_clip(det, path, cfg.source)
        print(f"{path.name}: {len(dets)} frames detected in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results[path.name] = {}
        for name, tcfg in trackers.items():
            r = churn(KalmanTracker(tcfg, det.class_names), dets, times, size)
            results[path.name][name] = r
            rows.append([path.name, name, r["frames"], r["tracks"], f"{r['born_per_min']:.0f}",
                         f"{r['short_per_min']:.0f}", r["det_class_flips"], r["output_class_changes"]])
    for name in trackers:
        per = [results[p.name][name] for p in paths]
        minutes = sum(r["minutes"] for r in per)
        total = {"frames": sum(r["frames"] for r in per), "minutes": minutes,
                 "tracks": sum(r["tracks"] for r in per),
                 "born_per_min": sum(r["tracks"] for r in per) / minutes,
                 "short_per_min": sum(r["short_per_min"] * r["minutes"] for r in per) / minutes,
                 "det_class_flips": sum(r["det_class_flips"] for r in per),
                 "output_class_changes": sum(r["output_class_changes"] for r in per)}
        results.setdefault("all clips", {})[name] = total
        rows.append(["all clips", name, total["frames"], total["tracks"], f"{total['born_per_min']:.0f}",
                     f"{total['short_per_min']:.0f}", total["det_class_flips"], total["output_class_changes"]])
    print(markdown_table(["clip", "tracker", "frames", "tracks", "born / min", "< 1 s / min",
                          "det-class flips", "output class changes"], rows))
    write_json(args.json, args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
