"""The run's outputs as sinks: one small protocol, and the list built from the config.

Every output (preview feed, video, JSONL, MOT, stats JSON, HTML report) is an ``Output``:

    open()                              before the first frame (a bad target fails here, before the run)
    write(frame, detections, drawn)     each frame, on the output thread, in frame order
    close(report)                       once, on every path (end, error, Ctrl-C), after the stage
                                        threads were joined, with the run's report (None when the
                                        run failed before it had one)

``drawn`` is the frame's annotated image, drawn on first use and shared by every output that
wants it. ``OUTPUT_TYPES`` lists the classes the runner builds from the config
(``from_run(run) -> Output | None``); a new output is one new class added there, and
``Runner(..., outputs=[...])`` takes extra sinks built by the caller. The runner never looks
inside an output.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from .config import AppConfig
from .outputs import JsonlWriter, MotWriter, OutputError, VideoWriter, probe_stats_json, write_stats_json
from dashtrack_core.records import Detections, Frame
from .report import ReportOutput
from .stats import Stats


@dataclass(frozen=True)
class RunInfo:
    """What an output may know about the run it belongs to."""

    cfg: AppConfig
    source: str                      # the source's name
    fps: float | None                # the source's rate, when known
    class_names: tuple[str, ...]
    stats: Stats                     # the run's live counters (read at close for distributions)
    show: bool                       # a preview window is open on the main thread
    to_main: Callable[[Any], None]   # hands an item to the main thread (the preview window)


class Drawn:
    """A frame's annotated image (boxes, trails), drawn once on first use."""

    def __init__(self, draw: Callable[[], np.ndarray]):
        self._draw = draw
        self._image: np.ndarray | None = None

    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = self._draw()
        return self._image


@runtime_checkable
class Output(Protocol):
    def open(self) -> None: ...

    def write(self, frame: Frame, detections: Detections, drawn: Drawn) -> None: ...

    def close(self, report: dict | None) -> None: ...


def produced_nothing(report: dict | None) -> bool:
    """A run that failed before any frame came out: its per-frame files are removed."""
    return report is not None and report.get("frames_out", 0) == 0 and report.get("stop_reason") == "error"


def _unlink(path: str) -> None:
    try:
        p = Path(path)
        if p.is_file():
            p.unlink()
    except OSError:
        pass


class PreviewFeed:
    """Hands each annotated frame to the main thread's window (``--show``)."""

    def __init__(self, to_main: Callable[[Any], None]):
        self._to_main = to_main

    @classmethod
    def from_run(cls, run: RunInfo) -> "PreviewFeed | None":
        return cls(run.to_main) if run.show else None

    def open(self) -> None:
        pass

    def write(self, frame: Frame, detections: Detections, drawn: Drawn) -> None:
        # Stamped here, as the last output of the frame: the output time of the frames shown.
        self._to_main((drawn.image(), frame.captured_at, time.monotonic()))

    def close(self, report: dict | None) -> None:
        pass


class VideoOutput:
    """``--save-video``: the annotated frames, H.264 at their timestamps."""

    def __init__(self, path: str, fps: float | None, cfg: AppConfig):
        self.path, self._fps, self._out = path, fps, cfg.output
        self._writer: VideoWriter | None = None

    @classmethod
    def from_run(cls, run: RunInfo) -> "VideoOutput | None":
        return cls(run.cfg.output.save_video, run.fps, run.cfg) if run.cfg.output.save_video else None

    def open(self) -> None:
        out = self._out
        self._writer = VideoWriter(self.path, fps_hint=self._fps, codec=out.video_codec, preset=out.video_preset,
                                   crf=out.video_crf, threads=out.video_threads, tune=out.video_tune,
                                   convert=out.video_convert)

    def write(self, frame: Frame, detections: Detections, drawn: Drawn) -> None:
        self._writer.write(drawn.image(), frame.timestamp)

    def close(self, report: dict | None) -> None:
        if self._writer is not None:
            self._writer.close()
            if produced_nothing(report):
                _unlink(self.path)


class _LineOutput:
    """A per-frame text writer (``write(frame, detections)``, ``close()``) as an output."""

    path: str

    def _make(self):
        raise NotImplementedError

    def open(self) -> None:
        self._writer = self._make()

    def write(self, frame: Frame, detections: Detections, drawn: Drawn) -> None:
        self._writer.write(frame, detections)

    def close(self, report: dict | None) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
            if produced_nothing(report):
                _unlink(self.path)


class JsonlOutput(_LineOutput):
    """``--save-json``: one JSON line per frame (``JsonlWriter``)."""

    def __init__(self, path: str, class_names):
        self.path, self._names = path, class_names

    @classmethod
    def from_run(cls, run: RunInfo) -> "JsonlOutput | None":
        return cls(run.cfg.output.save_json, run.class_names) if run.cfg.output.save_json else None

    def _make(self):
        return JsonlWriter(self.path, self._names)


class MotOutput(_LineOutput):
    """``--save-mot``: MOTChallenge rows of the tracked boxes (``MotWriter``)."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def from_run(cls, run: RunInfo) -> "MotOutput | None":
        return cls(run.cfg.output.save_mot) if run.cfg.output.save_mot else None

    def _make(self):
        return MotWriter(self.path)


class StatsJsonOutput:
    """``--stats-json``: the end-of-run report as JSON; its target is checked at open."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def from_run(cls, run: RunInfo) -> "StatsJsonOutput | None":
        return cls(run.cfg.output.stats_json) if run.cfg.output.stats_json else None

    def open(self) -> None:
        probe_stats_json(self.path)

    def write(self, frame: Frame, detections: Detections, drawn: Drawn) -> None:
        pass

    def close(self, report: dict | None) -> None:
        if report is not None:
            write_stats_json(self.path, json.dumps(report, indent=2) + "\n")


# The outputs the runner builds from the config, in open and write order. Those written at the
# end only probe their target at open and come first, so a refused target leaves no file behind;
# the preview feed comes last: it stamps the output time of the frames the window shows.
OUTPUT_TYPES: tuple[type, ...] = (StatsJsonOutput, ReportOutput, VideoOutput, JsonlOutput, MotOutput, PreviewFeed)


def build_outputs(run: RunInfo, extra: list[Output] | tuple[Output, ...] = ()) -> list[Output]:
    """The configured outputs, then ``extra`` (before the preview feed); not opened yet."""
    built = [o for kind in OUTPUT_TYPES if (o := kind.from_run(run)) is not None]
    feed = [o for o in built if isinstance(o, PreviewFeed)]
    return [o for o in built if not isinstance(o, PreviewFeed)] + list(extra) + feed


def check_output(obj: Any) -> Output:
    """A caller's sink: refused at once when it lacks a method of the protocol."""
    if not isinstance(obj, Output):
        raise OutputError(f"output {obj!r}: needs open(), write(frame, detections, drawn) and close(report)")
    return obj
