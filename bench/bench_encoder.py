#!/usr/bin/env python3
"""H.264 encoder settings for --save-video: preset x threads x tune x colour conversion.

Encodes the frames of one 1280x720 clip (decoded once into memory) through
pipeline.outputs.VideoWriter with each setting and reports wall ms and CPU ms per
frame and the file size. On a CPU-bound 2-core machine the CPU ms is what the
encoder takes away from inference, so that column picks the default.

    python -m bench.bench_encoder --frames 200 --repeats 2 --json bench/results/encoder_cpu.json
    # the keyframe interval: about 1 s (the writer's default: a killed run loses <= ~1 s) vs x264's 250
    python -m bench.bench_encoder --presets superfast --threads 1 --tunes zerolatency --convert opencv \
        --keyframes 250,25 --frames 250 --repeats 3 --json bench/results/encoder_keyframes.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_encoder --help")

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SHARED, clip_file, markdown_table, write_json

import cv2  # noqa: E402  (common imported cv2 before av)

from pipeline.outputs import VideoWriter


def load_frames(clip: Path, n: int) -> list:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            if not frames:
                raise SystemExit(f"error: {clip}: no frame could be decoded; pass --clip with a readable video")
            cap.release()
            cap = cv2.VideoCapture(str(clip))
            continue
        frames.append(img)
    cap.release()
    return frames


def encode(frames: list, out: Path, **kw) -> dict:
    w = VideoWriter(str(out), fps_hint=25.0, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    for i, img in enumerate(frames):
        w.write(img, i / 25.0)
    w.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_ms": 1000 * wall / len(frames), "cpu_ms": 1000 * cpu / len(frames),
            "kb_per_frame": out.stat().st_size / 1000 / len(frames)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=clip_file, default=str(SHARED / "videos" / "udacity" / "test_small2.mp4"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--presets", default="ultrafast,superfast,veryfast")
    ap.add_argument("--threads", default="1,2", help="encoder threads to try")
    ap.add_argument("--tunes", default="zerolatency,none")
    ap.add_argument("--convert", default="opencv,ffmpeg", help="BGR->YUV 4:2:0 by OpenCV or by FFmpeg's swscale")
    ap.add_argument("--keyframes", default="25", help="frames between keyframes to try (25 = 1 s, the default)")
    ap.add_argument("--json")
    args = ap.parse_args()
    clip = args.clip
    frames = load_frames(clip, args.frames)
    tmp = Path(tempfile.mkdtemp())
    grid = list(itertools.product(args.presets.split(","), [int(t) for t in args.threads.split(",")],
                                  args.tunes.split(","), args.convert.split(","),
                                  [int(k) for k in args.keyframes.split(",")]))
    runs: dict[tuple, list[dict]] = {g: [] for g in grid}
    for _ in range(args.repeats):                     # settings interleaved, so drift hits them all alike
        for g in grid:
            preset, threads, tune, convert, keyint = g
            runs[g].append(encode(frames, tmp / "out.mp4", preset=preset, threads=threads,
                                  tune=None if tune == "none" else tune, convert=convert, keyframe_interval=keyint))
    print(f"\n{clip.name}, {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, libx264 crf 23, "
          f"median of {args.repeats}, {os.cpu_count()} cores")
    rows = []
    for g, rs in runs.items():
        row = dict(zip(("preset", "threads", "tune", "convert", "keyframe_interval"), g))
        row.update({k: statistics.median(r[k] for r in rs) for k in ("wall_ms", "cpu_ms", "kb_per_frame")})
        rows.append(row)
    print(markdown_table(["preset", "threads", "tune", "BGR->YUV", "keyframe every", "wall ms/frame", "CPU ms/frame",
                          "kB/frame"],
                         [[*g, f"{r['wall_ms']:.1f}", f"{r['cpu_ms']:.1f}", f"{r['kb_per_frame']:.1f}"]
                          for g, r in zip(runs, rows)]))
    write_json(args.json, args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
