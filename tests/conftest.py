"""Shared fixtures: the real data beside the repo (../shared/data), skipped with a reason when absent."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import av  # noqa: F401  (before cv2)
import numpy as np
import pytest

from dashtrack_core.paths import shared_data_dir  # the repo is on sys.path: pytest's pythonpath (pyproject.toml)

REPO = Path(__file__).resolve().parent.parent

SHARED = shared_data_dir()          # $DASHTRACK_SHARED_DATA, else ../shared/data beside the repo
VIDEOS = SHARED / "videos" / "udacity"
TEACHERS = SHARED / "teachers"
YOLOX_ONNX = TEACHERS / "yolox_nano" / "yolox_nano.onnx"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (tests read $DASHTRACK_SHARED_DATA, default ../shared/data beside the repo)")
    return path


def need_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (.ci/run installs it with apt)")
    return found


@pytest.fixture
def shared() -> Path:
    return need(SHARED)


@pytest.fixture
def small2() -> Path:
    """1280x720 H.264, 100 decoded frames (the container says 116)."""
    return need(VIDEOS / "test_small2.mp4")


@pytest.fixture
def example_video() -> Path:
    return REPO / "examples" / "test_video.mp4"


@pytest.fixture
def yolox_cfg():
    """The YOLOX-Nano teacher's detector config."""
    need(YOLOX_ONNX)
    from pipeline.config import DetectorConfig, detector_preset
    from dashtrack_core.configtools import from_mapping

    return from_mapping(DetectorConfig, detector_preset("yolox_nano"), "detector")


@pytest.fixture(scope="session")
def yolox():
    need(YOLOX_ONNX)
    from pipeline.config import DetectorConfig, detector_preset
    from dashtrack_core.configtools import from_mapping
    from pipeline.onnx_detector import OnnxDetector

    return OnnxDetector(from_mapping(DetectorConfig, detector_preset("yolox_nano"), "detector"))


# -- a real X server for the preview tests (Xvfb) ------------------------------------------------
@contextlib.contextmanager
def xvfb(size: tuple[int, int]):
    """An Xvfb display of ``size`` (w, h) on the first free number from 90; skips when Xvfb is absent or fails."""
    need_tool("Xvfb")
    n = next((n for n in range(90, 160) if not Path(f"/tmp/.X11-unix/X{n}").exists()
              and not Path(f"/tmp/.X{n}-lock").exists()), None)
    if n is None:
        pytest.skip("no free X display number in :90-:159")
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp",
                             "-noreset"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.1)
    try:
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(10)


def grab_screen(display: str, size: tuple[int, int]) -> np.ndarray:
    """One screenshot of the whole X screen as BGR."""
    with av.open(display, format="x11grab", options={"video_size": f"{size[0]}x{size[1]}"}) as c:
        return next(c.decode(c.streams.video[0])).to_ndarray(format="bgr24")


def car_pixels(img: np.ndarray) -> int:
    """Pixels in the colour boxes of class 'car' are drawn in."""
    from pipeline.drawing import _color

    return int((np.abs(img.astype(int) - np.array(_color(2))).sum(-1) < 30).sum())
