#!/usr/bin/env python3
"""Our tracker against another checkout's, in one process, interleaved frame by frame.

On a loaded machine two runs of ``python -m bench.bench_tracker`` differ by more than
a few percent from run to run; here both trackers get every frame in turn
(alternating which goes first), so load hits both alike.  The baseline's
``trackers`` package is copied to a temporary folder under another name and
imported beside ours (it uses this checkout's ``pipeline``).

Scenes (``bench/bench_tracker.py``'s: N boxes at constant velocity, 1 px
jitter, 5% missed each frame): ``one class`` (every box a car, as in
bench_tracker) and ``car+truck`` (every other object a truck: class checks
run every frame, as with a real detector).  Reports per scene the median over
repeats of: each tracker's median µs per update and the median of the
per-frame time ratios (ours / baseline).

    python -m bench.bench_tracker_ab --baseline ../main [--tracks 50] [--frames 400] [--repeats 3]
        [--set KEY=VALUE ...] [--json OUT]
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_tracker_ab --help")

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_tracker import WARMUP, scene
from bench.common import markdown_table, write_json
from dashtrack_core.records import Detections


def car_truck(n: int, frames: int, seed: int) -> list[Detections]:
    """``bench_tracker.scene`` (same boxes, same random draws) with every other object a truck (COCO 7)."""
    return scene(n, frames, seed, classes=(2, 7))


def load_baseline(path: Path, tmp: Path):
    src = path / "trackers"
    if not (src / "tracker.py").is_file():
        raise SystemExit(f"error: {src}/tracker.py not found; --baseline needs a checkout of this project")
    pkg = tmp / "trackers_baseline"
    shutil.copytree(src, pkg)
    # imported as a package of its own name from its file (its imports inside the package are relative)
    spec = importlib.util.spec_from_file_location("trackers_baseline", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["trackers_baseline"] = module
    spec.loader.exec_module(module)
    return module


def race(base, ours, frames: list[Detections], ours_cfg) -> tuple[float, float, float]:
    a, b = base.KalmanTracker(base.TrackerConfig()), ours.KalmanTracker(ours_cfg)
    ta, tb = [], []
    for f, d in enumerate(frames):
        order = ((a, ta), (b, tb)) if f % 2 else ((b, tb), (a, ta))
        for tracker, times in order:
            t0 = time.perf_counter()
            tracker.update(d, f / 10.0)
            times.append(time.perf_counter() - t0)
    ta, tb = np.array(ta[WARMUP:]) * 1e6, np.array(tb[WARMUP:]) * 1e6
    return float(np.median(ta)), float(np.median(tb)), float(np.median(tb / ta))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="another checkout of this project (e.g. ../main)")
    ap.add_argument("--tracks", type=int, default=50)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field of our tracker's config (e.g. class_groups=[])")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import yaml

    import trackers as ours
    from dashtrack_core.configtools import ConfigError, from_mapping
    try:
        ours_cfg = from_mapping(ours.TrackerConfig, {k: yaml.safe_load(v) for k, _, v in
                                                     (kv.partition("=") for kv in args.set)}, "tracker")
    except ConfigError as e:
        print(f"error: --set: {e}", file=sys.stderr)
        return 2
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        base = load_baseline(Path(args.baseline).resolve(), Path(tmp))
        for name in ("one class", "car+truck"):
            runs = []
            for rep in range(args.repeats):
                frames = (scene if name == "one class" else car_truck)(args.tracks, args.frames, seed=rep)
                runs.append(race(base, ours, frames, ours_cfg))
            med = [statistics.median(r[i] for r in runs) for i in range(3)]
            results[name] = {"baseline_median_us": med[0], "ours_median_us": med[1], "ratio": med[2],
                             "runs": [dict(zip(("baseline_us", "ours_us", "ratio"), r)) for r in runs]}
            rows.append([name, args.tracks, f"{med[0]:.0f}", f"{med[1]:.0f}", f"{med[2]:.3f}",
                         ", ".join(f"{r[2]:.3f}" for r in runs)])
    print(markdown_table(["scene", "tracks", "baseline µs", "ours µs", "ours / baseline (median of frames)",
                          "per repeat"], rows))
    write_json(args.json, args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
