"""Frame sources: video files, network streams, local cameras, image folders.

``open_source(spec, cfg)`` picks the kind from the spec string and returns a
``Source``; iterating it yields ``Frame`` records.  Opening checks the source
and raises ``SourceError`` with one line naming it and the fix; a failure in
the middle of reading raises ``SourceError`` too (never a fabricated frame).

    camera0, 0, /dev/video0, /dev/v4l/by-id/..., a camera's name
                            a local camera (pipeline/cameras.py), asked for source.camera_size
    drive.mp4 (mkv, avi, mov, ...)   a file, decoded by PyAV (threaded codec)
    rtsp://..., http(s)://..., udp://..., tcp://...   a network stream (PyAV)
    lavfi:testsrc2=size=1280x720:rate=30,realtime      an FFmpeg test source (live)
    a folder or a glob of images     sorted; timestamps from --fps or timestamps.json
"""
from __future__ import annotations

import glob
import json
import math
import re
import time
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .config import SourceConfig
from . import cameras
from dashtrack_core.records import Frame
from .reconnect import ReconnectingSource
from .replay import LoopedSource, PacedSource
from .source_base import MIN_FRAME_SIDE, Source, SourceError  # noqa: F401  (re-exported)

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".mpg", ".mpeg", ".flv", ".h264", ".hevc"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.I)


def _av_message(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().rstrip(".") or type(e).__name__


class PyAVSource(Source):
    """Files, network streams and lavfi test sources through PyAV."""

    def __init__(self, spec: str, cfg: SourceConfig, *, live: bool, fmt: str | None = None,
                 options: dict[str, str] | None = None, name: str | None = None):
        self.spec, self.live, self.name = spec, live, name or spec
        timeout = (cfg.open_timeout_s, cfg.read_timeout_s) if live else None
        try:
            # metadata_errors: a damaged or foreign-encoded tag must not stop the video
            # (PyAV decodes tags as strict UTF-8 by default: UnicodeDecodeError).
            self.container = av.open(spec, format=fmt, options=options or {}, timeout=timeout,
                                     metadata_errors="replace")
        except FileNotFoundError:
            raise SourceError(f"{self.name}: file not found; check the path") from None
        except av.error.ExitError:
            # FFmpeg's interrupt callback: PyAV's open timeout ran out (the peer accepted and sent nothing).
            raise SourceError(f"{self.name}: timed out while opening, nothing received (source.open_timeout_s "
                              f"{cfg.open_timeout_s:g} s, read_timeout_s {cfg.read_timeout_s:g} s); check the URL "
                              "and that the stream is up") from None
        except av.error.FFmpegError as e:
            raise SourceError(f"{self.name}: cannot open ({_av_message(e)}); {self._hint()}") from None
        except OSError as e:
            raise SourceError(f"{self.name}: cannot open ({_av_message(e)}); {self._hint()}") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{self.name}: has no video stream; pass a video file or stream")
        self.stream = self.container.streams.video[0]
        ctx = self.stream.codec_context
        if ctx is None or ctx.name is None:
            self.container.close()
            raise SourceError(f"{self.name}: unsupported video codec; re-encode it to H.264")
        self.stream.thread_type = cfg.thread_type
        if cfg.decode_threads:
            self.stream.thread_count = cfg.decode_threads
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.frame_count_hint = self.stream.frames or None
        self.max_frames = cfg.max_frames

    def _hint(self) -> str:
        if self.live:
            return "check the URL and that the stream is up"
        return "the file may be corrupt or not a video"

    # Consecutive undecodable packets tolerated before the file is declared broken.
    MAX_BAD_PACKETS = 50

    def __iter__(self) -> Iterator[Frame]:
        tb = self.stream.time_base
        start = self.stream.start_time or 0
        origin = time.monotonic()
        index = 0
        last_ts = -1.0
        last_dur = 0.0              # the last frame's own duration (VFR: it may be long)
        bad_run = 0
        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = packet.decode()
                    bad_run = 0
                except av.error.InvalidDataError as e:
                    # A damaged packet (bit flips, a cut): skip it, as a player would, and say so.
                    self.warn(f"skipped an undecodable packet after frame {index} ({_av_message(e)})")
                    bad_run += 1
                    if bad_run > self.MAX_BAD_PACKETS:
                        raise SourceError(f"{self.name}: {bad_run} undecodable packets in a row after frame {index}; "
                                          "the file is damaged") from None
                    continue
                for vf in decoded:
                    if vf.pts is not None and tb is not None:
                        ts = float((vf.pts - start) * tb)
                    elif self.fps:
                        ts = index / self.fps
                    else:
                        ts = time.monotonic() - origin
                    if ts <= last_ts:  # broken or repeated PTS: keep time moving forward
                        ts = last_ts + (1.0 / self.fps if self.fps else 1e-3)
                    last_ts = ts
                    last_dur = float(vf.duration * tb) if vf.duration and tb is not None else 0.0
                    image = vf.to_ndarray(format="bgr24")
                    turns = int(round((vf.rotation or 0) / 90.0)) % 4   # display-matrix rotation, as players apply it
                    if turns:
                        image = np.ascontiguousarray(np.rot90(image, turns))
                    self.check_size(image, index)
                    yield Frame(image, index, ts, self.name, time.monotonic())
                    index += 1
                    if self.max_frames and index >= self.max_frames:
                        return
        except av.error.EOFError:
            pass
        except av.error.FFmpegError as e:
            if index == 0:
                raise SourceError(f"{self.name}: read failed before the first frame ({_av_message(e)})") from None
            if self.live:
                raise SourceError(f"{self.name}: stream read failed after {index} frames ({_av_message(e)})") from None
            self.warn(f"stopped at frame {index}: {_av_message(e)}; the rest of the file is unreadable")
            return
        if index == 0:
            raise SourceError(f"{self.name}: no frame could be decoded; the file may be corrupt or use an unsupported codec")
        if not self.live and not self.max_frames:
            self._check_complete(last_ts, last_dur)

    def _check_complete(self, last_ts: float, last_dur: float) -> None:
        """Warn when decoding stopped before the container's end: the last frame's end more than half a
        frame short of the stated duration, start offsets taken into account."""
        frame_s = 1.0 / self.fps if self.fps and self.fps > 0 else 0.04
        last_dur = last_dur or frame_s
        tb = self.stream.time_base
        if self.stream.duration and tb:          # the stream's own duration: from its first frame
            end, last = float(self.stream.duration * tb), last_ts
        elif self.container.duration:
            # The container's may count from zero or from the start offset (Matroska written with an
            # offset states the former): compare with the last frame's absolute time, the later of the two.
            start = float(self.stream.start_time * tb) if self.stream.start_time and tb else 0.0
            end, last = self.container.duration / 1e6, last_ts + start
        else:
            return
        if last + last_dur + 0.5 * frame_s < end:
            self.warn(f"ended at {last:.2f} s of {end:.2f} s; the file looks truncated")

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken container must not hide the first error
            pass


class ImageSource(Source):
    """A sorted list of image files; timestamps from ``fps`` or a ``timestamps.json`` beside them."""

    def __init__(self, spec: str, paths: list[Path], cfg: SourceConfig):
        self.name = spec
        self.paths = paths
        self.frame_count_hint = len(paths)
        self.max_frames = cfg.max_frames
        stamps_file = paths[0].parent / "timestamps.json"
        self.timestamps: list[float] | None = None
        if cfg.fps:
            self.fps = cfg.fps
        elif stamps_file.is_file():
            try:
                stamps = json.loads(stamps_file.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise SourceError(f"{stamps_file}: unreadable ({e}); fix it or pass --fps") from None
            if not isinstance(stamps, list) or len(stamps) != len(paths):
                raise SourceError(f"{stamps_file}: expected a list of {len(paths)} times; fix it or pass --fps")
            for i, t in enumerate(stamps):
                if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
                    raise SourceError(f"{stamps_file}: entry {i} ({json.dumps(t)}) is not a finite number of seconds; "
                                      "fix it or pass --fps")
            self.timestamps = [float(t) - float(stamps[0]) for t in stamps]
            span = self.timestamps[-1] if len(stamps) > 1 else 0.0
            self.fps = (len(stamps) - 1) / span if span > 0 else None
        else:
            raise SourceError(f"{spec}: image sequences need a frame rate; pass --fps N (or put timestamps.json beside them)")

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            if self.max_frames and index >= self.max_frames:
                return
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{path}: not a readable image; remove or replace it")
            self.check_size(image, index)
            ts = self.timestamps[index] if self.timestamps else index / self.fps
            yield Frame(image, index, ts, self.name, time.monotonic())


def _image_paths(spec: str) -> list[Path] | None:
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"{spec}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return sorted(files)
    if any(ch in spec for ch in "*?["):
        files = [Path(f) for f in glob.glob(spec) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"{spec}: the pattern matches no image files")
        return sorted(files)
    return None


def open_source(spec: str | int, cfg: SourceConfig | None = None) -> Source:
    """Open the source named by ``spec`` (see the module docstring).  A live source
    is wrapped to reconnect when it stops (``cfg.reconnect``); a file is replayed ``cfg.loop``
    times and paced to its timestamps with ``cfg.realtime`` (pipeline/replay.py)."""
    cfg = cfg or SourceConfig()
    spec = str(spec).strip()
    source = _open_once(spec, cfg)
    if not source.live:
        if cfg.loop > 1:
            source = LoopedSource(source, lambda: _open_once(spec, cfg), cfg.loop, cfg.max_frames)
        return PacedSource(source) if cfg.realtime else source
    if cfg.reconnect == "no" or spec.startswith("lavfi:"):   # a test source's end is final
        return source
    first = [source]

    def opener() -> Source:
        return first.pop() if first else _open_once(spec, cfg)

    return ReconnectingSource(opener, timeout_s=cfg.reconnect_timeout_s, initial_s=cfg.reconnect_initial_s,
                              max_s=cfg.reconnect_max_s)


def _open_once(spec: str, cfg: SourceConfig) -> Source:
    if not spec:
        raise SourceError("empty --source; give a file, a URL, cameraN or an image folder")
    if cameras.is_camera_spec(spec):
        return cameras.CameraSource(cameras.resolve_camera(spec), cfg)
    if spec.startswith("lavfi:"):
        return PyAVSource(spec[len("lavfi:"):], cfg, live=True, fmt="lavfi", name=spec)
    if URL_RE.match(spec):
        # Probe half a second of stream, not FFmpeg's default 5 s: a (re)connect shows frames sooner.
        options = {"analyzeduration": "500000", "probesize": "500000"}
        if spec.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"
        return PyAVSource(spec, cfg, live=True, options=options)
    images = _image_paths(spec)
    if images is not None:
        return ImageSource(spec, images, cfg)
    path = Path(spec)
    if not path.exists() and cameras.looks_like_name(spec):
        return cameras.CameraSource(cameras.resolve_camera(spec), cfg)     # "HD Pro Webcam C920"
    if not path.exists():
        raise SourceError(f"{spec}: no such file or folder; check the path (or use cameraN / a URL)")
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"{spec}: the file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(spec, [path], cfg) if cfg.fps else ImageSource(spec, [path], SourceConfig(fps=1.0))
    return PyAVSource(str(path), cfg, live=False, name=path.name)
