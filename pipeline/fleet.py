"""Process a fleet of recorded drives on Ray: one Ray task per drive, a summary over all of them.

    dashtrack fleet drives/ 'more/**/*.mp4' one.mp4 --out fleet_out [--workers N] [--address auto|ray://H:P]
                    [--force] [--save-video] [-- SINGLE-RUN OPTIONS, e.g. --model lite --max-frames 300]
    python run_stream.py fleet ...      python -m pipeline.fleet ...

Each drive runs the same headless single run as ``python run_stream.py --source DRIVE --no-show``
(options after ``--`` go to every drive's run) and writes ``DIR/<drive>/``: tracks.jsonl,
tracks_mot.txt, stats.json, report.html (plots: pipeline/report.py), run.log (its stderr), video.mp4 with --save-video, and done.json last.
``DIR/fleet.csv``, ``DIR/fleet.json`` and ``DIR/index.html`` summarise the drives. A re-run skips
drives whose done.json matches the input's size and mtime (``--force`` re-runs them); a failing drive
is recorded with its one-line error and the others finish; Ctrl-C stops cleanly, keeping finished drives.
Exit code: 0 all drives done, 1 a drive failed, 2 bad arguments or inputs, 130 Ctrl-C, 143 SIGTERM.

Ray (``pip install 'dashtrack[fleet]'``) is imported here only when drives are to run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

from dashtrack_core.configtools import ConfigError

from .build import DetectorError, build_detector
from . import cli
from .fleet_drive import FLEET_FLAGS, DriveRecord, drive_argv, read_marker, resumed_record
from .fleet_inputs import Drive, FleetInputError, discover, drive_names
from .fleet_summary import write_summary
from .runner import Terminated


class FleetUsageError(ValueError):
    """A bad fleet argument: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):          # one line, not argparse's usage block
        raise FleetUsageError(f"{message} (see dashtrack fleet --help)")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The fleet's own arguments, and the single-run options given after ``--``."""
    if "--" in argv:
        cut = argv.index("--")
        argv, options = argv[:cut], argv[cut + 1:]
    else:
        options = []
    p = _Parser(prog="dashtrack fleet", description=__doc__, allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (searched recursively) or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="fleet folder: DIR/<drive>/, fleet.csv, fleet.json, index.html")
    p.add_argument("--workers", metavar="N", help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--address", metavar="ADDR", help="join a running Ray cluster: auto or ray://HOST:PORT "
                                                     "(dashtrack must be installed on its nodes)")
    p.add_argument("--force", action="store_true", help="re-run drives already completed")
    p.add_argument("--save-video", action="store_true", help="write DIR/<drive>/video.mp4 too")
    p.add_argument("--task-gpus", type=float, default=None, metavar="F",
                   help="GPUs reserved per drive (default: 1 when the detector's device is cuda, else 0)")
    p.add_argument("--ray-logs", action="store_true", help="show Ray's own logs and its workers' output")
    args = p.parse_args(argv)
    args.workers = _workers(args.workers, args.address)
    for opt in options:
        if opt.split("=", 1)[0] in FLEET_FLAGS:
            raise FleetUsageError(f"{opt.split('=', 1)[0]} after --: the fleet sets it for every drive "
                                  "(--save-video: use the fleet's own flag)")
    if args.task_gpus is not None and not 0 <= args.task_gpus <= 64:
        raise FleetUsageError(f"--task-gpus {args.task_gpus:g}: expected a number of GPUs from 0 to 64")
    return args, options


def _workers(value: str | None, address: str | None) -> int | None:
    if value is None:
        return None
    if address is not None:
        raise FleetUsageError("--workers sizes the local Ray; a cluster joined with --address brings its own CPUs")
    cores = os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 4 * cores:
        raise FleetUsageError(f"--workers {value!r}: expected a whole number of CPUs from 1 to {4 * cores} "
                              f"(4 per core, {cores} cores here)")
    return n


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FleetUsageError(f"--out {out}: is a file; give a folder (created when absent)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FleetUsageError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise FleetUsageError(f"--out {out}: the folder is not writable")


def _probe_config(drives: list[Drive], out: Path, options: list[str], save_video: bool):
    """The single-run config of the first drive, its detector built once: bad pass-through options or a
    model that does not load stop here, before Ray starts."""

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):     # argparse's usage block: only its error line is kept
            args = cli.parse_args(drive_argv(drives[0].path, out / drives[0].name, options, save_video))
        cfg = cli.build_config(args)
        build_detector(cfg.detector)
        return cfg
    except SystemExit:
        line = (said.getvalue().strip().splitlines() or ["not accepted"])[-1]
        raise FleetUsageError(f"options after --: {line.partition('error: ')[2] or line}") from None
    except (ConfigError, DetectorError) as e:
        raise FleetUsageError(f"options after --: {e}") from None


_signals: list[int] = []     # SIGTERM seen by this process's fleet (Ray may re-raise it as a plain KeyboardInterrupt)


def _sigterm(signum, frame):
    _signals.append(signum)
    raise Terminated


def main(argv: list[str]) -> int:
    started = time.time()
    try:
        args, options = parse_args(list(argv))
        out = Path(args.out)
        drives = drive_names(discover(args.inputs, exclude=out))
        cfg = _probe_config(drives, out, options, args.save_video)
        _check_out(out)
    except (FleetUsageError, FleetInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records, todo = [], []
    for d in drives:
        summary = None if args.force else read_marker(out / d.name, d.path)
        if summary is not None:
            records.append(resumed_record(d.name, d.path, summary))
        else:
            todo.append(d)
    interrupted, ray_info = "", {}
    if todo:
        from .fleet_ray import run_fleet      # Ray: only now

        _signals.clear()
        on_main = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _sigterm) if on_main else None   # SIGTERM stops as Ctrl-C does
        try:
            ran, interrupted, ray_info = run_fleet(todo, out, options, args, cfg)
        except RuntimeError as e:             # Ray could not start or join the cluster
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:        # while Ray was starting: no drive ran
            interrupted = "terminated" if isinstance(e, Terminated) else "interrupted"
            ran = [DriveRecord(d.name, "interrupted", False, str(d.path), error=interrupted).as_dict() for d in todo]
        finally:
            if on_main:
                signal.signal(signal.SIGTERM, old_term)
        records += ran
        if interrupted and _signals:
            interrupted = "terminated"
    meta = {"started": started, "finished": time.time(), "out": str(out), "inputs": list(args.inputs),
            "options": options, "drives_total": len(drives), "skipped": len(drives) - len(todo),
            "interrupted": interrupted or None, **ray_info}
    paths = write_summary(out, records, meta)
    failed = [r for r in records if r["status"] == "failed"]
    done = sum(r["status"] == "done" for r in records)
    stopped = sum(r["status"] == "interrupted" for r in records)
    elapsed = time.time() - started
    print(f"fleet: {done} done ({len(drives) - len(todo)} from an earlier run), {len(failed)} failed"
          + (f", {stopped} interrupted" if stopped else "")
          + f" in {elapsed:.1f} s; {', '.join(str(p) for p in paths)}", file=sys.stderr)
    for r in failed:
        print(f"failed: {r['drive']}: {r['error']}", file=sys.stderr)
    if interrupted:
        return 143 if interrupted == "terminated" else 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
