"""Shared fixtures: the real data beside the repo (../shared/data), skipped with a reason when absent."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import av  # noqa: F401  (before cv2)
import pytest

from pipeline.paths import shared_data_dir  # the repo is on sys.path: pytest's pythonpath (pyproject.toml)

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
    from pipeline.configtools import from_mapping

    return from_mapping(DetectorConfig, detector_preset("yolox_nano"), "detector")


@pytest.fixture(scope="session")
def yolox():
    need(YOLOX_ONNX)
    from pipeline.config import DetectorConfig, detector_preset
    from pipeline.configtools import from_mapping
    from pipeline.onnx_detector import OnnxDetector

    return OnnxDetector(from_mapping(DetectorConfig, detector_preset("yolox_nano"), "detector"))
