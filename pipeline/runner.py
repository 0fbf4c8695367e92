"""Assemble and run the stage chain for one source.

    capture -> preprocess -> inference -> decode -> track -> output -> main thread (preview, progress)

``Runner.run()`` returns the stats report; any failure surfaces here as one
exception naming its stage (``StageError``), after every thread was stopped and
joined and every writer closed.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from .config import AppConfig
from .crops import build_crops
from dashtrack_core.detector import Detector
from .detector_stages import batched_stages, crop_stages, frame_stages
from .display import Preview, display_available
from .build import build_detector, build_tracker, detector_config
from .drawing import draw_detections, draw_hud, track_color
from .outputs import OutputError, refuse_overwriting_inputs
from dashtrack_core.records import Packet
from .sources import Source, open_source
from .sinks import Drawn, Output, RunInfo, build_outputs, check_output
from .stages import END, Chain, StageError, StageSpec
from .stats import Stats
from .trails import Trails
from trackers.health import TrackHealth


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised on the main thread by run_stream's handler: stops the run as Ctrl-C does."""


def interrupt_reason(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"


def output_flags(cfg: AppConfig) -> list[tuple[str, str | None]]:
    return cfg.output.files()


class Runner:
    def __init__(self, cfg: AppConfig, source: str | Source, *, detector: Detector | None = None,
                 tracker: Any = None, outputs: tuple[Output, ...] | list[Output] = (), log=sys.stderr):
        """``outputs``: sinks of the caller's (``pipeline.sinks.Output``), written after the configured ones."""
        self.cfg = cfg
        self.log = log
        self.stats = Stats()
        if isinstance(source, str):
            refuse_overwriting_inputs(output_flags(cfg), [source])
        self.source = open_source(source, cfg.source) if isinstance(source, str) else source
        self.outputs: list[Output] = []
        self.preview: Preview | None = None
        self.interrupted = False
        self.stop_reason = "end of input"
        self.chain: Chain | None = None
        self.progress = None
        try:
            self.detector = detector if detector is not None else build_detector(detector_config(cfg))
            self.tracker = tracker if tracker is not None else build_tracker(cfg, self.detector.class_names)
            self.show = self._want_window()
            self._open_outputs([check_output(o) for o in outputs])
        except BaseException:
            self._close_outputs()
            self.source.close()
            raise
        policy = cfg.pipeline.drop_policy
        if policy == "auto":
            policy = "drop_oldest" if self.source.live else "block"
        self.policy = policy
        # Frames of a file are batched; a live source runs frame by frame (latency).
        self.batch_size = cfg.detector.batch if policy == "block" else 1
        self.health = None
        if self.tracker is not None:
            tcfg = getattr(self.tracker, "config", None)
            self.health = TrackHealth(end_after_s=getattr(tcfg, "max_coast_seconds", 1.5))
        self.trails = Trails(cfg.output.trail_seconds) if cfg.output.trails else None
        self.stages = self._build_stages()
        self.source.on_warning = lambda message: print(f"warning: {message}", file=self.log, flush=True)

    # -- setup ---------------------------------------------------------------------
    def _want_window(self) -> bool:
        show = self.cfg.output.show
        if show == "no":
            return False
        if not display_available():
            if show == "yes":
                print("note: no display found; running headless", file=self.log)
            return False
        return True

    def _open_outputs(self, extra: list[Output]) -> None:
        run = RunInfo(cfg=self.cfg, source=self.source.name, fps=self.source.fps,
                      class_names=tuple(self.detector.class_names), stats=self.stats, show=self.show,
                      to_main=self._to_main)
        for o in build_outputs(run, extra):
            o.open()
            self.outputs.append(o)     # opened ones only: closed on every path

    def _to_main(self, item: Any) -> None:
        self.chain.output.put(item)

    def _close_outputs(self, report: dict | None = None) -> list[Exception]:
        """Close every output once, in the reverse of their opening (the per-frame files before the
        report's slower rendering), the others even when one fails or Ctrl-C comes; their errors."""
        errors: list[Exception] = []
        interrupt: BaseException | None = None
        outputs, self.outputs = self.outputs, []
        for o in reversed(outputs):
            try:
                o.close(report)
            except Exception as e:
                errors.append(e if isinstance(e, OutputError) else StageError("output", e))
            except KeyboardInterrupt as e:
                interrupt = interrupt or e
        if interrupt is not None:
            raise interrupt
        return errors

    def _build_stages(self) -> list[StageSpec]:
        det = self.detector
        crops = build_crops(self.cfg.detector, det) if self.cfg.detector.crops else None
        self.planner = crops[1] if crops else None
        if crops is not None:
            stages = crop_stages(*crops, self.stats, tracked=self.tracker is not None)
        elif self.batch_size > 1:
            stages = batched_stages(det, self.batch_size)
        else:
            stages = frame_stages(det)
        planner = self.planner
        if self.tracker is not None:
            tracker = self.tracker
            geometry: list = [None]

            health = self.health

            def track(p: Packet) -> Packet:
                shape = p.frame.image.shape[:2]
                if geometry[0] is not None and shape != geometry[0]:
                    # The source changed size: boxes of the old geometry mean nothing in the new one.
                    tracker.reset(keep_ids=True)       # ids stay unique over the whole run
                geometry[0] = shape
                tracked = tracker.update(p.detections, p.frame.timestamp, p.frame.image)
                health.update(tracked, p.frame.timestamp)
                if planner is not None:
                    planner.update(p.frame.index, tracked, p.detections)
                return dataclasses.replace(p, detections=tracked)

            stages.append(StageSpec("track", track))
        stages.append(StageSpec("output", self._output))
        return stages

    def _output(self, p: Packet) -> None:
        frame, dets = p.frame, p.detections
        if self.trails is not None:
            self.trails.update(dets, frame.timestamp)
        drawn = Drawn(lambda: self._annotate(frame, dets))
        for o in self.outputs:
            o.write(frame, dets, drawn)
        self.stats.output(frame.captured_at)

    def _annotate(self, frame, dets):
        annotated = frame.image.copy()
        if self.trails is not None:
            self.trails.draw(annotated, track_color)
        return draw_detections(annotated, dets, self.detector.class_names, self.cfg.output.ttc_warn_s)

    # -- run -----------------------------------------------------------------------
    def run(self) -> dict:
        """Run to the end on the calling (main) thread; returns the report or raises the stage's error."""
        self.start()
        try:
            while self.step():
                pass
        except KeyboardInterrupt as e:
            self.interrupted = True
            self.stop_reason = interrupt_reason(e)
        return self.finish()

    def start(self) -> None:
        live = self.policy == "drop_oldest"
        pcfg = self.cfg.pipeline
        chain = Chain(
            _SourceIter((Packet(f) for f in self.source), self.source), self.stages, self.stats,
            capture_policy=self.policy,
            capture_queue=pcfg.live_queue_size if live else pcfg.queue_size,
            queue_size=1 if live else pcfg.queue_size,
            output_queue=2, output_policy="drop_oldest",   # preview images only; the window may skip some
        )
        self.chain = chain
        if hasattr(self.source, "stop"):           # a reconnecting source waits on the chain's stop
            self.source.stop = chain.stop_event
        self.progress = self._progress()
        self._shown_at: list[float] = []
        self._paused = False
        self._last_image = None
        self._hud_lines: list[str] = []
        try:
            if self.show:
                pv = self.cfg.preview
                self.preview = Preview(self.window_name, title=self.window_title, max_size=pv.max_size,
                                       screen_fraction=pv.screen_fraction)
                self.stats.display_note = None
            chain.start()
        except BaseException:
            self.finish()
            raise

    @property
    def window_name(self) -> str:
        return self.cfg.output.window_name

    @property
    def window_title(self) -> str:
        """The window name, naming the source (a camera by its device name too)."""
        label = self.source.description or self.source.name
        return self.window_name if label in self.window_name else f"{self.window_name} - {label}"

    def step(self, wait_s: float = 0.05) -> bool:
        """One turn of the main thread: show the newest image, read keys, update progress.
        Returns False once the run is over (end, error or the user quit)."""
        chain = self.chain
        if self.preview is None:
            # Not stop_event.wait(): Ctrl-C raises KeyboardInterrupt wherever the main thread is, and
            # raised just after the Event's internal lock was taken it leaks that lock, so the stop
            # path's stop_event.set() would block forever. A plain sleep holds no lock.
            time.sleep(wait_s)
            self._update_progress()
            return chain.alive and not chain.stop_event.is_set()
        item = chain.output.get_nowait()
        if item is END:
            return False
        if item is None:
            if chain.stop_event.is_set() or (not chain.alive and len(chain.output) == 0):
                return False
            action = self.preview.show(None, max(1, int(wait_s * 200)))
        else:
            image, captured_at, output_at = item
            now = time.monotonic()
            self._shown_at = [t for t in self._shown_at if now - t < 1.0] + [now]
            self._hud_lines = self._hud(len(self._shown_at), self._paused)
            self._last_image = draw_hud(image, self._hud_lines, self.preview.scale_for(image))
            action = self.preview.show(self._last_image)
            self.stats.displayed(captured_at, output_at, time.monotonic())   # imshow + event loop: on screen
        if action == "quit":
            self.stop_reason = "closed by user"
            return False
        if action == "pause":
            self._paused = not self._paused
            (chain.pause.set if self._paused else chain.pause.clear)()
            if self._paused and self._last_image is not None:   # the same lines again, PAUSED below them
                lines = [line for line in self._hud_lines if not line.startswith("PAUSED")] + ["PAUSED (space resumes)"]
                self.preview.show(draw_hud(self._last_image, lines, self.preview.scale_for(self._last_image)))
        self._update_progress()
        return True

    def finish(self) -> dict:
        """Stop and join every thread, close writers and the window; the report, or the stage's error."""
        chain = self.chain
        pcfg = self.cfg.pipeline
        chain.stop()
        stuck = chain.join(pcfg.join_timeout_s)
        self.stats.finish()
        try:
            report = self._report(chain)
            self.report = report
            errors = self._close_outputs(report)
        finally:
            if self.preview is not None:
                self.preview.close()
                self.preview = None
            if self.progress is not None:
                self.progress.close()
                self.progress = None
        if stuck:
            print(f"warning: threads still running after {pcfg.join_timeout_s:.0f} s: {', '.join(stuck)}", file=self.log)
        if chain.error is not None:
            for e in errors:                  # the run's own error is the one to report
                print(f"warning: {e}", file=self.log)
            raise chain.error
        if errors:
            raise errors[0]
        return report

    def _report(self, chain: Chain) -> dict:
        in_flight = self.stats.frames_in - self.stats.frames_out - self.stats.dropped
        if in_flight > 0:                 # read but never output: stopped inside the chain (quit, error)
            self.stats.drop("in flight at stop", in_flight)
        report = self.stats.report()
        report["stop_reason"] = "error" if chain.error else self.stop_reason
        report["source"] = self.source.name
        report["drop_policy"] = self.policy
        report["gaps"] = list(getattr(self.source, "gaps", []))
        waited = sum(g["seconds"] for g in report["gaps"])
        if waited:                        # the FPS of the frames' own time, not of the reconnect waits
            report["reconnect_wait_s"] = round(waited, 3)
            report["fps"] = round(report["frames_out"] / max(report["wall_s"] - waited, 1e-3), 2)
        report["warnings"] = list(getattr(self.source, "warnings", []))
        if self.health is not None:
            report["tracking"] = self.health.report(getattr(self.tracker, "stats", None))
        return report

    def _progress(self):
        if self.source.live or not self.cfg.output.progress:
            return None
        from tqdm import tqdm

        total = self.source.frame_count_hint
        return tqdm(total=total, unit="frame", file=self.log, dynamic_ncols=True, leave=False,
                    desc=Path(self.source.name).name, disable=not getattr(self.log, "isatty", lambda: False)())

    def _update_progress(self) -> None:
        if self.progress is not None:
            self.progress.n = self.stats.frames_out
            if self.progress.total is not None and self.progress.n > self.progress.total:
                self.progress.total = self.progress.n   # container counts can be wrong
            self.progress.refresh()

    def _hud(self, fps: int, paused: bool) -> list[str]:
        lat = self.stats.recent_latency_ms()
        shown = self.stats.recent_percentiles_ms("display_latency")
        if lat is None:
            lines = [f"{fps} FPS"]
        elif shown is None:
            lines = [f"{fps} FPS  latency {lat:.0f} ms  dropped {self.stats.dropped}"]
        else:   # capture -> on screen (what the driver sees) over the last 100 frames shown, and capture -> output
            lines = [f"{fps} FPS  latency p50 {shown[0]:.0f} p99 {shown[1]:.0f} ms (output {lat:.0f})  "
                     f"dropped {self.stats.dropped}"]
        if self.cfg.output.hud_health and self.health is not None:
            h = self.health.report(getattr(self.tracker, "stats", None))
            lines.append(f"tracks {h['born_per_min']:.0f}/min  churn {h['id_churn_per_min']:.0f}/min  "
                         f"coasted {100 * h['coasted_share']:.0f}%")
        if paused:
            lines.append("PAUSED (space resumes)")
        return lines


class _SourceIter:
    """Iterates the packets and closes the source when the capture thread ends."""

    def __init__(self, packets, source: Source):
        self._packets, self._source = packets, source

    def __iter__(self):
        return iter(self._packets)

    def close(self) -> None:
        self._source.close()
