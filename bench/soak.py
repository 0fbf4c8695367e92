#!/usr/bin/env python3
"""Soak: run the whole pipeline (detect, track, JSON output) on a looped real clip for
--minutes, sample memory every --every seconds, and report the memory slope after
warm-up.  Exits 1 when the slope exceeds --max-slope MB/min and the memory grew by more
than --max-growth MB after warm-up (a short run's one-off steps are not a leak).

    python -m bench.soak --minutes 30 --json bench/results/soak.json
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.soak --help")

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED, Looped, clip_file, rss_mb, write_json

from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.runner import Runner


def verdict(t: np.ndarray, mem: np.ndarray, warmup: float, max_slope: float, max_growth: float):
    """(slope MB/min, growth MB, flat?) after the warm-up fraction of the run.  Growth is the median of the
    window's last quarter less that of its first quarter: RSS jitters by several MB from sample to sample
    (allocator, decoder buffers), and a difference of two single samples once called a flat 2-minute CI
    run growing (+11.8 MB from one low first sample; the same code over 5 minutes: +0.74 MB/min)."""
    fit = t >= warmup * t[-1]
    slope = float(np.polyfit(t[fit], mem[fit], 1)[0]) if fit.sum() >= 3 else float("nan")
    window = mem[fit]
    q = max(1, len(window) // 4)
    growth = float(np.median(window[-q:]) - np.median(window[:q])) if len(window) else 0.0
    return slope, growth, bool(slope <= max_slope or growth <= max_growth)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clip", type=clip_file, default=str(SHARED / "videos" / "udacity" / "test_small2.mp4"))
    ap.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of the run left out of the slope fit")
    ap.add_argument("--max-slope", type=float, default=2.0, help="MB/min allowed after warm-up")
    ap.add_argument("--max-growth", type=float, default=10.0,
                    help="MB of growth after warm-up tolerated whatever the slope (a short run's steps)")
    ap.add_argument("--track", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", help="write samples and the result here")
    args = ap.parse_args()
    clip = args.clip

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(DEFAULT_CONFIG, {"output.show": "no", "output.progress": False,
                                           "pipeline.track": args.track,
                                           "output.save_json": str(Path(tmp) / "soak.jsonl")})
        runner = Runner(cfg, Looped(clip, cfg.source, seconds=args.minutes * 60.0))
        samples: list[tuple[float, float, int]] = []
        done = threading.Event()
        t0 = time.monotonic()

        def sample():
            while not done.wait(args.every):
                samples.append((time.monotonic() - t0, rss_mb(), runner.stats.frames_out))

        monitor = threading.Thread(target=sample, daemon=True)
        monitor.start()
        try:
            report = runner.run()
        finally:
            done.set()
            monitor.join(5)
    t = np.array([s[0] for s in samples]) / 60.0
    mem = np.array([s[1] for s in samples])
    slope, growth, ok = verdict(t, mem, args.warmup, args.max_slope, args.max_growth)
    fit = t >= args.warmup * t[-1]
    print("| minute | RSS MB | frames |")
    print("| --- | --- | --- |")
    step = max(1, len(samples) // 12)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        print(f"| {s[0] / 60:.1f} | {s[1]:.1f} | {s[2]} |")
    print(f"\n{report['frames_out']} frames in {t[-1]:.1f} min, {report['fps']:.1f} FPS, dropped "
          f"{sum(report['dropped'].values())}; RSS {mem[fit][0]:.1f} -> {mem[-1]:.1f} MB after warm-up, "
          f"slope {slope:+.2f} MB/min (limit {args.max_slope}), growth {growth:+.1f} MB (limit {args.max_growth}) "
          f"-> {'flat' if ok else 'GROWING'}")
    write_json(args.json, args, {"samples": samples, "slope_mb_per_min": slope, "growth_mb": growth,
                                 "frames": report["frames_out"], "fps": report["fps"], "flat": bool(ok)})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
