"""One drive of a fleet: its folder, the single-run command line, the run, its summary and completion marker.

``run_drive`` is the body of the fleet's Ray task and imports no Ray: it runs the same command-line
entry point as ``python run_stream.py`` (headless) with the drive's outputs in ``DIR/<drive>/``,
so a drive's files are those of a single run. The marker (``done.json``: the input's path, size and
mtime, and the drive's summary) is written last, atomically; a drive without a valid marker is
re-run by the next fleet run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import cli

JSONL, MOT, STATS, VIDEO, LOG, MARKER = "tracks.jsonl", "tracks_mot.txt", "stats.json", "video.mp4", "run.log", "done.json"
REPORT = "report.html"
# Single-run flags the fleet sets per drive: refused among the options passed through after ``--``.
FLEET_FLAGS = ("--source", "--save-json", "--save-mot", "--stats-json", "--save-video", "--show", "--no-show",
               "--report")


def drive_argv(source: Path, folder: Path, options: list[str], save_video: bool) -> list[str]:
    """The single-run arguments of one drive: the fleet's pass-through options, then its outputs."""
    argv = [*options, "--source", str(source), "--no-show", "--quiet",
            "--save-json", str(folder / JSONL), "--save-mot", str(folder / MOT), "--stats-json", str(folder / STATS),
            "--report", str(folder / REPORT)]
    if save_video:
        argv += ["--save-video", str(folder / VIDEO)]
    return argv


@dataclass(frozen=True)
class DriveRecord:
    """One row of fleet.csv / fleet.json. Tracking columns are None without a tracker, TTC columns None
    when the tracker gives no time-to-contact."""

    drive: str
    status: str                      # done | failed | interrupted
    resumed: bool                    # done by an earlier fleet run (skipped this time)
    input: str
    frames: int | None = None
    duration_s: float | None = None  # first to last frame timestamp
    fps: float | None = None         # processing rate of the drive's run
    wall_s: float | None = None
    dropped: int | None = None
    tracks: int | None = None        # track ids born
    lifetime_median_s: float | None = None
    coasted_share: float | None = None
    id_churn_per_min: float | None = None
    relinks: int | None = None
    recoveries: int | None = None
    ttc_events: int | None = None    # tracks in the ego path with time-to-contact under output.ttc_warn_s
    min_ttc_s: float | None = None   # the smallest in-path time-to-contact
    exit_code: int | None = None
    error: str = ""
    report: str = ""                 # the drive's report.html relative to the fleet folder, when present

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict:
        return asdict(self)


def input_identity(path: Path) -> dict:
    st = path.stat()
    return {"input": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_marker(folder: Path, path: Path) -> dict | None:
    """The summary of a completed drive whose input is unchanged (same path, size and mtime), else None."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        same = {k: marker[k] for k in ("input", "size", "mtime_ns")} == input_identity(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return marker.get("summary") if same and isinstance(marker.get("summary"), dict) else None


def clear_marker(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / MARKER).unlink()


def write_marker(folder: Path, identity: dict, summary: dict) -> None:
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps({**identity, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "summary": summary}, indent=2) + "\n")
    os.replace(tmp, folder / MARKER)


def _finite(x) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def summarize(folder: Path, ttc_warn_s: float) -> dict:
    """Frames, duration, rate, drops and tracking health from the drive's stats JSON; duration and
    time-to-contact events from its JSONL (a track counts once, the first time it is in the ego path
    with a time-to-contact under ``ttc_warn_s``)."""
    report = json.loads((folder / STATS).read_text())
    health = report.get("tracking") or {}
    first = last = None
    ttc_seen, events, min_ttc = False, set(), None
    with open(folder / JSONL) as f:
        for line in f:
            rec = json.loads(line)
            first = rec["timestamp"] if first is None else first
            last = rec["timestamp"]
            for box in rec["boxes"]:
                if "ttc_s" not in box:
                    continue
                ttc_seen = True
                ttc = _finite(box["ttc_s"])
                if ttc is not None and box.get("in_path"):
                    min_ttc = ttc if min_ttc is None else min(min_ttc, ttc)
                    if ttc < ttc_warn_s and box.get("track_id") is not None:
                        events.add(box["track_id"])
    return {
        "frames": report["frames_out"],
        "duration_s": round(last - first, 3) if first is not None else 0.0,
        "fps": report["fps"],
        "wall_s": report["wall_s"],
        "dropped": sum(report["dropped"].values()),
        "tracks": health.get("tracks_born"),
        "lifetime_median_s": health.get("lifetime_median_s"),
        "coasted_share": health.get("coasted_share"),
        "id_churn_per_min": health.get("id_churn_per_min"),
        "relinks": health.get("relinks"),
        "recoveries": health.get("recoveries"),
        "ttc_events": len(events) if ttc_seen else None,
        "min_ttc_s": round(min_ttc, 3) if min_ttc is not None else None,
    }


def _error_line(log_path: Path, code: int) -> str:
    """The run's own one-line error (its last ``error:`` line), else its exit code."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        lines = []
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors[-1][len("error:"):].strip() if errors else f"the run exited with code {code} (see {log_path.name})"


@contextlib.contextmanager
def _output_to(path: Path):
    """This process's stdout and stderr (file descriptors 1 and 2: Python's writes, the decoder's too) go to
    ``path`` for the duration; a Ray worker runs one task at a time."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def run_drive(name: str, source: str, folder: str, argv: list[str], ttc_warn_s: float) -> dict:
    """Run one drive as ``python run_stream.py ARGV`` would, its stderr in ``run.log``; a DriveRecord as a dict.
    Never raises for the drive's own failure: it is the record's status and error."""
    path, out = Path(source), Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    clear_marker(out)
    base = {"drive": name, "input": str(path), "resumed": False}
    try:
        identity = input_identity(path)
    except OSError as e:
        return DriveRecord(**base, status="failed", error=f"{path}: {e.strerror or e}").as_dict()
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        with _output_to(out / LOG):
            code = cli.main(argv)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:            # a bug, not the drive's data: still one line, the others go on
        return DriveRecord(**base, status="failed", exit_code=1,
                           error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}").as_dict()
    finally:
        if main_thread and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)     # the single run installs its own handler
    if code in (130, 143):
        return DriveRecord(**base, status="interrupted", exit_code=code, error="interrupted").as_dict()
    if code != 0:
        return DriveRecord(**base, status="failed", exit_code=code, error=_error_line(out / LOG, code)).as_dict()
    try:
        summary = summarize(out, ttc_warn_s)
    except (OSError, ValueError, KeyError) as e:
        return DriveRecord(**base, status="failed", exit_code=0, error=f"summary: {e}").as_dict()
    summary["exit_code"] = 0
    write_marker(out, identity, summary)          # last: the drive is complete
    return DriveRecord(**base, status="done", **summary).as_dict()


def resumed_record(name: str, path: Path, summary: dict) -> dict:
    known = set(DriveRecord.columns())
    return DriveRecord(drive=name, input=str(path), status="done", resumed=True,
                       **{k: v for k, v in summary.items() if k in known and k not in ("drive", "input")}).as_dict()
