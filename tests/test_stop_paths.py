"""Issue 19, continued: stop paths (SIGTERM, a bad source among several, frames in flight, reconnect
waits) and an ONNX input that is not an image batch. Helpers and the shipped MODEL: test_reliability.py."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from pipeline.config import SourceConfig
from pipeline.runner import Runner
from pipeline.sources import SourceError, open_source
from test_reliability import MODEL, VIDEO, config

pytestmark = pytest.mark.timeout(180)


# -- also: SIGTERM, and one bad source among several -------------------------------------------------
def test_sigterm_is_reported_as_such_and_outputs_stay_valid(tmp_path):
    jl = tmp_path / "t.jsonl"
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, str(REPO / "run_stream.py"), "--no-show", "--model", MODEL, "--source",
                             "lavfi:testsrc2=size=640x360:rate=25,realtime", "--save-json", str(jl)],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jl.exists() or len(jl.read_text().splitlines()) < 10):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "stopped: terminated (SIGTERM)" in err and "Ctrl-C" not in err
    assert len([json.loads(ln) for ln in jl.read_text().splitlines()]) >= 10


def test_one_bad_source_lets_the_others_finish(tmp_path):
    from pipeline.multi import MultiRunner
    from pipeline.stages import StageError

    bad = tmp_path / "cut.mp4"
    bad.write_bytes(VIDEO.read_bytes()[: VIDEO.stat().st_size // 10])
    runner = MultiRunner(config(**{"output.save_json": str(tmp_path / "o.jsonl")}), [str(VIDEO), str(bad)],
                         log=open(os.devnull, "w"))
    with pytest.raises(StageError, match="capture stage failed: cut.mp4"):
        runner.run()
    good = runner.runners[0].report
    assert good["frames_out"] == 38 and good["stop_reason"] == "end of input"
    assert len((tmp_path / "o_0.jsonl").read_text().splitlines()) == 38


# -- row 17 (validation part): an ONNX input that is not a 3-channel image batch ----------------------
@pytest.mark.parametrize("shape", [[1, 1, 416, 416], [1, 416, 416], [1, 4, 64, 64, 1]], ids=["1_channel", "rank_3", "rank_5"])
def test_onnx_input_of_wrong_rank_or_channels_is_refused_at_load(tmp_path, shape):
    import onnx
    from onnx import TensorProto, helper

    from pipeline.onnx_detector import DetectorError, OnnxDetector

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    cfg = config(**{"detector.model": str(path), "detector.format": "decoded", "detector.input_size": [416, 416]})
    with pytest.raises(DetectorError, match=r"expected \(batch, 3, height, width\)"):
        OnnxDetector(cfg.detector)


def test_frames_in_flight_when_stopped_are_counted_as_dropped():
    runner = Runner(config(**{"pipeline.queue_size": 4}), str(VIDEO), log=open(os.devnull, "w"))
    runner.start()
    deadline = time.monotonic() + 60
    while runner.stats.frames_out < 3 and time.monotonic() < deadline:
        runner.step()
    report = runner.finish()                              # what quitting does
    lost = report["dropped"].get("in flight at stop", 0)
    assert 0 < report["frames_out"] < 38 and lost > 0, report
    assert report["frames_in"] == report["frames_out"] + sum(report["dropped"].values())


def test_fps_of_a_run_with_a_reconnect_leaves_out_the_wait():
    from pipeline.reconnect import ReconnectingSource

    attempts = []

    def opener():
        attempts.append(1)
        if len(attempts) == 2:
            raise SourceError("camera9: gone for a moment")
        if len(attempts) > 3:
            raise SourceError("camera9: gone for good")
        return open_source(str(VIDEO), SourceConfig(max_frames=10))

    src = ReconnectingSource(opener, timeout_s=1.0, initial_s=0.6, max_s=0.6)
    runner = Runner(config(), src, log=open(os.devnull, "w"))
    with pytest.raises(Exception, match="not back within 1 s"):
        runner.run()
    report = runner.report
    waited = sum(g["seconds"] for g in report["gaps"])
    assert waited >= 0.9 and report["reconnect_wait_s"] == pytest.approx(waited, abs=1e-3)
    assert report["fps"] == pytest.approx(report["frames_out"] / (report["wall_s"] - waited), rel=0.01)
    assert report["fps"] > report["frames_out"] / report["wall_s"]


class _NoLockWaits:
    """Stands in for the chain's stop event: the main thread must never wait on its lock."""

    def __init__(self, event):
        self.event, self.waits = event, 0

    def wait(self, timeout=None):
        self.waits += 1
        return self.event.wait(timeout)

    def __getattr__(self, name):
        return getattr(self.event, name)


def test_headless_main_thread_never_waits_on_the_stop_events_lock():
    """Ctrl-C raised just after Event.wait took the event's internal lock leaks that lock (a CPython
    race), and the stop path's stop_event.set() would then block forever: the headless main loop
    must idle without entering the event's lock."""
    runner = Runner(config(), str(VIDEO), log=open(os.devnull, "w"))
    runner.start()
    spy = _NoLockWaits(runner.chain.stop_event)
    runner.chain.stop_event = spy
    try:
        deadline = time.monotonic() + 60
        while runner.stats.frames_out < 3 and time.monotonic() < deadline:
            runner.step()
    finally:
        runner.chain.stop_event = spy.event
        runner.finish()
    assert spy.waits == 0
