"""Time one ``update`` call of our tracker and of the importable peers at 10/50/200 tracks.

    python -m bench.bench_tracker [--tracks 10,50,200] [--frames 200] [--trackers ours,sv-bytetrack,...]
        [--cmc-clip VIDEO] [--frame-size]

A synthetic scene: N boxes on a 1242x375 frame moving at constant velocity
with 1 px jitter, 5% of detections missing each frame (so coasting and
recovery run too), all of class car with score 0.9.  Every tracker sees the
same detections; the first 20 frames are warm-up.  Reports microseconds per
update call (median over frames and mean).  With ``--cmc-clip``, also the
cost of our optional camera-motion compensation per frame of a real video, at
three flow widths (the default 320 px and half and double it).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_tracker --help")

import os

# Before any peer imports torch: OpenMP threads that spin after each parallel region
# took a core from whatever ran next on this 2-core machine (measured: every tracker,
# ours included, up to 2x slower in a same-run table).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402  (after OMP_WAIT_POLICY is set)
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import clip_file, markdown_table  # noqa: E402
from dashtrack_core.records import Detections  # noqa: E402
from trackers.eval import peers  # noqa: E402

WARMUP = 20


def scene(n: int, frames: int, seed: int = 0, classes: tuple[int, ...] = (2,)) -> list[Detections]:
    rng = np.random.default_rng(seed)
    # a grid of non-overlapping starting boxes so association is unambiguous
    cols = int(np.ceil(np.sqrt(n * 4)))
    cells = rng.choice(cols * cols, size=n, replace=False)
    w, h = 1242.0 / cols, 375.0 / cols
    x0 = (cells % cols) * w
    y0 = (cells // cols) * h
    size = np.stack([np.full(n, w * 0.6), np.full(n, h * 0.6)], axis=1)
    vel = rng.normal(0, 0.02, (n, 2)) * [w, h]
    cls = np.asarray(classes)[np.arange(n) % len(classes)]      # box i has classes[i mod len]
    out = []
    for f in range(frames):
        tl = np.stack([x0, y0], axis=1) + f * vel + rng.normal(0, 1.0, (n, 2))
        boxes = np.concatenate([tl, tl + size], axis=1)
        keep = rng.random(n) > 0.05
        out.append(Detections(boxes[keep], np.full(keep.sum(), 0.9), cls[keep]))
    return out


def bench(name: str, frames: list[Detections], fps: float = 10.0, frame_size=None) -> dict:
    tracker = peers.make(name, fps, frame_size=frame_size) if name == "ours" else peers.make(name, fps)
    times = []
    n_out = 0
    for f, d in enumerate(frames):
        t0 = time.perf_counter()
        out = tracker.update(d, f / fps)
        dt = time.perf_counter() - t0
        if f >= WARMUP:
            times.append(dt)
            n_out += len(out)
    t = np.array(times) * 1e6
    return {"median_us": float(np.median(t)), "mean_us": float(t.mean()),
            "mean_tracks_out": n_out / max(len(times), 1)}


def clip_frames(path: Path, limit: int) -> tuple[list[np.ndarray], list[float]]:
    """The first `limit` decoded frames of a video and their timestamps (seconds, from the stream)."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    frames, times = [], []
    while len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    cap.release()
    if len(frames) < 2:
        raise SystemExit(f"error: {path}: fewer than 2 frames could be decoded; pass a readable video to --cmc-clip")
    return frames, times


def bench_cmc(images: list[np.ndarray], times: list[float], width: int) -> dict:
    """ms per frame of camera-motion compensation inside KalmanTracker.update (no detections)."""
    from trackers import KalmanTracker, TrackerConfig
    tracker = KalmanTracker(TrackerConfig(cmc=True, cmc_max_width=width))
    per_frame, before = [], 0.0
    for f, (image, t) in enumerate(zip(images, times)):
        tracker.update(Detections.empty(), t, image=image)
        spent = tracker.stats.cmc_seconds
        if f >= 1:            # the first frame has no previous one (a fallback by design)
            per_frame.append(spent - before)
        before = spent
    t = np.array(per_frame) * 1e3
    return {"median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
            "fallbacks": tracker.stats.cmc_fallbacks - 1, "frames": len(per_frame)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", default="10,50,200")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--trackers", default="ours,sv-bytetrack,norfair,boxmot-ocsort,boxmot-bytetrack")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cmc-clip", type=clip_file, default=None, metavar="VIDEO",
                    help="also time camera-motion compensation on this video's first 150 frames")
    ap.add_argument("--frame-size", action="store_true",
                    help="give ours the scene's 1242x375 frame size (as the pipeline's images do: "
                         "frame-border checks, in-path and the horizon estimate run)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.tracks.split(",")]
    names, missing = [], {}
    for t in args.trackers.split(","):
        ok, why = peers.available(t.strip())
        (names.append(t.strip()) if ok else missing.__setitem__(t.strip(), why))
    results = {name: {} for name in names}
    for n in sizes:
        frames = scene(n, args.frames)
        for name in names:
            results[name][n] = bench(name, frames, frame_size=(1242, 375) if args.frame_size else None)
            print(f"{name} @ {n}: {results[name][n]['median_us']:.0f} us", file=sys.stderr)
    print(markdown_table(["tracker"] + [f"{n} tracks (median / mean µs)" for n in sizes],
                         [[name] + [f"{results[name][n]['median_us']:.0f} / {results[name][n]['mean_us']:.0f}"
                                    for n in sizes] for name in names]))
    cmc = {}
    if args.cmc_clip is not None:
        images, times = clip_frames(args.cmc_clip, 150)
        h, w = images[0].shape[:2]
        print(f"\ncamera-motion compensation on {args.cmc_clip.name} ({w}x{h}, {len(images)} frames):\n")
        rows = []
        for width in (160, 320, 640):
            cmc[width] = r = bench_cmc(images, times, width)
            rows.append([f"{width} px", f"{r['median_ms']:.2f} / {r['mean_ms']:.2f}", f"{r['fallbacks']} of {r['frames']}"])
        print(markdown_table(["flow width", "ms per frame (median / mean)", "fallbacks"], rows))
    if missing:
        print("\nnot run (not importable here): " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cmc": cmc, "missing": missing}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
