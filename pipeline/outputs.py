"""Outputs: the annotated video (PyAV, H.264), JSON lines and MOTChallenge files.

Every writer is safe to close twice and flushes what it has on close, so a run
stopped by an error or Ctrl-C leaves valid files: the mp4 is fragmented, with a
keyframe and a fragment about every second, each written out at once (playable up
to about a second before the process died, even by ``kill -9``); the JSONL and MOT
files hold only whole lines (a write that does not fit, on a full disk, is cut back).
"""
from __future__ import annotations

import json
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np

from dashtrack_core.configtools import ConfigError
from dashtrack_core.records import Detections, Frame


class OutputError(RuntimeError):
    """An output that cannot be written; the message is one line for the user."""


def _check_target(path: str, what: str) -> Path:
    p = Path(path)
    if p.parent and not p.parent.exists():
        raise OutputError(f"{what} {path}: folder {p.parent} does not exist; create it or choose another path")
    if p.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    return p


def refuse_overwriting_inputs(outputs: Sequence[tuple[str, str | None]], sources: Sequence[str]) -> None:
    """An output that is one of the input files (under any name) is refused before anything is opened."""
    for spec in sources:
        src = Path(str(spec))
        if not src.is_file():
            continue
        for flag, path in outputs:
            if path and (os.path.realpath(path) == os.path.realpath(src)
                         or (Path(path).exists() and os.path.samefile(path, src))):
                raise ConfigError(f"{flag} {path} is the input {spec}; writing it would destroy the input, "
                                  "choose another output path")


class LineFile:
    """A text file written whole lines at a time: each write lands completely or is cut back
    off, so a disk that fills never leaves half a line; the error names the file."""

    def __init__(self, path: str, what: str):
        self.path, self.what = path, what
        _check_target(path, what)
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise OutputError(f"{what} {path}: cannot write ({e.strerror})") from None
        self._size = 0
        self.lines = 0

    def write(self, text: str) -> None:
        if self._fd is None:
            return
        data = text.encode("utf-8")
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as e:
            if done:                       # a partial line: cut the file back to its last whole line
                try:
                    os.ftruncate(self._fd, self._size)
                    os.lseek(self._fd, self._size, os.SEEK_SET)
                except OSError:
                    pass
            raise OutputError(f"{self.what} {self.path}: write failed ({e.strerror}); "
                              f"the file keeps its first {self.lines} whole lines") from None
        self._size += len(data)
        self.lines += text.count("\n")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def write_stats_json(path: str, text: str) -> None:
    """The report, written at the end of a run; a failure is one line naming the file."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OutputError(f"--stats-json {path}: cannot write ({e.strerror}); the other outputs are complete") from None


def probe_stats_json(path: str, what: str = "--stats-json") -> None:
    """Checked before the run (the report is written at its end): a folder, a missing folder,
    no permission or a device that takes nothing (/dev/full) is reported up front."""
    p = _check_target(path, what)
    try:
        if p.exists() and not p.is_file():          # a device: try one byte
            with open(p, "wb", buffering=0) as f:
                f.write(b"\n")
        else:
            existed = p.exists()
            with open(p, "a", encoding="utf-8"):
                pass
            if not existed:
                p.unlink()
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot write ({e.strerror})") from None


# -- drawing ---------------------------------------------------------------------
class VideoWriter:
    """Annotated H.264 video with each frame at its source timestamp (no fixed rate)."""

    TIME_BASE = Fraction(1, 90000)

    def __init__(self, path: str, *, fps_hint: float | None, codec: str = "libx264", preset: str = "superfast",
                 crf: int = 23, threads: int = 0, tune: str | None = "zerolatency", convert: str = "opencv",
                 keyframe_interval: int | None = None):
        p = _check_target(path, "--save-video")
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        self._t0: float | None = None
        self._last_pts = -1
        self.frames = 0
        self.stream = None
        self._codec, self._fps_hint = codec, fps_hint
        self._options = {"preset": preset, "crf": str(crf)} if codec in ("libx264", "libx265") else {}
        if tune and codec in ("libx264", "libx265"):
            self._options["tune"] = tune
        # A keyframe about every second (x264's default is every 250 frames): each starts a
        # fragment, so a killed run loses at most about a second (BENCHMARKS.md: the size cost).
        self._options["g"] = str(keyframe_interval or self.keyframe_interval(fps_hint))
        # 0: one encoder thread on <= 2 cores (measured: extra x264 threads only add CPU
        # work that inference needs, bench/bench_encoder.py), else FFmpeg's choice.
        self._threads = threads or (1 if (os.cpu_count() or 1) <= 2 else 0)
        if convert not in ("opencv", "ffmpeg"):
            raise OutputError(f"video convert {convert!r}: use opencv or ffmpeg")
        self._convert = convert
        try:
            # Fragmented mp4: every fragment is self-contained, so a file cut short still plays;
            # flush_packets writes each one out at once (else FFmpeg's 32 KB buffer holds the header).
            fmt_opts = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if p.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
            self.container = av.open(path, "w", options=dict(fmt_opts, flush_packets="1"))
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"--save-video {path}: cannot create ({e}); choose another path or extension") from None

    @staticmethod
    def keyframe_interval(fps_hint: float | None) -> int:
        """Frames between keyframes: about one second at the source's rate (30 when unknown)."""
        fps = fps_hint if fps_hint and 1 <= fps_hint <= 240 else 30.0
        return max(1, int(round(fps)))

    def _open_stream(self, width: int, height: int) -> None:
        rate = Fraction(self._fps_hint).limit_denominator(1001) if self._fps_hint else Fraction(30)
        try:
            stream = self.container.add_stream(self._codec, rate=rate)
        except (av.error.FFmpegError, ValueError) as e:
            raise OutputError(f"--save-video: codec {self._codec!r} unavailable ({e}); use libx264 or mpeg4") from None
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.TIME_BASE
        stream.codec_context.time_base = self.TIME_BASE
        if self._threads:
            stream.codec_context.thread_count = self._threads
        stream.options = self._options
        self.stream = stream

    def write(self, image: np.ndarray, timestamp: float) -> None:
        with self._lock:
            if self._closed:
                return
            if self.stream is None:
                self._open_stream(image.shape[1], image.shape[0])
                self._t0 = timestamp
            h, w = self.stream.height, self.stream.width
            if image.shape[0] != h or image.shape[1] != w:
                if abs(image.shape[0] - h) <= 1 and abs(image.shape[1] - w) <= 1:
                    image = image[:h, :w]            # an odd side cut to even, as the stream was made
                else:                                # the source changed size: scale, never crop
                    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            pts = int(round((timestamp - self._t0) / self.TIME_BASE))
            if pts <= self._last_pts:       # timestamps must increase strictly
                pts = self._last_pts + 1
            self._last_pts = pts
            if self._convert == "opencv":     # OpenCV's BGR->I420 costs less CPU than swscale's
                vf = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            vf.pts = pts
            vf.time_base = self.TIME_BASE
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.stream is not None:
                    for packet in self.stream.encode(None):
                        self.container.mux(packet)
            finally:
                self.container.close()


def _json_value(v):
    """A numpy scalar as JSON: NaN / inf become null, bools stay bools, floats are rounded."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return round(v, 4) if np.isfinite(v) else None


class JsonlWriter:
    """One JSON object per frame and line: index, timestamp, boxes.

    A box's ``class`` is the track's (voted) class after a tracker. Every extra column of
    ``Detections.columns`` is written under its name (NaN as null); an integer column named
    ``*_class`` is a class id, written as ``<name>_id`` and ``<name>`` (the class name), null
    for -1: the tracker's ``det_class`` is the class the detector gave the box this frame,
    null on coasted boxes.
    """

    def __init__(self, path: str, class_names: Sequence[str]):
        self.path = path
        self.class_names = tuple(class_names)
        self._lock = threading.Lock()
        self._f = LineFile(path, "--save-json")

    def write(self, frame: Frame, dets: Detections) -> None:
        boxes = []
        for i in range(len(dets)):
            cid = int(dets.class_id[i])
            box = {
                "xyxy": [round(float(v), 2) for v in dets.xyxy[i]],
                "class_id": cid,
                "class": self.class_names[cid] if 0 <= cid < len(self.class_names) else str(cid),
                "score": round(float(dets.score[i]), 4),
                "track_id": int(dets.track_id[i]) if dets.track_id is not None else None,
                "coasted": bool(dets.coasted[i]) if dets.coasted is not None else False,
            }
            for name, col in (dets.columns or {}).items():     # every extra column (det_class, ttc_s, in_path, ...)
                if name.endswith("_class") and col.dtype.kind in "iu":
                    self._class_column(box, name, int(col[i]))
                else:
                    box[name] = _json_value(col[i])
            boxes.append(box)
        line = json.dumps({"index": frame.index, "timestamp": round(frame.timestamp, 6),
                           "source": frame.source, "boxes": boxes})
        with self._lock:
            if self._f is not None:
                self._f.write(line + "\n")   # whole lines reach the file, or none of a line

    def _class_column(self, box: dict, name: str, cid: int) -> None:
        """An integer column named ``*_class`` holds class ids (-1: none): written as ``<name>_id``
        and ``<name>`` (the class name), both null for -1 (e.g. the tracker's ``det_class``)."""
        box[f"{name}_id"] = cid if cid >= 0 else None
        box[name] = (self.class_names[cid] if cid < len(self.class_names) else str(cid)) if cid >= 0 else None

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


class MotWriter:
    """MOTChallenge text: ``frame,id,x,y,w,h,score,-1,visibility,-1`` with 1-based frames.

    Only tracked boxes are written (the format needs ids); coasted boxes are
    included, as the tracker emits them, and flagged in the 9th column, where
    MOT17's ground truth keeps the visibility ratio: 1 for a box with a
    detection behind it, 0 for a coasted (predicted) box. Their score (7th
    column) is the tracker's decayed trust score. Filter coasted rows with
    e.g. ``awk -F, '$9 != 0'``; MOT 2D evaluators read only the first 7 columns.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._f = LineFile(path, "--save-mot")

    def write(self, frame: Frame, dets: Detections) -> None:
        if dets.track_id is None:
            return
        lines = []
        for i in range(len(dets)):
            x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
            vis = 0 if dets.coasted is not None and dets.coasted[i] else 1
            lines.append(f"{frame.index + 1},{int(dets.track_id[i])},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                         f"{float(dets.score[i]):.4f},-1,{vis},-1\n")
        with self._lock:
            if self._f is not None and lines:
                self._f.write("".join(lines))

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None
