"""Issue 21 item 4: the outputs share one protocol (open / write(frame, detections, drawn) / close(report))
and the runner iterates a list built from the config. A custom sink added with no runner edit gets
every frame and is closed on every path (end, error, Ctrl-C). The detector is the shipped ``lite``."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO
from pipeline import sinks
from dashtrack_core.configtools import ConfigError
from pipeline.outputs import JsonlWriter, OutputError
from dashtrack_core.records import Detections, Frame
from pipeline.runner import Runner
from pipeline.stages import StageError
from test_reliability import VIDEO, cli, config, one_error_line

pytestmark = pytest.mark.timeout(180)
FRAMES = 38                                  # examples/test_video.mp4


class Recorder:
    """A sink of the caller's: the frames it was given, and how it was closed."""

    def __init__(self, fail_on: str | None = None, at: int = 0):
        self.fail_on, self.at = fail_on, at
        self.opened, self.frames, self.closes, self.images = 0, [], [], 0

    def open(self):
        if self.fail_on == "open":
            raise OutputError("recorder: cannot open")
        self.opened += 1

    def write(self, frame, detections, drawn):
        if self.fail_on == "write" and frame.index == self.at:
            raise RuntimeError("recorder broke")
        self.frames.append(frame.index)
        if frame.index % 10 == 0:
            assert drawn.image().shape == frame.image.shape    # the annotated frame, drawn on demand
            self.images += 1

    def close(self, report):
        self.closes.append(report)
        if self.fail_on == "close":
            raise RuntimeError("recorder could not flush")


def test_a_custom_sink_gets_every_frame_and_one_close_with_the_report(tmp_path):
    rec = Recorder()
    jl = tmp_path / "o.jsonl"
    report = Runner(config(**{"output.save_json": str(jl)}), str(VIDEO), outputs=[rec]).run()
    assert rec.opened == 1 and rec.frames == list(range(FRAMES)) and rec.images == 4
    assert len(rec.closes) == 1 and rec.closes[0] is report and report["frames_out"] == FRAMES
    assert len(jl.read_text().splitlines()) == FRAMES          # the configured outputs still run


class Counter:
    """A new output type: one class with ``from_run``, registered in ``OUTPUT_TYPES``."""

    made: list = []

    def __init__(self, run):
        self.run, self.n, self.closed = run, 0, None
        Counter.made.append(self)

    @classmethod
    def from_run(cls, run):
        return cls(run)

    def open(self):
        pass

    def write(self, frame, detections, drawn):
        self.n += 1

    def close(self, report):
        self.closed = report["frames_out"]


def test_a_new_output_type_is_built_from_the_registry_with_no_runner_edit(monkeypatch):
    Counter.made = []
    monkeypatch.setattr(sinks, "OUTPUT_TYPES", sinks.OUTPUT_TYPES + (Counter,))
    Runner(config(), str(VIDEO)).run()
    (c,) = Counter.made
    assert c.n == FRAMES and c.closed == FRAMES and c.run.class_names and c.run.source.endswith("test_video.mp4")


# The configured outputs come before the caller's: the JSONL has frame 5 when the sink fails on it.
@pytest.mark.parametrize("fail_on, error, frames_before, jsonl_lines", [
    ("write", StageError, 5, 6),            # an output failing mid-run: the run stops, every output closed
    ("close", StageError, FRAMES, FRAMES),  # an output failing to close: the others are closed all the same
], ids=["write_fails", "close_fails"])
def test_every_sink_is_closed_when_one_fails(tmp_path, fail_on, error, frames_before, jsonl_lines):
    bad, rec = Recorder(fail_on, at=5), Recorder()
    jl = tmp_path / "o.jsonl"
    runner = Runner(config(**{"output.save_json": str(jl)}), str(VIDEO), outputs=[bad, rec])
    with pytest.raises(error, match="output stage failed: recorder"):
        runner.run()
    assert rec.frames == list(range(frames_before))
    assert len(rec.closes) == 1 and len(bad.closes) == 1
    assert rec.closes[0]["stop_reason"] == ("error" if fail_on == "write" else "end of input")
    assert len(jl.read_text().splitlines()) == jsonl_lines     # whole lines up to the failure


def test_a_sink_that_cannot_open_closes_the_ones_opened_before():
    first, bad = Recorder(), Recorder("open")
    with pytest.raises(OutputError, match="recorder: cannot open"):
        Runner(config(), str(VIDEO), outputs=[first, bad])
    assert first.opened == 1 and first.closes == [None] and bad.closes == []


def test_an_object_that_is_not_a_sink_is_refused_with_one_line():
    with pytest.raises(OutputError, match=r"needs open\(\), write\(frame, detections, drawn\) and close\(report\)"):
        Runner(config(), str(VIDEO), outputs=[object()])


CHILD = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)   # a background job may inherit it ignored
    from test_reliability import config
    from pipeline.runner import Runner

    log = open(sys.argv[1], "w", buffering=1)

    class Sink:
        def open(self): log.write("open\\n")
        def write(self, frame, detections, drawn): log.write(f"frame {frame.index}\\n")
        def close(self, report): log.write(f"close {report['frames_out']} {report['stop_reason']}\\n")

    runner = Runner(config(), "lavfi:testsrc2=size=640x360:rate=25,realtime", outputs=[Sink()])
    runner.run()
    sys.exit(130 if runner.interrupted else 0)
""")


def test_ctrl_c_closes_a_custom_sink_after_every_frame_it_was_given(tmp_path):
    log = tmp_path / "sink.log"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(log)], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and (
            not log.exists() or log.read_text().count("frame ") < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    lines = log.read_text().splitlines()
    assert lines[0] == "open" and lines[-1].startswith("close ") and lines[-1].endswith("interrupted (Ctrl-C)")
    frames = [ln for ln in lines if ln.startswith("frame ")]
    assert len(frames) >= 8 and int(lines[-1].split()[1]) == len(frames)     # every frame output reached it
    assert sum(ln.startswith("close") for ln in lines) == 1


# -- the JSONL writes extra columns generically --------------------------------------------------
@pytest.mark.parametrize("column, values, expect", [
    ("det_class", np.array([2, -1], np.int32), [{"det_class_id": 2, "det_class": "car"},
                                                {"det_class_id": None, "det_class": None}]),
    ("lane_class", np.array([0, 1], np.int64), [{"lane_class_id": 0, "lane_class": "a"},
                                                {"lane_class_id": 1, "lane_class": "b"}]),
    ("ttc_s", np.array([1.23456, np.nan]), [{"ttc_s": 1.2346}, {"ttc_s": None}]),
    ("in_path", np.array([True, False]), [{"in_path": True}, {"in_path": False}]),
    ("class_votes", np.array([3, 0], np.int32), [{"class_votes": 3}, {"class_votes": 0}]),  # not *_class: an int
], ids=["det_class", "any_class_column", "float_nan_null", "bool", "plain_int"])
def test_jsonl_writes_each_column_by_its_kind(tmp_path, column, values, expect):
    path = tmp_path / "o.jsonl"
    w = JsonlWriter(str(path), ["a", "b", "car"])
    dets = Detections(np.array([[0, 0, 5, 5], [1, 1, 6, 6]]), np.array([0.9, 0.5]), np.array([2, 0]),
                      columns={column: values})
    w.write(Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, "x"), dets)
    w.close()
    boxes = json.loads(path.read_text())["boxes"]
    assert [{k: b[k] for k in e} for b, e in zip(boxes, expect)] == expect
    assert list(boxes[0])[:6] == ["xyxy", "class_id", "class", "score", "track_id", "coasted"]


# -- --report is checked like the other outputs --------------------------------------------------
@pytest.mark.parametrize("args, message, code", [
    (["--report", "r.txt"], "--report r.txt: the report is an HTML page; give a file name ending in .html", 2),
    (["--report", "o.html", "--save-json", "o.html"], "both write o.html; give each output its own file", 2),
    (["--report", "missing/r.html"], "--report missing/r.html: folder missing does not exist", 1),
    (["--report", "folder.html"], "--report folder.html: is a folder", 1),
], ids=["not_html", "same_path_as_jsonl", "missing_folder", "a_folder"])
def test_a_bad_report_path_is_one_line_before_the_run(tmp_path, args, message, code):
    (tmp_path / "folder.html").mkdir()
    proc = cli("--source", VIDEO, "--save-mot", "m.txt", *args, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in one_error_line(proc)
    assert not (tmp_path / "m.txt").exists()


def test_the_report_may_not_overwrite_the_input(tmp_path):
    clip = tmp_path / "drive.html"
    clip.write_bytes(VIDEO.read_bytes())
    with pytest.raises(ConfigError, match="--report .*drive.html is the input"):
        Runner(config(**{"output.report": str(clip)}), str(clip))


def test_several_sources_get_one_report_each():
    from pipeline.multi import per_source_config

    cfg = config(**{"output.report": "run/r.html", "output.save_json": "run/o.jsonl"})
    outs = [per_source_config(cfg, i, 2, "x.mp4").output for i in range(2)]
    assert [o.report for o in outs] == ["run/r_0.html", "run/r_1.html"]
    assert per_source_config(cfg, 0, 1, "x.mp4").output.report == "run/r.html"
