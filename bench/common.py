"""Helpers shared by the bench scripts."""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import cv2  # noqa: F401  (before av: see pipeline/__init__.py)

from dashtrack_core.paths import shared_data_dir
from dashtrack_core.records import Frame
from pipeline.sources import Source, open_source
from tools.tables import markdown_table  # noqa: F401  (the bench scripts import it from here)

REPO = Path(__file__).resolve().parent.parent

SHARED = shared_data_dir()        # $DASHTRACK_SHARED_DATA, else ../shared/data beside the repo


class Looped(Source):
    """A file decoded again and again (real decoding each pass), timestamps continuing;
    ``times`` passes, or until ``seconds`` of wall time have gone by."""

    def __init__(self, path: Path, cfg, times: int | None = None, seconds: float | None = None):
        self.path, self.cfg, self.times, self.seconds = Path(path), cfg, times, seconds
        first = open_source(str(path), cfg)
        self.name, self.fps, self.live = self.path.name, first.fps, False
        first.close()
        self.frame_count_hint = None

    def __iter__(self):
        index, offset, passes = 0, 0.0, 0
        deadline = time.monotonic() + self.seconds if self.seconds else None
        while (self.times is None or passes < self.times) and (deadline is None or time.monotonic() < deadline):
            src = open_source(str(self.path), self.cfg)
            last = 0.0
            for f in src:
                yield Frame(f.image, index, offset + f.timestamp, self.name, f.captured_at)
                index += 1
                last = f.timestamp
                if deadline is not None and time.monotonic() >= deadline:
                    break
            src.close()
            offset += last + 1.0 / (self.fps or 25.0)
            passes += 1


def clip_file(value: str) -> Path:
    """argparse ``type`` of ``--clip``: an existing file, else the usage error (exit 2) names it and the fix."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} not found; pass --clip FILE")
    return path


def write_json(path: str | Path | None, args, results) -> None:
    """``{"args": vars(args), "results": results}`` to ``path`` (parents made); nothing when path is empty."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str) + "\n")


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port: int) -> bool:
    """Listening on 127.0.0.1:port?  Read from /proc: a test connection would use up
    the one client an ``ffmpeg -listen 1`` server accepts."""
    try:
        rows = open("/proc/net/tcp").read().splitlines()[1:]
    except OSError:
        time.sleep(1.0)
        return True
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


def wait_until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


class StreamServer:
    """ffmpeg serving a real clip in real time (looped) over HTTP on loopback, one client."""

    def __init__(self, clip: Path, port: int):
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise FileNotFoundError("ffmpeg is not installed (apt-get install ffmpeg)")
        self.port = port
        self.url = f"http://127.0.0.1:{port}/live.ts"
        self.cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
                    "-c", "copy", "-f", "mpegts", "-listen", "1", self.url]
        self.proc = None

    def start(self, timeout: float = 10.0) -> float:
        """Start and wait until it listens; returns that moment (time.monotonic).  An ffmpeg that
        exits before listening (the port still held by the connection just killed) is started again."""
        deadline = time.monotonic() + timeout
        why = "no reason printed"
        while time.monotonic() < deadline:
            # a file, not a pipe: a long run cannot fill it and block ffmpeg (the child keeps its own
            # descriptor, so the parent's copy is closed after each attempt)
            with tempfile.TemporaryFile("w+") as log:
                self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=log)
                while self.proc.poll() is None and time.monotonic() < deadline:
                    if port_listening(self.port):
                        return time.monotonic()
                    time.sleep(0.05)
                if self.proc.poll() is not None:
                    log.seek(0)
                    why = (log.read().strip().splitlines() or [f"exit {self.proc.returncode}"])[-1]
            if self.proc.poll() is not None:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"ffmpeg did not listen on port {self.port} within {timeout:g} s: {why}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
