"""The fleet on Ray: start or join Ray quietly, one task per drive, a progress bar, Ctrl-C stops cleanly.

Imported only by ``pipeline.fleet`` when there are drives to run: nothing else imports Ray.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

from .onnx_detector import cpu_split
from .fleet_drive import DriveRecord, clear_marker, drive_argv, run_drive
from .fleet_inputs import Drive

# After Ctrl-C: how long the running drives get to stop and close their files.
STOP_GRACE_S = 20.0


def import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("the fleet runs on Ray, which is not installed: pip install 'dashtrack[fleet]'") from None
    return ray


def start_ray(ray, workers: int | None, address: str | None, verbose: bool) -> float:
    """Start a local Ray in this process (``workers`` CPUs, default all) or join ``address``; seconds taken."""
    t0 = time.perf_counter()
    quiet = {} if verbose else {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, configure_logging=True, **quiet)
        else:
            ray.init(address=address, configure_logging=True, **quiet)
    except Exception as e:             # ConnectionError, a bad address, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"join the Ray cluster at {address}" if address else "start a local Ray"
        raise RuntimeError(f"could not {where}: {first}") from None
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    return time.perf_counter() - t0


def task_cpus(cfg, available: float) -> float:
    """CPUs one drive's run keeps busy: its detector's inference workers x threads (the auto split of this
    machine when 0), at most what the cluster has."""
    workers, threads = cpu_split(cfg.detector)
    return float(max(1, min(workers * threads, int(available) or 1)))


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".rstrip(": ")


def run_fleet(drives: list[Drive], out: Path, options: list[str], args, cfg) -> tuple[list[dict], str, dict]:
    """Run ``drives`` on Ray; (their records, "" or what stopped the fleet: "interrupted" (Ctrl-C) or
    "terminated" (SIGTERM), and facts for fleet.json: Ray's start-up seconds, CPUs per drive)."""
    ray = import_ray()
    on_term = signal.getsignal(signal.SIGTERM)
    startup_s = start_ray(ray, args.workers, args.address, args.ray_logs)
    on_main = threading.current_thread() is threading.main_thread()
    try:
        if on_main and callable(on_term):
            signal.signal(signal.SIGTERM, on_term)   # ray.init put its own (it aborts the process) in place
        return _run(ray, drives, out, options, args, cfg, startup_s)
    finally:
        ray.shutdown()


def _run(ray, drives, out, options, args, cfg, startup_s):
    from tqdm import tqdm

    total = ray.cluster_resources().get("CPU", 1.0)
    cpus = task_cpus(cfg, total)
    gpus = args.task_gpus if args.task_gpus is not None else (1.0 if str(cfg.detector.device).startswith("cuda") else 0.0)
    have_gpus = ray.cluster_resources().get("GPU", 0.0)
    if gpus > have_gpus:                 # the tasks would wait forever
        raise RuntimeError(f"each drive asks for {gpus:g} GPU (--task-gpus, or the detector's device "
                           f"{cfg.detector.device}) and the Ray cluster has {have_gpus:g}; "
                           "use --task-gpus 0 or --set detector.device=cpu")
    task = ray.remote(run_drive).options(num_cpus=cpus, num_gpus=gpus, max_retries=0, retry_exceptions=False)
    pending = {}
    for d in drives:
        clear_marker(out / d.name)
        argv = drive_argv(d.path, out / d.name, options, args.save_video)
        ref = task.remote(d.name, str(d.path), str((out / d.name).resolve()), argv, cfg.output.ttc_warn_s)
        pending[ref] = d
    records: list[dict] = []
    bar = tqdm(total=len(drives), unit="drive", file=sys.stderr, dynamic_ncols=True, disable=None,
               desc=f"fleet ({cpus:g} CPU/drive, Ray up in {startup_s:.1f} s)")
    t0, frames = time.perf_counter(), 0
    interrupted = ""
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                rec = _collect(ray, ref, pending.pop(ref))
                records.append(rec)
                frames += rec.get("frames") or 0
                if rec["status"] == "failed" and not bar.disable:   # live; the summary repeats it at the end
                    bar.write(f"failed: {rec['drive']}: {rec['error']}", file=sys.stderr)
                bar.update(1)
                elapsed = max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"{60 * len(records) / elapsed:.1f} drives/min, {frames / elapsed:.0f} frames/s")
    except KeyboardInterrupt as e:
        interrupted = "terminated" if type(e).__name__ == "Terminated" else "interrupted"
        bar.write(f"{interrupted}: stopping the running drives (finished drives are kept)", file=sys.stderr)
        records += _stop(ray, pending)
    finally:
        bar.close()
    info = {"ray_startup_s": round(startup_s, 3), "ray_cpus": total, "task_cpus": cpus, "task_gpus": gpus,
            "ray_address": args.address or "local"}
    return records, interrupted, info


def _collect(ray, ref, drive: Drive) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return DriveRecord(drive.name, "interrupted", False, str(drive.path), error="interrupted").as_dict()
    except ray.exceptions.RayError as e:       # the worker died (a decoder crash, out of memory, ...)
        return DriveRecord(drive.name, "failed", False, str(drive.path), error=_one_line(e)).as_dict()


def _stop(ray, pending: dict) -> list[dict]:
    """Cancel every drive not finished: queued ones never start, running ones get KeyboardInterrupt and
    stop as a single run does on Ctrl-C (files closed, no marker); a second Ctrl-C stops waiting."""
    for ref in pending:
        ray.cancel(ref)
    records = []
    try:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_S)
    except KeyboardInterrupt:
        ready = []
    for ref, d in pending.items():
        rec = _collect(ray, ref, d) if ref in ready else None
        if rec is None or rec["status"] == "failed":
            rec = DriveRecord(d.name, "interrupted", False, str(d.path), error="interrupted").as_dict()
        records.append(rec)
    return records
