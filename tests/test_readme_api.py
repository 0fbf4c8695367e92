"""README.md's "Python API" block runs as printed: the detector and tracker in a user's own loop,
then the Runner on a source, with the shipped weights and examples/test_video.mp4 (nothing from ../shared)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMES = 38          # examples/test_video.mp4


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"README.md has no '## {heading}' section"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"README.md '## {heading}' has no python block"
    return found.group(1)


def test_python_api_block_runs(tmp_path):
    code = readme_block("Python API")
    assert 8 <= len(code.strip().splitlines()) <= 20          # "about ten lines"
    script = tmp_path / "api.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO), DASHTRACK_SHARED_DATA=str(tmp_path / "no-shared"))
    env.pop("DISPLAY", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    per_frame, summary = lines[:-1], lines[-1]
    assert len(per_frame) == FRAMES                            # the own loop: one line per frame
    stamps = [float(line.split("s ", 1)[0]) for line in per_frame]
    assert stamps == sorted(stamps) and stamps[-1] > 1.0
    assert sum("'car'" in line for line in per_frame) >= FRAMES - 2     # tracked cars (a new id needs 2 hits)
    assert summary.startswith(f"{FRAMES} frames,"), summary    # the Runner on the same file
