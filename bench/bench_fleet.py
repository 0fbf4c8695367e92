#!/usr/bin/env python3
"""The fleet on Ray against a plain sequential loop of single runs, in one session.

Four real drives (the shared Udacity clips), each run as ``python run_stream.py --source DRIVE --no-show``
would run it, with the fleet's outputs (JSONL, MOT, stats JSON):

- ``sequential``: a loop calling the single-run entry point once per drive in this process (no
  interpreter start per drive: the strictest baseline);
- ``ray wN``: ``dashtrack fleet DRIVES --workers N`` (a local Ray started for the run, shut down after).

Each configuration runs with the detector's default CPU split (2 inference workers x 1 thread on 2
cores: one drive keeps both cores busy, so Ray runs one drive at a time) and with
``--set detector.workers=1`` (one core per drive: two drives at once on 2 workers). The ideal for a Ray
run is the sequential loop's wall time divided by the drives Ray may run at once
(``workers // CPUs per drive``, at least 1); Ray's overhead per drive is what the fleet took beyond
its start-up and that ideal, per drive.

    python -m bench.bench_fleet --json bench/results/fleet_cpu.json
    python -m bench.bench_fleet --max-frames 40 --workers 1,2   # shorter

``drive_s`` in the JSON: each drive's run as its stats JSON gives it (the chain, without the model's
load), for both engines; ``call_s``: the sequential loop's whole call per drive.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:      # run by path: the project's packages are not on the path
    raise SystemExit("run it from the repository root as a module: python -m bench.bench_fleet --help")

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dashtrack_core.paths import shared_data_dir

DRIVES = ("test_small1.mp4", "test_small2.mp4", "project_video_cut.mp4", "test_video.mp4")
SPLITS = {"default": [], "1 core/drive": ["--set", "detector.workers=1", "--set", "detector.threads=1"]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--drives", nargs="+", help="video files (default: 4 clips of ../shared/data/videos/udacity)")
    p.add_argument("--workers", default="1,2", help="Ray CPU counts to run, comma separated (default 1,2)")
    p.add_argument("--max-frames", type=int, help="cut each drive to N frames")
    p.add_argument("--loop", type=int, help="play each drive N times (--loop of the single run): longer drives, "
                   "so the per-drive start-up weighs as it does on real drives of minutes")
    p.add_argument("--json", metavar="OUT.json", help="write the results here")
    args = p.parse_args(argv)
    if args.drives is None:
        folder = shared_data_dir() / "videos" / "udacity"
        args.drives = [folder / d for d in DRIVES]
    args.drives = [Path(d).resolve() for d in args.drives]
    missing = [str(d) for d in args.drives if not d.is_file()]
    if missing:
        p.error(f"{missing[0]} not found; pass --drives FILE... (or set DASHTRACK_SHARED_DATA)")
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers {args.workers!r}: expected numbers separated by commas, e.g. 1,2")
    return args


def sequential(drives: list[Path], out: Path, options: list[str]) -> dict:
    from pipeline import cli
    from pipeline.fleet_drive import STATS, drive_argv

    times, calls = {}, {}
    t0 = time.perf_counter()
    for d in drives:
        folder = out / d.stem
        folder.mkdir(parents=True)
        t = time.perf_counter()
        code = cli.main(drive_argv(d, folder, options, save_video=False))
        if code != 0:
            raise SystemExit(f"error: the single run on {d} failed (exit {code})")
        calls[folder.name] = time.perf_counter() - t            # with the model's load
        times[folder.name] = json.loads((folder / STATS).read_text())["wall_s"]   # the run, as the fleet reports it
    return {"wall_s": time.perf_counter() - t0, "drive_s": times, "call_s": calls}


def ray_fleet(drives: list[Path], out: Path, options: list[str], workers: int) -> dict:
    from pipeline import fleet

    t0 = time.perf_counter()
    code = fleet.main([*map(str, drives), "--out", str(out), "--workers", str(workers), "--", *options])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"error: the fleet with {workers} workers failed (exit {code})")
    meta = json.loads((out / "fleet.json").read_text())
    return {"wall_s": wall, "ray_startup_s": meta["ray_startup_s"], "task_cpus": meta["task_cpus"],
            "drive_s": {d["drive"]: d["wall_s"] for d in meta["drives"]}}


def table(rows: list[dict]) -> str:
    cols = [("split", "split"), ("engine", "engine"), ("wall s", "wall_s"), ("drives/min", "drives_per_min"),
            ("ideal s", "ideal_s"), ("x ideal", "x_ideal"), ("Ray start s", "ray_startup_s"),
            ("overhead s/drive", "overhead_per_drive_s")]
    text = [[h for h, _ in cols]] + [[("-" if r.get(k) is None else f"{r[k]:.2f}" if isinstance(r[k], float)
                                       else str(r[k])) for _, k in cols] for r in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(cols))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in text]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    base = ["--max-frames", str(args.max_frames)] if args.max_frames else []
    base += ["--loop", str(args.loop)] if args.loop else []
    n = len(args.drives)
    rows = []
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    try:
        for split, extra in SPLITS.items():
            options = [*base, *extra]
            seq = sequential(args.drives, work / f"seq_{len(rows)}", options)
            rows.append({"split": split, "engine": "sequential", "wall_s": seq["wall_s"],
                         "drives_per_min": 60 * n / seq["wall_s"], "drive_s": seq["drive_s"],
                         "call_s": seq["call_s"]})
            for w in args.workers:
                r = ray_fleet(args.drives, work / f"ray_{len(rows)}", options, w)
                at_once = max(1, int(w // r["task_cpus"]))
                ideal = seq["wall_s"] / min(at_once, n)
                rows.append({"split": split, "engine": f"ray w{w}", "wall_s": r["wall_s"],
                             "drives_per_min": 60 * n / r["wall_s"], "ideal_s": ideal,
                             "x_ideal": r["wall_s"] / ideal, "ray_startup_s": r["ray_startup_s"],
                             "overhead_per_drive_s": (r["wall_s"] - r["ray_startup_s"] - ideal) / n,
                             "task_cpus": r["task_cpus"], "drives_at_once": at_once, "drive_s": r["drive_s"]})
                print(table(rows), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"device": f"{cores}-core CPU ({platform.processor() or platform.machine()})",
              "drives": [str(d) for d in args.drives], "max_frames": args.max_frames, "loop": args.loop,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    print(table(rows))
    print(f"load average before {load_before[0]:.1f}, after {result['load_average_after'][0]:.1f} ({cores} cores)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
