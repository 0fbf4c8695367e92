"""``pip install .`` gives a working ``dashtrack`` command: the wheel is built from a copy of the clone,
installed into a fresh venv outside it, and run from an empty folder with no PYTHONPATH, so the
default config and the shipped weights can only come from the installed package data.

The fresh venv reuses this interpreter's dependencies (torch, onnxruntime, ...) through a .pth file
naming their site-packages folders, and the wheel goes in with --no-deps: nothing is downloaded
(building the wheel may fetch setuptools>=77 from the package index when the venv's is older).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEPS = ("numpy", "cv2", "av", "onnxruntime", "yaml", "scipy", "tqdm", "filterpy", "torch")
SKIP_COPY = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "runs", "out",
                                   ".pytest_cache", ".hypothesis")


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "dashtrack"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)      # a clean tree: no stale build/ from earlier builds
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    if _setuptools_ok():
        cmd.insert(4, "--no-build-isolation")       # this venv's setuptools will do: no download
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("dashtrack-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    dirs = {str(Path(importlib.import_module(m).__file__).resolve().parent.parent) for m in DEPS}
    (site / "zz_dashtrack_deps.pth").write_text("\n".join(sorted(dirs)) + "\n")
    # without PYTHONPATH: a clone on it (its dashtrack.egg-info) makes pip call the wheel "already satisfied"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["DASHTRACK_SHARED_DATA"] = str(Path(env.get("TMPDIR", "/tmp")) / "dashtrack-no-shared")
    return env


@pytest.mark.parametrize("member", [
    "configs/default.yaml", "configs/detectors/dashcam.yaml", "configs/detectors/lite.yaml",
    "models/weights/dashcam.onnx", "models/weights/lite.onnx", "models/weights/LICENSE.YOLOX-Apache-2.0.txt",
    "pipeline/cli.py", "pipeline/command.py", "dashtrack_core/records.py",
], ids=["default-config", "dashcam-preset", "lite-preset", "dashcam-weights", "lite-weights", "weights-license",
        "cli-module", "command-module", "ground-package"])
@pytest.mark.slow
def test_wheel_carries(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert member in names
        if member.endswith(".onnx"):
            assert z.getinfo(member).file_size == (REPO / member).stat().st_size   # the real file, not a pointer


@pytest.mark.slow
def test_installed_dashtrack_runs_from_any_folder(venv, tmp_path):
    env = _clean_env()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import pipeline; print(pipeline.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout       # the installed copy, not the clone
    proc = subprocess.run([str(venv / "bin" / "dashtrack"), "--source", str(REPO / "examples" / "test_video.mp4"),
                           "--no-show", "--save-json", "out.jsonl"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "run: dashcam.onnx (onnx on " in proc.stderr          # cpu, or cuda where onnxruntime has it
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    frames = [json.loads(line) for line in lines]
    assert [f["index"] for f in frames] == list(range(len(frames))) and len(frames) >= 30   # one line per frame
    cars = [b for f in frames for b in f["boxes"] if b["class"] == "car" and b["score"] >= 0.5]
    assert len(cars) >= len(frames), "the example clip has cars in every frame"
    assert all(1280 >= b["xyxy"][2] > b["xyxy"][0] >= 0 and 720 >= b["xyxy"][3] > b["xyxy"][1] >= 0 for b in cars)


PACKAGED = [
    ("lite-preset", ["--model", "lite", "--device", "cpu"], "run: lite.onnx (onnx on cpu), input 288x512"),
    ("clone-relative-config", ["--config", "configs/detectors/dashcam.yaml"], "run: dashcam.onnx"),
    ("clone-relative-weights", ["--model", "models/weights/lite.onnx"], "run: lite.onnx"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, line", [r[1:] for r in PACKAGED], ids=[r[0] for r in PACKAGED])
def test_installed_dashtrack_finds_package_data(venv, tmp_path, args, line):
    """Presets and the clone's relative paths resolve to the installed package's copies from any folder."""
    proc = subprocess.run([str(venv / "bin" / "dashtrack"), "--source", str(REPO / "examples" / "test_video.mp4"),
                           "--no-show", "--max-frames", "3", *args], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert line in proc.stderr, proc.stderr


@pytest.mark.slow
def test_installed_dashtrack_help_and_bad_flag(venv, tmp_path):
    run = lambda *a: subprocess.run([str(venv / "bin" / "dashtrack"), *a], cwd=tmp_path, env=_clean_env(),
                                    capture_output=True, text=True, timeout=120)
    assert run("--help").returncode == 0
    bad = run("--source", "x.mp4", "--device", "banana")
    assert bad.returncode == 2 and "auto, cpu, cuda or cuda:N" in bad.stderr and "Traceback" not in bad.stderr
