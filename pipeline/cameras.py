"""Local cameras: which device a ``--source`` names, and reading it through OpenCV.

Accepted forms (``resolve_camera``):

    camera0, 0                      /dev/video0
    /dev/video2                     a device path
    /dev/v4l/by-id/usb-...-index0   a udev symlink (stable across replugs)
    "HD Pro Webcam C920", c920      a device name: a case-insensitive part of the
                                    name in /sys/class/video4linux/videoN/name

A UVC camera shows several nodes with one name (capture, metadata); nodes of one
physical device count as one camera, opened at its lowest-numbered capture node.
A name matching several cameras, or none, is an error listing the cameras here.
The sysfs and /dev roots are arguments so tests use a fake tree.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2

from .config import SourceConfig
from dashtrack_core.records import Frame
from .source_base import Source, SourceError

SYSFS_V4L = Path("/sys/class/video4linux")
DEV_ROOT = Path("/dev")
INDEX_RE = re.compile(r"^(?:camera)?(\d+)$", re.I)
NODE_RE = re.compile(r"^video(\d+)$")


@dataclass(frozen=True)
class CameraDevice:
    index: int           # N of /dev/videoN
    path: str            # the device path opened
    label: str           # the source's name: cameraN for an index, else the spec as given
    name: str | None     # the device's own name (sysfs), when known

    @property
    def description(self) -> str:
        return f"{self.label} ({self.name}, {self.path})" if self.name else f"{self.label} ({self.path})"


def _roots(sysfs: Path | None, dev: Path | None) -> tuple[Path, Path]:
    """The given roots, else the module's (looked up at call time, so tests can point them at a fake tree)."""
    return Path(sysfs if sysfs is not None else SYSFS_V4L), Path(dev if dev is not None else DEV_ROOT)


@dataclass(frozen=True)
class _Node:
    index: int
    name: str
    device: str          # the physical device (sysfs 'device' link), or the node itself


def _nodes(sysfs: Path) -> list[_Node]:
    nodes = []
    try:
        entries = list(sysfs.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = NODE_RE.match(entry.name)
        if not m:
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = ""
        device = entry / "device"
        nodes.append(_Node(int(m.group(1)), name, os.path.realpath(device) if device.exists() else str(entry)))
    return sorted(nodes, key=lambda n: n.index)


def _cameras(sysfs: Path) -> list[_Node]:
    """One node per physical device: its lowest-numbered one (the capture node of a UVC camera)."""
    seen: dict[str, _Node] = {}
    for node in _nodes(sysfs):
        seen.setdefault(node.device, node)
    return sorted(seen.values(), key=lambda n: n.index)


def list_cameras(sysfs: Path | None = None, dev: Path | None = None) -> str:
    """The cameras here, for error messages: '/dev/video0 "HD Pro Webcam C920", ...'."""
    sysfs, dev = _roots(sysfs, dev)
    cams = _cameras(sysfs)
    if not cams:
        return f"no cameras found (nothing in {sysfs})"
    return "cameras here: " + ", ".join(f'{dev / f"video{c.index}"} "{c.name}"' for c in cams)


def is_camera_spec(spec: str, dev: Path | None = None) -> bool:
    """True for the index and path forms (names are tried only once no file matches).  Under /dev, a
    folder or a file with a suffix is media (/dev/shm/clip.mp4), not a camera."""
    dev = _roots(None, dev)[1]
    path = Path(spec)
    if INDEX_RE.match(spec):
        return True
    return path.is_relative_to(dev) and not path.is_dir() and not (path.is_file() and path.suffix)


def looks_like_name(spec: str) -> bool:
    """A spec that is no path and no media file name: worth matching against camera names."""
    suffix = Path(spec).suffix.lower()
    return "/" not in spec and "\\" not in spec and not (suffix and suffix[1:].isalnum() and len(suffix) <= 5
                                                         and not suffix[1:].isdigit())


def resolve_camera(spec: str, sysfs: Path | None = None, dev: Path | None = None) -> CameraDevice:
    """The camera ``spec`` names, or ``SourceError`` (one line, listing the cameras here)."""
    sysfs, dev = _roots(sysfs, dev)
    spec = spec.strip()
    names = {n.index: n.name for n in _nodes(sysfs)}
    m = INDEX_RE.match(spec)
    if m:
        index = int(m.group(1))
        label = f"camera{index}"
        if sysfs.is_dir() and index not in names:
            raise SourceError(f"{label}: no camera at index {index} ({dev / f'video{index}'}); {list_cameras(sysfs, dev)}")
        return CameraDevice(index, str(dev / f"video{index}"), label, names.get(index))
    if Path(spec).is_relative_to(dev):
        if not os.path.exists(spec):          # a dangling udev link too: the camera is gone
            raise SourceError(f"{spec}: no such device (unplugged?); {list_cameras(sysfs, dev)}")
        real = Path(os.path.realpath(spec))
        node = NODE_RE.match(real.name)
        if node is None or real.parent != Path(os.path.realpath(dev)) or \
                (sysfs.is_dir() and int(node.group(1)) not in names):
            raise SourceError(f"{spec}: not a video device; {list_cameras(sysfs, dev)}")
        index = int(node.group(1))
        return CameraDevice(index, str(real), spec, names.get(index))
    return _by_name(spec, sysfs, dev)


def _by_name(spec: str, sysfs: Path, dev: Path) -> CameraDevice:
    want = spec.casefold()
    cams = _cameras(sysfs)
    exact = [c for c in cams if c.name.casefold() == want]
    found = exact or [c for c in cams if want and want in c.name.casefold()]
    if len(found) == 1:
        c = found[0]
        return CameraDevice(c.index, str(dev / f"video{c.index}"), spec, c.name)
    if not found:
        raise SourceError(f"{spec}: no such file or folder, and no camera by that name; {list_cameras(sysfs, dev)}")
    listed = ", ".join(f'{dev / f"video{c.index}"} "{c.name}"' for c in found)
    raise SourceError(f"{spec}: {len(found)} cameras match ({listed}); give more of the name or the device path")


def open_capture(device: CameraDevice) -> cv2.VideoCapture:
    """The OpenCV capture for ``device`` (V4L2 on Linux).  Tests replace this with a stand-in."""
    backend = cv2.CAP_V4L2 if SYSFS_V4L.exists() else cv2.CAP_ANY
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # OpenCV logs each backend it tries
    try:
        return cv2.VideoCapture(device.index, backend)
    finally:
        cv2.utils.logging.setLogLevel(level)


class CameraSource(Source):
    """A local camera through OpenCV, asked for ``cfg.camera_size`` at ``cfg.camera_fps``.
    The first frame says (a warning) when the camera gives another size or rate."""

    live = True

    def __init__(self, device: CameraDevice, cfg: SourceConfig):
        self.device = device
        self.name = device.label
        self.description = device.description
        self.cap = open_capture(device)
        if not self.cap.isOpened():
            self.cap.release()
            if device.name:   # the node exists: busy, or a metadata node of a camera
                raise SourceError(f'{self.name}: {device.path} ("{device.name}") would not open: another program may '
                                  f"be using it, or it is not a capture node; {list_cameras()}")
            raise SourceError(f"{self.name}: no camera at index {device.index} ({device.path}) or it is busy; "
                              "plug one in, close other programs using it, or pick another with --source cameraN")
        self.want_size = tuple(cfg.camera_size)
        self.want_fps = cfg.camera_fps
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.want_size[0])
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.want_size[1])
        if self.want_fps:
            self.cap.set(cv2.CAP_PROP_FPS, self.want_fps)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.max_frames = cfg.max_frames

    def _check_delivered(self, image) -> None:
        got = (image.shape[1], image.shape[0])
        fps_off = self.want_fps and self.fps and abs(self.fps - self.want_fps) > 0.5
        if got != self.want_size or fps_off:
            asked = f"{self.want_size[0]}x{self.want_size[1]}" + (f" at {self.want_fps:g} fps" if self.want_fps else "")
            gives = f"{got[0]}x{got[1]}" + (f" at {self.fps:g} fps" if self.fps else "")
            self.warn(f"asked for {asked}, the camera gives {gives}; "
                      "set source.camera_size / source.camera_fps to a mode it supports")

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        index = 0
        while True:
            ok, image = self.cap.read()
            now = time.monotonic()
            if not ok or image is None:
                raise SourceError(f"{self.name}: stopped delivering frames after {index} (unplugged?)")
            if index == 0:
                self._check_delivered(image)
            self.check_size(image, index)
            yield Frame(image, index, now - t0, self.name, now)
            index += 1
            if self.max_frames and index >= self.max_frames:
                return

    def close(self) -> None:
        self.cap.release()
