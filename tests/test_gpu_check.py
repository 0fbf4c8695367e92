"""bench/gpu_check.py on the CPU (--quick): it runs, and its JSON and markdown keep their documented shape."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, SHARED

from bench import gpu_check, gpu_steps
from dashtrack_core.records import Detections

pytestmark = pytest.mark.timeout(300)
ROW_KEYS = {"variant", "input_hw", "precision", "batch", "mode", "status"}


def run_check(*args):
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", *args], capture_output=True,
                          text=True, timeout=280, cwd=REPO)


def test_quick_cpu_run_writes_the_documented_json_and_table(tmp_path):
    out = run_check("--device", "cpu", "--quick", "--out", str(tmp_path / "gc"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "gc" / "gpu_check.json").read_text())
    assert set(gpu_check.KEYS) <= set(result) and result["schema"] == gpu_check.SCHEMA
    assert (result["device"], result["quick"], result["watchdog_fired"]) == ("cpu", True, False)
    assert set(result["steps"]) == {"env", "models", "compile", "parity", "e2e"}
    assert result["steps"]["env"]["status"] == result["steps"]["models"]["status"] == "ok"
    assert result["env"]["torch"] and result["env"]["nms_backend"] in ("torch", "torchvision")
    ok = [r for r in result["models"] if r["status"] == "ok"]
    assert ok and all(ROW_KEYS <= set(r) and r["ms_per_batch"] > 0 and r["images_per_s"] > 0 for r in ok)
    md = (tmp_path / "gc" / "gpu_check.md").read_text()
    assert "| variant | input HxW | precision | batch | mode | ms/batch | images/s | status |" in md
    if (SHARED / "teachers" / "yolox_nano" / "yolox_nano.pth").is_file():
        assert result["steps"]["parity"]["status"] == "ok" and result["parity"]["cuda"].startswith("absent")
        assert all(v["status"] == "ok" for v in result["parity"]["variants"].values()), result["parity"]
        e2e = result["e2e"]
        assert result["steps"]["e2e"]["status"] == "ok"
        assert e2e["decode_only"]["decode-only"]["fps"] > 0 and e2e["runs"]["batch 1"]["fps"] > 0
        assert {"preprocess", "inference", "decode", "track", "output"} <= set(e2e["runs"]["batch 1"]["stages"])
        assert "| run | streams | frames | FPS | vs decode-only | stage p50 ms |" in md


@pytest.mark.parametrize("args, message, code", [
    (["--device", "cuda", "--out", "OUT"], "CUDA is not available", 2),
    (["--device", "cpu", "--budget-s", "5", "--out", "OUT"], "--budget-s 5: give more than 20 seconds", 2),
    (["--device", "cpu", "--out", "/proc/gpu_check_cannot_be_here"], "cannot create the folder", 2),
], ids=["cuda asked, absent", "budget too small", "unwritable output"])
def test_bad_arguments_are_one_line(tmp_path, args, message, code):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = run_check(*[str(tmp_path / "o") if a == "OUT" else a for a in args])
    assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr


def dets(rows):
    import numpy as np

    rows = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int32))


@pytest.mark.parametrize("ref, got, expected", [
    ([[0, 0, 10, 10, 0.9, 2]], [[0, 0, 10, 10, 0.9, 2]], (1, 0.0)),
    ([[0, 0, 10, 10, 0.9, 2]], [[0, 0, 10, 10.6, 0.9, 2]], (0, 0.0)),          # IoU 0.943 < 0.95
    ([[0, 0, 10, 10, 0.9, 2]], [[0, 0, 10, 10, 0.95, 2]], (0, 0.05)),          # score off by 0.05
    ([[0, 0, 10, 10, 0.9, 2]], [[0, 0, 10, 10, 0.9, 7]], (0, 0.0)),            # other class
    ([[0, 0, 10, 10, 0.9, 2], [0, 0, 10, 10, 0.8, 2]], [[0, 0, 10, 10, 0.89, 2]], (1, 0.01)),  # one-to-one
    ([], [], (0, 0.0)),
], ids=["same box", "iou below 0.95", "score beyond 0.02", "class differs", "one to one", "both empty"])
def test_parity_match(ref, got, expected):
    m = gpu_steps.match(dets(ref), dets(got))
    assert (m["matched"], m["max_score_diff"]) == pytest.approx(expected, abs=1e-4)


def test_failed_attempts_are_recorded_not_raised():
    """A CUDA graph on the CPU, an unknown variant, a spent budget: rows say so, the step goes on."""
    import time

    import torch

    rows = gpu_steps.model_timings(torch.device("cpu"), ["no_such_variant", "resnet18_s32"], [(64, 128)], ["fp32"],
                                   [1], ["eager", "channels_last+cuda_graph"], None, time.monotonic() + 120, 0, 1, 0.0)
    by = {(r["variant"], r.get("mode")): r for r in rows}
    assert by[("no_such_variant", None)]["status"] == "failed" and "no_such_variant" in by[("no_such_variant", None)]["error"]
    assert by[("resnet18_s32", "eager")]["status"] == "ok"
    graph = by[("resnet18_s32", "channels_last+cuda_graph")]
    assert graph["status"] == "failed" and graph["error"]
    late = gpu_steps.model_timings(torch.device("cpu"), ["resnet18_s32"], [(64, 128)], ["fp32"], [1], ["eager"],
                                   None, time.monotonic() - 1, 0, 1, 0.0)
    assert [(r["status"], r["error"]) for r in late] == [("skipped", "step time budget spent")]
    missing = gpu_steps.model_timings(torch.device("cpu"), ["yolox_nano"], [(64, 128)], ["fp32"], [1], ["eager"],
                                      SHARED / "no_such.pth", time.monotonic() + 60, 0, 1, 0.0)
    assert missing[0]["status"] == "failed" and "no YOLOX checkpoint" in missing[0]["error"]
