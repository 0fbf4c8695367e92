"""End-to-end CPU speed of ONNX detectors on real 1280x720 frames, preprocessing included.

    python -m bench.bench_speed --model configs/detectors/lite.yaml --model yolox_nano \
        [--threads 2] [--iters 30] [--json out.json]

Each ``--model`` is a detector preset (configs/detectors/<name>.yaml or a YAML path) or an .onnx
file, run through the pipeline's ONNX backend (``OnnxDetector.detect``: letterbox resize +
normalisation, onnxruntime with ``--threads`` intra-op threads, decode, NMS).  Models are
timed round-robin on the same frames (Udacity ``test1..6.jpg``, cycled), so a busy machine
slows all of them alike; the table gives the median and mean ms per frame.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_speed --help")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

from pipeline.config import DetectorConfig, detector_preset
from dashtrack_core.configtools import from_mapping
from pipeline.onnx_detector import OnnxDetector
from dashtrack_core.paths import shared_data_dir

FRAMES = shared_data_dir() / "images" / "udacity"


def load(spec: str, threads: int) -> OnnxDetector:
    if spec.endswith(".onnx"):
        return OnnxDetector(DetectorConfig(model=str(Path(spec).resolve()), threads=threads))
    data = dict(detector_preset(spec), threads=threads)
    return OnnxDetector(from_mapping(DetectorConfig, data, spec))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    frames = [cv2.imread(str(p)) for p in sorted(FRAMES.glob("test*.jpg"))]
    if not frames:
        print(f"bench_speed: no frames under {FRAMES}", file=sys.stderr)
        return 2
    dets = {m: load(m, args.threads) for m in args.model}
    times: dict[str, list[float]] = {m: [] for m in dets}
    for i in range(args.warmup + args.iters):
        img = frames[i % len(frames)]
        for m, d in dets.items():
            t0 = time.perf_counter()
            d.detect([img])
            if i >= args.warmup:
                times[m].append(1000 * (time.perf_counter() - t0))
    rows = {m: {"median_ms": statistics.median(t), "mean_ms": statistics.fmean(t), "min_ms": min(t),
                "input": [dets[m].in_h, dets[m].in_w]} for m, t in times.items()}
    print(f"{'model':<40} {'input':>10} {'median ms':>10} {'mean ms':>9} {'min ms':>8}   "
          f"({frames[0].shape[1]}x{frames[0].shape[0]} frames, {args.threads} threads, {args.iters} iters)")
    for m, r in rows.items():
        print(f"{m:<40} {r['input'][0]:>4}x{r['input'][1]:<5} {r['median_ms']:>10.1f} {r['mean_ms']:>9.1f} {r['min_ms']:>8.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "iters": args.iters, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
