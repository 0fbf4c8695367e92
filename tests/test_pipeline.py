"""The whole chain on real video: outputs, every stop path, live drops."""
import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from conftest import REPO, YOLOX_ONNX, need
from pipeline.build import build_detector, detector_config
from pipeline.config import DEFAULT_CONFIG, SourceConfig, load_config
from pipeline.runner import Runner
from pipeline.stages import StageError
from pipeline.sources import open_source

pytestmark = pytest.mark.timeout(120)


def config(tmp_path, **over):
    need(YOLOX_ONNX)
    base = {"output.show": "no", "output.progress": False,
            "output.save_video": str(tmp_path / "out.mp4"), "output.save_json": str(tmp_path / "out.jsonl"),
            "output.save_mot": str(tmp_path / "out.txt"), "output.stats_json": str(tmp_path / "stats.json")}
    base.update(over)
    return load_config(DEFAULT_CONFIG, base)


def decoded_frames(path):
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(c.streams.video[0])]


def json_lines(path):
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]   # raises on a partial line


def test_file_headless_writes_every_frame(tmp_path, small2):
    report = Runner(config(tmp_path), str(small2)).run()
    assert report["frames_in"] == report["frames_out"] == 100 and report["dropped"] == {}
    times = decoded_frames(tmp_path / "out.mp4")
    assert len(times) == 100
    assert np.allclose(np.diff(times), 0.04, atol=1e-3)    # the source's 25 fps timing, not a fixed rate
    rows = json_lines(tmp_path / "out.jsonl")
    assert [r["index"] for r in rows] == list(range(100))
    with_car = sum(any(b["class"] == "car" for b in r["boxes"]) for r in rows)
    assert with_car >= 90, f"cars boxed in only {with_car} of 100 frames"
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert {"preprocess", "inference", "decode", "output"} <= set(stats["stages"])
    assert stats["latency"]["p99_ms"] >= stats["latency"]["p50_ms"] > 0


def test_annotated_video_shows_boxes(tmp_path, small2):
    """The saved frames differ from the source where boxes are drawn."""
    Runner(config(tmp_path, **{"source.max_frames": 5}), str(small2)).run()
    rows = json_lines(tmp_path / "out.jsonl")
    i = next(i for i, r in enumerate(rows) if r["boxes"])   # a new track shows from its 2nd hit
    row = rows[i]
    with av.open(str(tmp_path / "out.mp4")) as c:
        out = list(c.decode(c.streams.video[0]))[i].to_ndarray(format="bgr24").astype(int)
    src = list(open_source(str(small2), SourceConfig(max_frames=5)))[i].image.astype(int)
    x1, y1, x2, y2 = (int(v) for v in row["boxes"][0]["xyxy"])
    edge = np.abs(out[y1 + 3:y2 - 3, x1:x1 + 2] - src[y1 + 3:y2 - 3, x1:x1 + 2]).mean()
    inside = np.abs(out[y1 + 10:y2 - 10, x1 + 10:x2 - 10] - src[y1 + 10:y2 - 10, x1 + 10:x2 - 10]).mean()
    assert edge > 40 > 8 > inside     # a drawn edge; the inside untouched up to coding noise


def test_parallel_inference_gives_the_same_outputs(tmp_path, small2):
    """Two inference workers (the CPU default) and one give identical tracks, in order."""
    rows = {}
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        out.mkdir()
        cfg = config(out, **{"detector.workers": w, "source.max_frames": 40, "output.save_video": None})
        runner = Runner(cfg, str(small2))
        assert next(s for s in runner.stages if s.name == "inference").workers == w
        runner.run()
        rows[w] = json_lines(out / "out.jsonl")
    assert [r["index"] for r in rows[2]] == list(range(40))
    assert rows[1] == rows[2]


@pytest.mark.parametrize("convert, tune", [("opencv", "zerolatency"), ("ffmpeg", None)])
def test_encoder_settings_give_the_same_picture(tmp_path, small2, convert, tune):
    from pipeline.outputs import VideoWriter

    src = [f.image for f in open_source(str(small2), SourceConfig(max_frames=10))]
    w = VideoWriter(str(tmp_path / "o.mp4"), fps_hint=25.0, convert=convert, tune=tune, threads=1)
    for i, img in enumerate(src):
        w.write(img, i / 25.0)
    w.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        out = [f.to_ndarray(format="bgr24").astype(float) for f in c.decode(c.streams.video[0])]
    assert len(out) == 10
    psnr = [10 * np.log10(255 ** 2 / np.mean((o - s) ** 2)) for o, s in zip(out, src)]
    assert min(psnr) > 30, psnr          # the colour conversion keeps the picture (no channel swap)


def _inject(runner, stage, at=10):
    spec = next(s for s in runner.stages if s.name == stage)
    inner = spec.fn

    def fn(packet):
        if packet.frame.index == at:
            raise RuntimeError(f"injected fault in {stage}")
        return inner(packet)
    spec.fn = fn


@pytest.mark.parametrize("stage", ["preprocess", "inference", "decode", "track", "output"])
def test_fault_in_each_stage_surfaces_named_and_outputs_stay_valid(tmp_path, example_video, stage):
    runner = Runner(config(tmp_path, **{"pipeline.track": stage == "track"}), str(example_video))
    _inject(runner, stage)
    t0 = time.monotonic()
    with pytest.raises(StageError) as e:
        runner.run()
    assert e.value.stage == stage and f"{stage} stage failed: injected fault in {stage}" in str(e.value)
    assert time.monotonic() - t0 < 30
    assert not any(t.is_alive() for t in runner.chain.threads)
    rows = json_lines(tmp_path / "out.jsonl")
    assert len(rows) <= 10 and [r["index"] for r in rows] == list(range(len(rows)))
    assert len(decoded_frames(tmp_path / "out.mp4")) == len(rows)
    assert runner.report["stop_reason"] == "error"


def test_fault_in_capture_surfaces_named(tmp_path, example_video):
    src = open_source(str(example_video))
    frames = iter(src)

    class Failing:
        name, live, fps, frame_count_hint = src.name, False, src.fps, None

        def __iter__(self):
            for f in frames:
                if f.index == 10:
                    raise OSError("disk went away")
                yield f

        def close(self):
            src.close()

    with pytest.raises(StageError, match="capture stage failed: disk went away"):
        Runner(config(tmp_path), Failing()).run()
    assert len(json_lines(tmp_path / "out.jsonl")) == 10


def _run_cli(args, **kw):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, str(REPO / "run_stream.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_finalizes_outputs(tmp_path):
    need(YOLOX_ONNX)
    out = tmp_path / "live.mp4"
    jl = tmp_path / "live.jsonl"
    # SIGINT back to its default in the child: started from a background job of a non-interactive
    # shell, the test run inherits SIGINT ignored, and so would the child (../shared/PLATFORM.md).
    proc = _run_cli(["--source", "lavfi:testsrc2=size=1280x720:rate=25,realtime", "--no-show",
                     "--save-video", str(out), "--save-json", str(jl)],
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jl.exists() or len(jl.read_text().splitlines()) < 15):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    rows = json_lines(jl)
    assert len(rows) >= 15
    assert len(decoded_frames(out)) == len(rows)
    assert "interrupted" in err


@pytest.mark.parametrize("args, message, code", [
    # --model lite: the shipped model, so the error is the only line with or without ../shared
    (["--source", "nope.mp4", "--model", "lite"], "error: nope.mp4: no such file or folder", 1),
    (["--source", "camera5", "--model", "lite"], "error: camera5: no camera at index 5", 1),
    (["--source", "x.mp4", "--config", "nope.yaml"], "error: config file nope.yaml not found", 2),
    (["--source", "examples/test_video.mp4", "--model", "missing.onnx"], "missing.onnx not found", 1),
    (["--source", "x.mp4", "--set", "workers=2"], "error: --set 'workers=2': expected SECTION.KEY=VALUE", 2),
    (["--source", "x.mp4", "--set", "detector.nope=1"], "config.detector: unknown key 'nope'", 2),
    (["--source", "x.mp4", "--set", "detector.workers=-1"], "detector.workers -1 / threads 0: must be >= 0", 2),
])
def test_cli_errors_are_one_line(args, message, code):
    proc = _run_cli(args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, model, imgsz", [
    ([], "models/weights/dashcam.onnx", 640),
    (["--imgsz", "672"], "models/weights/dashcam.onnx", 672),
    (["--model", "lite"], "models/weights/lite.onnx", 640),            # fixed 288x512 file: runs at its own shape
    (["--model", "yolox_nano"], "teachers/yolox_nano/yolox_nano.onnx", 640),
], ids=["default", "imgsz", "lite", "yolox_nano"])
def test_default_model_is_shipped_and_presets_stay(args, model, imgsz, capsys):
    """The default config's model lives in the repo (no fallback, no note); --model and --imgsz override it."""
    import run_stream

    cfg = run_stream.build_config(run_stream.parse_args(["--source", "x.mp4"] + args))
    assert cfg.detector.model.endswith(model) and cfg.detector.imgsz == imgsz
    assert capsys.readouterr().err == ""


def test_cli_bad_yaml_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  queue_size: 4\n  dorp_policy: block\n")
    proc = _run_cli(["--source", "x.mp4", "--config", str(bad)])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "unknown key 'dorp_policy' (did you mean 'drop_policy'?)" in err


class AtLeast:
    """The real detector, with each ``infer`` call taking at least ``seconds``: a device slower
    than the source on any machine (a fast CI runner kept up with 81 of 100 fps unslowed)."""

    def __init__(self, detector, seconds: float):
        self._detector, self._seconds = detector, seconds

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def infer(self, batch):
        t0 = time.perf_counter()
        raw = self._detector.infer(batch)
        time.sleep(max(0.0, self._seconds - (time.perf_counter() - t0)))
        return raw


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_live_source_faster_than_inference_drops_and_latency_stays_flat(tmp_path):
    """A 100 fps live source for 30 s into inference that takes at least 40 ms a frame (two
    workers: at most 50 fps): the pipeline drops the oldest frames (counted) and latency stays
    bounded instead of growing."""
    cfg = config(tmp_path, **{"output.save_video": None, "output.save_mot": None})
    detector = AtLeast(build_detector(detector_config(cfg)), 0.04)
    runner = Runner(cfg, "lavfi:testsrc2=size=640x360:rate=100:duration=30,realtime", detector=detector)
    assert runner.policy == "drop_oldest"
    report = runner.run()
    assert report["frames_in"] > 1000
    assert sum(report["dropped"].values()) > 0.2 * report["frames_in"]
    assert report["frames_in"] == report["frames_out"] + sum(report["dropped"].values())
    lat = np.array(runner.stats.latency) * 1000
    third = len(lat) // 3
    early, late = np.median(lat[:third]), np.median(lat[-third:])
    assert late < max(2 * early, early + 50), f"latency grew: {early:.0f} -> {late:.0f} ms"
    assert np.percentile(lat, 99) < 1000
