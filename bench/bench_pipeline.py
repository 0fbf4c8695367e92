#!/usr/bin/env python3
"""End-to-end FPS: the threaded stage chain against a single-threaded loop, same run.

For each 1280x720 shared clip (looped to --min-frames), it times
  loop:     one thread: PyAV decode -> detector.detect -> tracker -> draw
  pipeline: pipeline.runner.Runner headless (capture, preprocess, inference,
            decode, track, output on their own threads)
alternating the two --repeats times, and prints the median FPS, CPU-ms per frame
and the pipeline's per-stage table.  Writes JSON with --json.

    python -m bench.bench_pipeline --json bench/results/pipeline_cpu.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_pipeline --help")

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench.common import SHARED, Looped, markdown_table, write_json  # (imports cv2 before av)

from pipeline.config import DEFAULT_CONFIG, load_config  # noqa: E402
from pipeline.build import build_detector  # noqa: E402
from pipeline.drawing import draw_detections  # noqa: E402
from pipeline.runner import Runner, build_tracker  # noqa: E402
from pipeline.sources import open_source  # noqa: E402
from pipeline.stats import format_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLIPS = ["test_video.mp4", "project_video_cut.mp4", "test_small1.mp4", "test_small2.mp4"]


def run_loop(cfg, path: Path, times: int) -> dict:
    det = build_detector(cfg.detector)
    tracker = build_tracker(cfg)
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for f in Looped(path, cfg.source, times=times):
        d = det.detect([f.image])[0]
        if tracker is not None:
            d = tracker.update(d, f.timestamp, f.image)
        draw_detections(f.image.copy(), d, det.class_names)
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n}


def run_pipeline(cfg, path: Path, times: int) -> dict:
    runner = Runner(cfg, Looped(path, cfg.source, times=times))
    report = runner.run()
    return {"frames": report["frames_out"], "fps": report["fps"], "cpu_ms_per_frame": report["cpu_ms_per_frame"],
            "report": report}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(SHARED / "videos" / "udacity"))
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--min-frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--track", action="store_true", help="tracker on in both")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--no-spin", action="store_true", help="onnxruntime workers sleep instead of spinning")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()

    cfg = load_config(args.config, {"output.show": "no", "output.progress": False, "pipeline.track": args.track,
                                    "detector.threads": args.threads, "detector.spin": not args.no_spin})
    results = []
    for clip in args.clips.split(","):
        path = Path(args.videos) / clip
        if not path.is_file():
            print(f"error: {path} not found; pass --videos DIR", file=sys.stderr)
            return 1
        frames = sum(1 for _ in open_source(str(path)))
        times = max(1, -(-args.min_frames // frames))
        loops, pipes = [], []
        for _ in range(args.repeats):          # alternate so drift hits both alike
            loops.append(run_loop(cfg, path, times))
            pipes.append(run_pipeline(cfg, path, times))
        best = sorted(pipes, key=lambda r: r["fps"])[len(pipes) // 2]
        row = {
            "clip": clip, "frames": loops[0]["frames"],
            "loop_fps": statistics.median(r["fps"] for r in loops),
            "loop_cpu_ms": statistics.median(r["cpu_ms_per_frame"] for r in loops),
            "pipeline_fps": statistics.median(r["fps"] for r in pipes),
            "pipeline_cpu_ms": statistics.median(r["cpu_ms_per_frame"] for r in pipes),
            "stages": best["report"]["stages"], "latency": best["report"]["latency"],
        }
        row["ratio"] = row["pipeline_fps"] / row["loop_fps"]
        results.append(row)
        print(f"\n{clip} x{times} ({row['frames']} frames), median pipeline run:", file=sys.stderr)
        print(format_table(best["report"]), file=sys.stderr)

    print()
    print(markdown_table(["clip", "frames", "loop FPS", "pipeline FPS", "ratio", "loop CPU-ms/frame",
                          "pipeline CPU-ms/frame"],
                         [[r["clip"], r["frames"], f"{r['loop_fps']:.1f}", f"{r['pipeline_fps']:.1f}",
                           f"{r['ratio']:.2f}x", f"{r['loop_cpu_ms']:.1f}", f"{r['pipeline_cpu_ms']:.1f}"]
                          for r in results]))
    write_json(args.json, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
