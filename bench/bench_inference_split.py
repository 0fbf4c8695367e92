#!/usr/bin/env python3
"""How to spend the CPU cores on inference: one call on all of them, or calls side by side.

Runs the detector's inference (onnxruntime, one session per configuration) on real
preprocessed 1280x720 frames with W worker threads each calling ``infer`` on its own
frames, T intra-op threads per call, and reports images per second and CPU ms per image.
Configurations are interleaved over the repeats; medians are reported.

    python -m bench.bench_inference_split --splits 1x2,1x1,2x1 --images 150 --repeats 3
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_inference_split --help")

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.common import SHARED, clip_file, markdown_table, write_json

import cv2  # noqa: E402  (common imported cv2 before av)

from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.build import build_detector


def run(det, batches: list, workers: int) -> dict:
    """Every batch inferred once, split over ``workers`` threads."""
    def work(part):
        for b in part:
            det.infer(b)

    parts = [batches[i::workers] for i in range(workers)]
    threads = [threading.Thread(target=work, args=(p,)) for p in parts]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"img_s": len(batches) / wall, "cpu_ms": 1000 * cpu / len(batches)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=clip_file, default=str(SHARED / "videos" / "udacity" / "test_small2.mp4"))
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="detector from this config (default: YOLOX-Nano)")
    ap.add_argument("--splits", default="1x2,1x1,2x1", help="WORKERSxTHREADS list; the first is the baseline")
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    clip = args.clip
    splits = [tuple(int(v) for v in s.split("x")) for s in args.splits.split(",")]
    dets = {s: build_detector(load_config(args.config, {"detector.workers": s[0], "detector.threads": s[1]}).detector)
            for s in splits}
    cap, images = cv2.VideoCapture(str(clip)), []
    while len(images) < args.images:
        ok, img = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(str(clip))
            continue
        images.append(img)
    any_det = next(iter(dets.values()))
    batches = [any_det.preprocess([img]) for img in images]
    for det in dets.values():               # warm-up
        run(det, batches[:10], 1)
    results = {s: [] for s in splits}
    for _ in range(args.repeats):
        for s in splits:
            results[s].append(run(dets[s], batches, s[0]))
    print(f"\n{Path(any_det.cfg.model).name}, {len(batches)} frames of {clip.name}, {os.cpu_count()} cores, "
          f"median of {args.repeats}")
    rows = [{"workers": s[0], "threads": s[1], "img_s": statistics.median(r["img_s"] for r in results[s]),
             "cpu_ms": statistics.median(r["cpu_ms"] for r in results[s])} for s in splits]
    base = rows[0]["img_s"]
    print(markdown_table(["workers", "threads per call", "img/s", "CPU ms/img", "vs the first row"],
                         [[r["workers"], r["threads"], f"{r['img_s']:.1f}", f"{r['cpu_ms']:.1f}",
                           f"{r['img_s'] / base:.2f}x"] for r in rows]))
    write_json(args.json, args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
