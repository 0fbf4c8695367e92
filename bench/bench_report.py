"""What ``--report`` costs: per-frame aggregation on the output thread, memory held for a long drive, and
the rendering at the end, on a synthetic drive (1280x720 frames, 8 tracked boxes each with ttc_s /
in_path, tracks replaced every 50 frames). Baseline in the same run: the JSONL writer on the same frames.

    python -m bench.bench_report --frames 1000 30000 --json bench/results/report.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_report --help")

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2  # noqa: F401  (before av: see pipeline/__init__.py)
import numpy as np

from bench.common import markdown_table, write_json
from pipeline.outputs import JsonlWriter
from dashtrack_core.records import Detections, Frame
from pipeline.report import ReportData, write_report

NAMES = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck")


def drive(n: int):
    image = np.full((720, 1280, 3), 90, np.uint8)
    rng = np.random.default_rng(0)
    for i in range(n):
        k = 8 - (i // 37) % 3
        x = rng.uniform(0, 1100, k)
        y = rng.uniform(300, 600, k)
        xyxy = np.stack([x, y, x + 80, y + 60], 1)
        cols = {"ttc_s": rng.uniform(0.5, 9.0, k), "in_path": rng.random(k) < 0.3,
                "det_class": np.full(k, 2, np.int32)}
        dets = Detections(xyxy, rng.uniform(0.3, 1.0, k), rng.choice([2, 7, 0], k), (i // 50) * 8 + np.arange(k),
                          rng.random(k) < 0.05, cols)
        yield Frame(image, i, i / 30.0, "synthetic", time.monotonic()), dets


def measure(n: int, out: Path) -> dict:
    frames = list(drive(min(n, 2000)))          # timing on the first 2000 frames (one list in memory)
    jl = JsonlWriter(str(out / "b.jsonl"), NAMES)
    t_json = []
    for f, d in frames:
        t0 = time.perf_counter()
        jl.write(f, d)
        t_json.append(time.perf_counter() - t0)
    jl.close()
    data = ReportData(NAMES)
    t_add = []
    for f, d in frames:
        t0 = time.perf_counter()
        data.add(f, d, 0.05)
        t_add.append(time.perf_counter() - t0)
    del frames
    tracemalloc.start()                          # memory: a fresh aggregate over the whole drive
    data = ReportData(NAMES)
    for f, d in drive(n):
        data.add(f, d, 0.05)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    page = out / f"r{n}.html"
    t0 = time.perf_counter()
    write_report(str(page), data, {"frames_out": n, "frames_in": n, "stop_reason": "end of input", "dropped": {}},
                 {"inference": list(np.random.default_rng(1).uniform(0.01, 0.03, 20000))})
    render = time.perf_counter() - t0
    return {"frames": n, "jsonl_write_us": 1e6 * statistics.median(t_json),
            "report_add_us": 1e6 * statistics.median(t_add), "report_add_mean_us": 1e6 * statistics.mean(t_add),
            "held_mb": held / 2**20, "peak_mb": peak / 2**20, "render_s": render,
            "page_kb": os.path.getsize(page) / 1024, "tracks": len(data.tracks)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[1000, 30000])
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp)) for n in args.frames]
    print(markdown_table(
        ["frames", "JSONL write us/frame (baseline)", "report add us/frame (p50 / mean)", "held MB", "peak MB",
         "render s", "page KB", "tracks"],
        [[r["frames"], f"{r['jsonl_write_us']:.0f}", f"{r['report_add_us']:.0f} / {r['report_add_mean_us']:.0f}",
          f"{r['held_mb']:.2f}", f"{r['peak_mb']:.2f}", f"{r['render_s']:.2f}", f"{r['page_kb']:.0f}", r["tracks"]]
         for r in rows]))
    write_json(args.json, args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
