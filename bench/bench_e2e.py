#!/usr/bin/env python3
"""End to end against the baselines of ../shared/ANCHORS.md, all in one run.

On one 1280x720 clip looped to --frames, tracker on:
  naive            one thread: cv2 read -> letterbox 416 -> onnxruntime -> NMS -> tracker -> draw, with the
                   shared YOLOX-Nano teacher at 416x416 (--model yolox_nano)
  naive+writer     the same + cv2.VideoWriter (mp4v)
  ours             run_stream's Runner (threaded stage chain) with the default config (the shipped
                   dashcam model, input shaped like the frame), no output file
  ours+h264        the same + --save-video (PyAV libx264)
  ours x4 streams  4 copies of the clip at once, one shared detector (total FPS)
  ours, lite       ours with the small lite detector (configs/detectors/lite.yaml, 288x512)
  ours + 1 crop    ours with detector.crops on, budget 1 (one native-resolution crop per frame)
  ultralytics      YOLO("yolo11n.yaml").track(imgsz=640), random weights, in --ultra-python
                   (a venv with ultralytics; skipped when absent)
Configurations run in turn, --repeats times, and the medians are reported.

    python -m bench.bench_e2e --frames 500 --repeats 3 --json bench/results/e2e_cpu.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_e2e --help")

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, SHARED, Looped, clip_file, markdown_table, write_json

import cv2  # noqa: E402  (common imported cv2 before av)

from pipeline.config import DEFAULT_CONFIG, load_config, model_overrides
from dashtrack_core.detector import Batch, Letterbox
from pipeline.multi import MultiRunner
from pipeline.build import build_detector
from pipeline.onnx_detector import letterbox_image
from pipeline.drawing import draw_detections
from pipeline.runner import Runner, build_tracker


def naive(cfg, clip: Path, frames: int, writer_path: str | None) -> dict:
    """The naive sequential loop (no threads of ours), as ANCHORS.md describes it."""
    det = build_detector(cfg.detector)
    tracker = build_tracker(cfg)
    writer = None
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while n < frames:
        cap = cv2.VideoCapture(str(clip))
        while n < frames:
            ok, img = cap.read()
            if not ok:
                break
            if writer_path and writer is None:
                writer = cv2.VideoWriter(writer_path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (img.shape[1], img.shape[0]))
            lb = Letterbox.fit(img.shape[1], img.shape[0], det.in_h, det.in_w, "topleft")
            blob = cv2.dnn.blobFromImage(letterbox_image(img, lb, det.in_h, det.in_w, 114))
            raw = det.session.run(None, {det.input_name: blob})
            d = det.postprocess(raw, Batch(blob, (lb,)))[0]
            d = tracker.update(d, n / 25.0)
            draw_detections(img, d, det.class_names)
            if writer is not None:
                writer.write(img)
            n += 1
        cap.release()
    if writer is not None:
        writer.release()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n}


def ours(cfg, clip: Path, frames: int, streams: int = 1) -> dict:
    times = -(-frames // sum(1 for _ in Looped(clip, cfg.source, times=1)))
    t0, c0 = time.perf_counter(), time.process_time()
    if streams == 1:
        report = Runner(cfg, Looped(clip, cfg.source, times=times)).run()
        n, stages = report["frames_out"], report["stages"]
    else:
        multi = MultiRunner(cfg, [str(clip)] * streams)
        for r in multi.runners:                       # loop every stream's clip the same way
            r.source.close()
            r.source = Looped(clip, cfg.source, times=times)
        reports = multi.run()
        n, stages = sum(r["frames_out"] for r in reports), reports[0]["stages"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n,
            "stages": {k: v["p50_ms"] for k, v in stages.items()}}


ULTRA = r'''
import sys, time
from ultralytics import YOLO
clip, frames = sys.argv[1], int(sys.argv[2])
model = YOLO("yolo11n.yaml")
n = 0
t0 = None
while n < frames:
    for r in model.track(source=clip, imgsz=640, stream=True, verbose=False, persist=True, device="cpu"):
        if t0 is None:
            t0 = time.perf_counter()   # after the first frame: model build and warm-up excluded
        n += 1
        if n >= frames:
            break
print(f"{n - 1} {time.perf_counter() - t0}")
'''


def ultralytics(python: str, clip: Path, frames: int) -> dict | None:
    if not Path(python).exists():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ULTRA)
    out = subprocess.run([python, f.name, str(clip), str(frames)], capture_output=True, text=True, timeout=1800,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        print(f"warning: ultralytics run failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    n, secs = out.stdout.split()[-2:]
    return {"frames": int(n), "fps": int(n) / float(secs), "cpu_ms_per_frame": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=clip_file, default=str(SHARED / "videos" / "udacity" / "test_small2.mp4"))
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="ours: onnxruntime intra-op threads (default: the config's)")
    ap.add_argument("--spin", choices=("yes", "no"), default=None, help="ours: onnxruntime workers spin (default: the config's)")
    ap.add_argument("--ultra-python", default=str(REPO / ".venv-ultra" / "bin" / "python"))
    ap.add_argument("--only", help="comma list of configurations to run")
    ap.add_argument("--json")
    args = ap.parse_args()
    clip = args.clip
    over = {"output.show": "no", "output.progress": False, "pipeline.track": True}
    # The naive loop at onnxruntime's fastest setting for one model alone on this CPU
    # (2 intra-op threads, spinning: 16.3 ms vs 20.8 ms with its default thread count).
    cfg_naive = load_config(DEFAULT_CONFIG, dict(over, **model_overrides("yolox_nano"),
                                                 **{"detector.threads": 2, "detector.spin": True}))
    if args.threads is not None:
        over["detector.threads"] = args.threads
    if args.spin is not None:
        over["detector.spin"] = args.spin == "yes"
    cfg = load_config(DEFAULT_CONFIG, over)
    cfg_lite = load_config(DEFAULT_CONFIG, dict(model_overrides("lite"), **over))
    cfg_crops = load_config(DEFAULT_CONFIG, dict(over, **{"detector.crops": True, "detector.crop_budget": 1}))
    tmp = Path(tempfile.mkdtemp())
    cfg_h264 = load_config(DEFAULT_CONFIG, dict(over, **{"output.save_video": str(tmp / "ours.mp4")}))
    runs = {
        "naive": lambda: naive(cfg_naive, clip, args.frames, None),
        "naive+VideoWriter": lambda: naive(cfg_naive, clip, args.frames, str(tmp / "naive.mp4")),
        "ours": lambda: ours(cfg, clip, args.frames),
        "ours --save-video (H.264)": lambda: ours(cfg_h264, clip, args.frames),
        "ours, 4 streams (total)": lambda: ours(cfg, clip, args.frames // 4, streams=4),
        "ours, lite model": lambda: ours(cfg_lite, clip, args.frames),
        "ours + 1 crop (detector.crops)": lambda: ours(cfg_crops, clip, args.frames),
        "ultralytics yolo11n track": lambda: ultralytics(args.ultra_python, clip, args.frames),
    }
    if args.only:
        keep = args.only.split(",")
        runs = {k: v for k, v in runs.items() if any(k.startswith(o) for o in keep)}
    results: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            r = fn()
            if r is not None:
                results[name].append(r)
    rows = {}
    for name, rs in results.items():
        if rs:
            rows[name] = {"fps": statistics.median(r["fps"] for r in rs), "frames": rs[0]["frames"],
                          "cpu_ms_per_frame": statistics.median(r["cpu_ms_per_frame"] for r in rs)
                          if rs[0]["cpu_ms_per_frame"] is not None else None,
                          "stages": rs[0].get("stages"), "runs": [r["fps"] for r in rs]}
    base = rows.get("naive", {}).get("fps")
    base_w = rows.get("naive+VideoWriter", {}).get("fps")
    print(f"\n{clip.name} looped to {args.frames} frames, median of {args.repeats}")
    table = [[name, r["frames"], f"{r['fps']:.1f}", f"{r['fps'] / base:.2f}x" if base else "-",
              f"{r['fps'] / base_w:.2f}x" if base_w else "-",
              f"{r['cpu_ms_per_frame']:.1f}" if r["cpu_ms_per_frame"] is not None else "-"] for name, r in rows.items()]
    print(markdown_table(["configuration", "frames", "FPS", "vs naive", "vs naive+VideoWriter", "CPU-ms/frame"], table))
    if "ours" in rows and rows["ours"]["stages"]:
        print("\nours, p50 ms per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in rows["ours"]["stages"].items()))
    write_json(args.json, args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
