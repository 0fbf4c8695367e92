"""The command line's habits (issue 18): --conf, --classes, --imgsz, --loop, --realtime, --device,
no abbreviated flags, the start line, and the ``fleet`` subcommand's dispatch.  Real runs of
``run_stream.py`` (the ``dashtrack`` command's wrapper) on examples/test_video.mp4 (38 frames, 1280x720)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VIDEO = REPO / "examples" / "test_video.mp4"
FRAMES = 38


def _cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _cli(*args, cwd, timeout=180):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, str(REPO / "run_stream.py"), "--no-show", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# -- refused: one line, exit 2, no traceback, nothing written ------------------------------------------
REFUSED = [
    ("abbreviated-flag", ["--save-j", "out.jsonl"], "unrecognized arguments: --save-j"),
    ("conf-prefix-not-config", ["--con", "0.4"], "unrecognized arguments: --con"),
    ("conf-out-of-range", ["--conf", "1.5"], "detector.score_threshold: 1.5 must be in [0, 1]"),
    ("device-unknown", ["--device", "banana"], "--device banana: unknown device; use auto, cpu, cuda or cuda:N"),
    ("device-cuda-index-text", ["--device", "cuda:x"], "use auto, cpu, cuda or cuda:N"),
    ("class-misspelt", ["--classes", "car,persn"], "'persn' is not a class (did you mean 'person'?); valid: person, "
                                                    "bicycle, car"),
    ("class-id-too-big", ["--classes", "80"], "id 80 is not a COCO class id; use 0..79"),
    ("classes-empty", ["--classes", ","], "no class given"),
    ("class-not-in-model", ["--classes", "dog"], "['dog'] not among the model's classes; allowed: person, bicycle"),
    ("loop-zero", ["--loop", "0"], "source.loop: 0 must be in 1..1000000"),
    ("imgsz-tiny", ["--imgsz", "8"], "detector.imgsz: 8 must be in [32, 4096]"),
]


@pytest.mark.parametrize("args, message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(tmp_path, args, message):
    proc = _cli("--source", str(VIDEO), "--quiet", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and (last.startswith("error: ") or last.startswith("dashtrack: error: ")), proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA: --device cuda is valid here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"], ids=["cuda", "cuda-0"])
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path, device):
    proc = _cli("--source", str(VIDEO), "--device", device, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --device {device}: no CUDA here"), proc.stderr
    assert "--device cpu" in lines[0]


# -- runs: what each flag does to the output ---------------------------------------------------------------
def _frames(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _dets(frames):
    return [b for f in frames for b in f["boxes"] if not b["coasted"]]


RUNS = [
    ("conf", ["--conf", "0.7"], "score >= 0.7",
     lambda fr: _dets(fr) and min(b["score"] for b in _dets(fr)) >= 0.7),
    ("score-threshold-alias", ["--score-threshold", "0.7"], "score >= 0.7",
     lambda fr: _dets(fr) and min(b["score"] for b in _dets(fr)) >= 0.7),
    ("classes-by-name", ["--classes", "car"], "classes car,",
     lambda fr: _dets(fr) and {b["det_class"] for b in _dets(fr)} == {"car"}),
    ("classes-by-coco-id", ["--classes", "2,0", "--no-track"], "classes car,person, tracker off",
     lambda fr: _dets(fr) and {b["class"] for b in _dets(fr)} <= {"car", "person"}),
    ("imgsz", ["--imgsz", "320"], "input 192x320 for 1280x720 frames",
     lambda fr: len(fr) == FRAMES),
    ("default-start-line", ["--device", "cpu"], "run: dashcam.onnx (onnx on cpu), input 384x640 for 1280x720 frames, "
     "score >= 0.1,",          # the floor the tracker's second pass gets
     lambda fr: len(fr) == FRAMES and _dets(fr)),
    ("no-track-start-line", ["--device", "cpu", "--no-track"], "input 384x640 for 1280x720 frames, score >= 0.3,", lambda fr: len(fr) == FRAMES and _dets(fr)),
    ("loop-twice", ["--loop", "2"], "tracker on (new tracks at score >= 0.5)",
     lambda fr: [f["index"] for f in fr] == list(range(2 * FRAMES))
     and all(b["timestamp"] > a["timestamp"] for a, b in zip(fr, fr[1:]))),
    ("clone-relative-model-from-elsewhere", ["--model", "models/weights/lite.onnx", "--max-frames", "3", "--device", "cpu"],
     "run: lite.onnx (onnx on cpu), input 288x512", lambda fr: len(fr) == 3),
    ("clone-relative-config-from-elsewhere", ["--config", "configs/default.yaml", "--max-frames", "3"],
     "run: dashcam.onnx", lambda fr: len(fr) == 3),
    ("loop-with-max-frames", ["--loop", "3", "--max-frames", "50"], "tracker on",
     lambda fr: [f["index"] for f in fr] == list(range(50))),
]


@pytest.mark.parametrize("args, line, check", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_runs(tmp_path, args, line, check):
    proc = _cli("--source", str(VIDEO), "--save-json", "out.jsonl", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    starts = [s for s in proc.stderr.splitlines() if s.startswith("run: ")]
    assert len(starts) == 1 and line in starts[0], proc.stderr
    assert check(_frames(tmp_path / "out.jsonl"))


NOTES = [
    ("quiet-no-start-line", ["--source", str(VIDEO), "--quiet"], None, "run: "),
    ("device-auto-on-cpu", ["--source", str(VIDEO), "--device", "auto", "--max-frames", "3"],
     "note: --device auto: no CUDA here, running on the CPU", None),
    ("device-cpu-no-note", ["--source", str(VIDEO), "--device", "cpu", "--max-frames", "3"],
     "(onnx on cpu)", "note: --device"),
    ("loop-on-live-source", ["--source", "lavfi:testsrc2=size=320x240:rate=25", "--loop", "2", "--max-frames", "5"],
     "note: --loop 2 ignored for lavfi:testsrc2=size=320x240:rate=25: a live source is not replayed", None),
    ("realtime-on-live-source", ["--source", "lavfi:testsrc2=size=320x240:rate=25", "--realtime", "--max-frames", "5"],
     "is live and runs at its own pace anyway", None),
]


@pytest.mark.parametrize("args, present, absent", [r[1:] for r in NOTES], ids=[r[0] for r in NOTES])
def test_notes(tmp_path, args, present, absent):
    if present and "device auto" in present and _cuda():
        pytest.skip("this machine has CUDA: auto takes it, no note")
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if present:
        assert present in proc.stderr
    if absent:
        assert absent not in proc.stderr


def test_realtime_paces_a_file(tmp_path):
    """4 images at --fps 2 span 1.5 s of timestamps: paced, the run takes at least that long (a lower bound,
    not a speed claim; unpaced, 4 frames take a fraction of it)."""
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    for i in range(4):
        ok, image = cap.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), image)
    cap.release()
    proc = _cli("--source", str(tmp_path), "--fps", "2", "--realtime", "--stats-json", "s.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["frames_out"] == 4 and report["wall_s"] >= 1.4, report["wall_s"]


# -- the ``fleet`` subcommand is a dispatch ------------------------------------------------------------------
def test_fleet_word_dispatches_to_pipeline_fleet(monkeypatch):
    from pipeline import command, fleet

    assert command.SUBCOMMANDS["fleet"] is fleet.main
    seen = []
    monkeypatch.setitem(command.SUBCOMMANDS, "fleet", lambda argv: seen.append(argv) or 7)
    assert command.main(["fleet", "drives/", "--out", "o"]) == 7
    assert seen == [["drives/", "--out", "o"]]


def test_a_source_named_fleet_needs_the_flag():
    """Only the first word selects the subcommand; --source fleet is a source like any other."""
    from pipeline import cli

    args = cli.parse_args(["--source", "fleet"])
    assert args.source == ["fleet"]
