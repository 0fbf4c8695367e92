"""bench/soak.py end to end on a real clip for a few seconds: the table, the verdict and its JSON."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, need


def test_soak_writes_its_json(tmp_path, small2):
    need(small2)
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0.1", "--every", "1",
                           "--clip", str(small2), "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "-> flat" in proc.stdout
    data = json.loads(out.read_text())
    assert data["args"]["clip"] == str(small2)          # the clip path (a Path) written as text
    assert data["results"]["frames"] > 0 and len(data["results"]["samples"]) >= 2
