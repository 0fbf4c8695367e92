"""Several sources at once: one stage chain, tracker and set of outputs per source,
one detector shared by all with batches made across the streams (``SharedDetector``).

    python run_stream.py --source a.mp4 b.mp4 camera0 --save-json out.jsonl
    # -> out_0.jsonl, out_1.jsonl, out_2.jsonl (one per source, in the order given)
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from .batching import SharedDetector
from .config import AppConfig
from .build import build_detector, detector_config
from .outputs import refuse_overwriting_inputs
from .runner import Runner, interrupt_reason, output_flags
from .stages import StageError


def per_source_path(path: str | None, index: int, count: int) -> str | None:
    """``out.mp4`` -> ``out_<index>.mp4`` when there is more than one source."""
    if path is None or count == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{index}{p.suffix}"))


def per_source_config(cfg: AppConfig, index: int, count: int, spec: str) -> AppConfig:
    out = cfg.output
    return dataclasses.replace(cfg, output=dataclasses.replace(
        out,
        save_video=per_source_path(out.save_video, index, count),
        save_json=per_source_path(out.save_json, index, count),
        save_mot=per_source_path(out.save_mot, index, count),
        stats_json=per_source_path(out.stats_json, index, count),
        report=per_source_path(out.report, index, count),
        window_name=out.window_name if count == 1 else f"{out.window_name} [{index}] {spec}",
    ))


class MultiRunner:
    def __init__(self, cfg: AppConfig, specs: Sequence[str], *, detector=None, max_batch: int | None = None,
                 log=sys.stderr):
        self.log = log
        for i in range(len(specs)):       # no stream's output may be any stream's input
            refuse_overwriting_inputs(output_flags(per_source_config(cfg, i, len(specs), specs[i])), specs)
        base = detector if detector is not None else build_detector(detector_config(cfg))
        self.shared = SharedDetector(base, max_batch=max_batch or max(len(specs), 1) * cfg.detector.batch)
        self.runners: list[Runner] = []
        try:
            for i, spec in enumerate(specs):
                self.runners.append(Runner(per_source_config(cfg, i, len(specs), spec), spec,
                                           detector=self.shared, log=log))
        except BaseException:
            for r in self.runners:       # close what was opened before the failing source
                r._close_outputs()
                r.source.close()
            self.shared.close()
            raise
        self.reports: list[dict] = []

    @property
    def interrupted(self) -> bool:
        return any(r.interrupted for r in self.runners)

    def run(self) -> list[dict]:
        """Run every stream to its end on the main thread; the reports in source order,
        or the first stream's error (after every stream was stopped and closed)."""
        started: list[Runner] = []
        try:
            for r in self.runners:
                r.start()
                started.append(r)
            active = list(self.runners)
            while active:
                for r in list(active):
                    if not r.step(wait_s=0.05 / len(active)):
                        active.remove(r)
                        # q in any window, or an error in any stream, ends the whole run; except a bad
                        # source (a capture error): the other streams run to their end, then it is reported.
                        failed = r.chain.error is not None
                        if failed and getattr(r.chain.error, "stage", None) == "capture":
                            continue
                        if failed or r.stop_reason == "closed by user":
                            for other in active:
                                other.stop_reason = f"stopped: {r.source.name} failed" if failed else r.stop_reason
                            active = []
                            break
        except KeyboardInterrupt as e:
            for r in self.runners:
                r.interrupted = True
                r.stop_reason = interrupt_reason(e)
        finally:
            errors: list[StageError] = []
            self.reports = []
            for r in started:
                try:
                    self.reports.append(r.finish())
                except StageError as e:
                    errors.append(e)
                    self.reports.append(r.report)
            self.shared.close()
        if errors:
            raise errors[0]
        return self.reports
