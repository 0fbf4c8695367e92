"""pipeline/build.py: one builder; fields a backend does not use are refused or noted; the model file's
preprocessing and shape against a contradicting config; the user's values win on a machine without ../shared."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.build import COMMON, PREPROCESS, UNUSED, build_detector, check_fields, shipped_detector, torch_arguments
from pipeline.config import DetectorConfig
from dashtrack_core.configtools import ConfigError
from pipeline.model_file import FILE_FIELDS, file_wins
from pipeline.onnx_detector import DetectorError

REPO = Path(__file__).resolve().parents[1]
DASHCAM = str(REPO / "models" / "weights" / "dashcam.onnx")    # dynamic shape, metadata: bgr, pad 114
LITE = str(REPO / "models" / "weights" / "lite.onnx")          # fixed 288x512, metadata: rgb, pad 0
TORCH = DetectorConfig(backend="torch", model="resnet18_s16")
ONNX = DetectorConfig(backend="onnx", model=DASHCAM)

# (config, refused with a message containing this | None)
FIELDS = [
    pytest.param(dataclasses.replace(TORCH, workers=3), "detector.workers=3: the torch backend", id="torch_workers"),
    pytest.param(dataclasses.replace(TORCH, threads=2), "detector.threads=2", id="torch_threads"),
    pytest.param(dataclasses.replace(TORCH, spin=False), "detector.spin=false", id="torch_spin"),
    pytest.param(dataclasses.replace(TORCH, format="yolox"), "detector.format=yolox", id="torch_format_set"),
    pytest.param(dataclasses.replace(ONNX, half=True), "detector.half=true: the onnx backend", id="onnx_half"),
    pytest.param(dataclasses.replace(TORCH, format="decoded"), None, id="torch_format_shipped_default_noted"),
    pytest.param(TORCH, None, id="torch_dataclass_defaults_silent"),
    pytest.param(dataclasses.replace(TORCH, top_k=5, input_size=(320, 320)), None, id="torch_top_k_input_size_used"),
    pytest.param(dataclasses.replace(ONNX, workers=3, threads=1, spin=False), None, id="onnx_runtime_fields_used"),
    pytest.param(dataclasses.replace(TORCH, model="x.onnx", half=True), "the onnx backend", id="onnx_file_under_torch"),
]


@pytest.mark.parametrize("cfg, refused", FIELDS)
def test_builder_refuses_fields_the_backend_ignores(cfg, refused):
    notes: list[str] = []
    if refused:
        with pytest.raises(ConfigError, match=refused.replace("[", r"\[")) as e:
            check_fields(cfg, "onnx" if cfg.model.endswith(".onnx") or cfg.backend == "onnx" else "torch",
                         note=notes.append)
        assert "\n" not in str(e.value)
    else:
        check_fields(cfg, cfg.backend, note=notes.append)
    expect_note = cfg.backend == "torch" and cfg.format == shipped_detector().format
    assert len(notes) == (1 if expect_note else 0), notes
    assert all("\n" not in n and "from the defaults" in n for n in notes)


def test_every_detector_field_has_one_place():
    """Each field is used by every backend, carried by the model file, or listed as unused by a backend."""
    classified = set(COMMON) | set(PREPROCESS) | {k for v in UNUSED.values() for k in v}
    assert classified == {f.name for f in dataclasses.fields(DetectorConfig)}
    assert set(PREPROCESS) <= set(FILE_FIELDS)


def test_torch_arguments_map_every_used_field():
    cfg = dataclasses.replace(TORCH, top_k=5, input_size=(320, 320), score_threshold=0.25, classes=("car",))
    args = torch_arguments(cfg, "cpu")
    assert args == dict(device="cpu", score_threshold=0.25, nms_iou=0.45, max_detections=100, top_k=5,
                        classes=("car",), half=False, imgsz=None, input_size=(320, 320))


# (config value, file value, the value that runs, notes)
PREP = [
    pytest.param({"color": "rgb"}, {"color": "bgr"}, {"color": "bgr"}, 1, id="color_contradicts_file_wins"),
    pytest.param({"color": "bgr"}, {"color": "rgb"}, {"color": "rgb"}, 0, id="config_default_silent"),
    pytest.param({"pad_value": 0.0}, {"pad_value": 0}, {"pad_value": 0.0}, 0, id="same_value_silent"),
    pytest.param({"mean": (1.0, 2.0, 3.0)}, {"mean": [0, 0, 0]}, {"mean": (0.0, 0.0, 0.0)}, 1, id="mean_list_vs_tuple"),
    pytest.param({"letterbox": "center"}, {"variant": "x", "stride": 32}, {"letterbox": "center"}, 0,
                 id="file_without_preprocessing_config_used"),
]


@pytest.mark.parametrize("ours, theirs, runs, n_notes", PREP)
def test_model_file_preprocessing_wins_with_one_line(ours, theirs, runs, n_notes):
    notes: list[str] = []
    out = file_wins(dataclasses.replace(ONNX, **ours), theirs, "m.onnx", notes.append)
    assert {k: getattr(out, k) for k in runs} == runs
    assert len(notes) == n_notes
    assert all("the model file wins" in n and "m.onnx" in n for n in notes)


# (config, expected (fixed shape, imgsz) | error text) against the shipped files' shapes
SHAPES = [
    pytest.param(dataclasses.replace(ONNX, model=LITE, format="auto", imgsz=None, input_size=(320, 320)),
                 "fixed 288x512 input but detector.input_size is [320, 320]", id="fixed_file_refuses_other_shape"),
    pytest.param(dataclasses.replace(ONNX, model=LITE, format="auto", imgsz=None, input_size=(288, 512)),
                 ((288, 512), None), id="fixed_file_same_shape"),
    pytest.param(dataclasses.replace(ONNX, imgsz=None, input_size=(320, 320)), ((320, 320), None),
                 id="dynamic_file_config_shape_wins"),
    pytest.param(dataclasses.replace(ONNX, imgsz=None), (None, 672), id="dynamic_file_default_from_metadata"),
    pytest.param(dataclasses.replace(ONNX, imgsz=640), (None, 640), id="dynamic_file_imgsz_wins"),
]


@pytest.mark.parametrize("cfg, expect", SHAPES)
def test_model_file_shape_against_config(cfg, expect):
    if isinstance(expect, str):
        with pytest.raises(DetectorError, match=expect.replace("[", r"\[")):
            build_detector(cfg, note=lambda s: None)
        return
    det = build_detector(cfg, note=lambda s: None)
    assert (det.fixed_shape, det.imgsz) == expect


def test_onnx_metadata_wins_over_config_color(capsys):
    det = build_detector(dataclasses.replace(ONNX, color="rgb", pad_value=0.0))
    assert (det.cfg.color, det.cfg.pad_value) == ("bgr", 114.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("note: detector.") for line in err)


# The user's values win over the shipped model's preset, also with the shared data folder absent.
USER_WINS = [pytest.param([], id="default"), pytest.param(["--model", "dashcam"], id="model_dashcam"),
             pytest.param(["--model", "lite"], id="model_lite")]


@pytest.mark.parametrize("extra", USER_WINS)
def test_user_values_win_without_shared(extra, tmp_path):
    code = (
        "import sys, run_stream\n"
        "from pipeline.build import build_detector\n"
        "cfg = run_stream.build_config(run_stream.parse_args(sys.argv[1:]))\n"
        "det = build_detector(cfg.detector)\n"
        "print(cfg.detector.score_threshold, cfg.detector.top_k, det.cfg.score_threshold, det.cfg.top_k,"
        " det.cfg.nms_iou)\n"
    )
    args = ["--source", "x.mp4", *extra, "--score-threshold", "0.55", "--set", "detector.top_k=7",
            "--set", "detector.nms_iou=0.6"]
    env = {"DASHTRACK_SHARED_DATA": str(tmp_path), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.55", "7", "0.55", "7", "0.6"]


# (score_threshold, track, tracker.low_score) -> the detector's floor, notes
FLOOR = [
    pytest.param(None, True, None, 0.1, 0, id="default_tracked_floor_is_low_score"),
    pytest.param(None, False, None, 0.3, 0, id="untracked_keeps_threshold"),
    pytest.param(0.6, True, None, 0.6, 1, id="asked_threshold_wins_with_note"),
    pytest.param(None, True, 0.4, 0.3, 0, id="low_score_above_threshold"),
    pytest.param(0.05, True, None, 0.05, 0, id="asked_below_low_score"),
]


@pytest.mark.parametrize("threshold, track, low, floor, n_notes", FLOOR)
def test_detector_floor_follows_the_tracker_low_pass(threshold, track, low, floor, n_notes):
    from pipeline.build import detector_config
    from pipeline.config import load_config

    cfg = load_config(overrides={"detector.score_threshold": threshold, "pipeline.track": track,
                                 "tracker.low_score": low})
    notes: list[str] = []
    assert detector_config(cfg, note=notes.append).score_threshold == floor
    assert len(notes) == n_notes
