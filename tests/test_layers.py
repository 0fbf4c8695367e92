"""The one-way layers (issue 21): bench > tools > pipeline > models | trackers > dashtrack_core, the contract in
pyproject.toml checked by import-linter over every import, those inside functions included."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

ROOTS = ["dashtrack_core", "models", "trackers", "pipeline", "tools", "bench"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    return subprocess.run([exe, "--no-cache"], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_layer_contract_holds():
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in run.stdout


def copy_packages(dst: Path) -> None:
    for name in ROOTS:
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "results", "*.onnx",
                                                                                "*.pt", "*.pth"))
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")


@pytest.mark.parametrize("module, planted, message", [
    ("dashtrack_core/boxes.py", "import pipeline.runner", "dashtrack_core is not allowed to import pipeline"),
    ("models/zoo.py", "from trackers.kalman import BoxKalman", "models is not allowed to import trackers"),
    ("trackers/ttc.py", "from pipeline.stats import Stats", "trackers is not allowed to import pipeline"),
    ("tools/tiling.py", "import bench.common", "tools is not allowed to import bench"),
    ("pipeline/stats.py", "def _hidden():\n    from tools import eval_ttc", "pipeline is not allowed to import tools"),
], ids=["ground-imports-application", "models-imports-trackers", "trackers-imports-application",
        "tools-imports-bench", "import-hidden-in-a-function"])
def test_the_contract_catches_a_planted_violation(tmp_path, module, planted, message):
    copy_packages(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + "\n\n" + planted + "\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0 and "BROKEN" in run.stdout
    assert message in run.stdout, run.stdout[-3000:]
