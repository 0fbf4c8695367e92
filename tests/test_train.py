"""tools/train.py: a short real training run, config errors, resume, and the shipped default model."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, SHARED  # ($DASHTRACK_SHARED_DATA, else ../shared/data)
from dashtrack_core.configtools import ConfigError
from tools.train import main, train
from tools.training.config import TrainError, load_config

UDACITY = SHARED / "images" / "udacity"
TEACHER = SHARED / "teachers" / "yolox_nano" / "yolox_nano.onnx"
SHIPPED = REPO / "models" / "weights" / "lite.onnx"
needs_shared = pytest.mark.skipif(not (UDACITY / "test1.jpg").is_file() or not TEACHER.is_file(),
                                  reason="../shared/data (Udacity stills, YOLOX-Nano teacher) is absent")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Three real Udacity stills, downscaled to 320x180, labelled by a single YOLOX-Nano pass (YOLO format)."""
    from pipeline.config import DetectorConfig
    from pipeline.onnx_detector import OnnxDetector

    root = tmp_path_factory.mktemp("tiny")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    det = OnnxDetector(DetectorConfig(model=str(TEACHER), format="yolox", input_size=(416, 416), class_names="coco",
                                      score_threshold=0.3, threads=2))
    names = ["person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light"]
    for i in (1, 3, 4):
        img = cv2.imread(str(UDACITY / f"test{i}.jpg"))
        d = det.detect([img])[0]
        small = cv2.resize(img, (320, 180), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "images" / f"test{i}.jpg"), small)
        h, w = img.shape[:2]
        rows = []
        for box, c in zip(d.xyxy, d.class_id):
            name = det.class_names[int(c)] if hasattr(det, "class_names") else names[int(c)]
            if name not in names:
                continue
            x1, y1, x2, y2 = box
            rows.append(f"{names.index(name)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                        f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (root / "labels" / f"test{i}.txt").write_text("\n".join(rows) + "\n")
    (root / "labels" / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def tiny_config(tmp_path: Path, data: Path, **schedule) -> Path:
    cfg = {
        "variant": "mobilenetv2_s16", "name": "tiny", "input_size": [128, 224],
        "fastdet": {"trunk_blocks": 7, "channels": 16, "fusion": True, "dilations": [], "head_convs": 1,
                    "offset_span": 4.0},
        "loss": {"center_radius": [1.0, 1.5], "obj_iou": 0.5, "giou_weight": 1.0},  # the shipped recipe's assignment
        "data": {"train": [{"path": str(data)}], "val": [{"path": str(data), "select": "0:1"}]},
        "schedule": {"epochs": 1, "batch_size": 3, "lr": 0.01, "warmup_steps": 0, "eval_every": 0, "threads": 1,
                     "freeze_blocks": 3, **schedule},
        "augment": {"enabled": False},
        "out": str(tmp_path / "run"),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@needs_shared
def test_short_training_run_lowers_the_loss(tmp_path, tiny_dataset):
    cfg = load_config(tiny_config(tmp_path, tiny_dataset, epochs=25))
    res = train(cfg, tmp_path / "run", resume=False, progress=False, log=lambda *_: None)
    losses = [h["loss"]["total"] for h in res["history"]]
    assert res["steps"] == 25 and len(losses) == 25
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    assert "s64_obj" in res["history"][0]["loss"]  # fusion on: the stride-64 auxiliary loss is trained
    assert (tmp_path / "run" / "best.pt").is_file() and res["val"] is not None


PTH = SHARED / "teachers" / "yolox_nano" / "yolox_nano.pth"


@needs_shared
@pytest.mark.skipif(not PTH.is_file(), reason=f"shared data {PTH} is absent")
@pytest.mark.parametrize("schedule, must_improve", [
    ({"freeze_blocks": -1}, True),  # the shipped recipe: CSPDarknet frozen, neck and head train
    ({"freeze_blocks": 3, "unfreeze_at": 0.5, "trunk_lr": 0.1}, False),  # unfreezing: finite, logged, warmed up
], ids=["frozen_trunk", "unfreeze_half_way"])
def test_yolox_fine_tuning_from_coco(tmp_path, tiny_dataset, schedule, must_improve):
    """YOLOX-Nano from the COCO checkpoint, class rows sliced (step 0 is the teacher), SimOTA-lite loss."""
    cfg = {
        "variant": "yolox_nano", "name": "tiny_yolox", "classes": "dashcam", "input_size": [192, 320],
        "init_from": str(PTH),
        "data": {"train": [{"path": str(tiny_dataset)}], "val": [{"path": str(tiny_dataset), "select": "0:1"}]},
        "schedule": {"epochs": 8, "batch_size": 3, "lr": 0.0005, "warmup_steps": 2, "eval_every": 0, "threads": 1,
                     "ema": 0.9, "best_by": "ap50", **schedule},
        "augment": {"enabled": False},
        "out": str(tmp_path / "run"),
    }
    path = tmp_path / "yolox.yaml"
    path.write_text(yaml.safe_dump(cfg))
    logs = []
    res = train(load_config(path), tmp_path / "run", resume=False, progress=False, log=logs.append)
    losses = [h["loss"]["total"] for h in res["history"]]
    assert len(losses) == 8 and all(np.isfinite(losses)), losses
    assert any("class rows picked by name in 6 tensors" in line for line in logs)
    assert res["val"]["classes"]["car"]["gt"] > 0 and (tmp_path / "run" / "best.pt").is_file()
    if must_improve:
        assert np.mean(losses[-3:]) < 0.8 * losses[0], losses  # the first step is the COCO teacher itself
    else:
        assert any("step 4: the 0.0" in line and "train from now on" in line for line in logs), logs


@needs_shared
def test_install_copies_the_export_into_the_weights_folder(tmp_path, tiny_dataset):
    from tools.train import install

    cfg = load_config(tiny_config(tmp_path, tiny_dataset, epochs=1))
    cfg = dataclasses.replace(cfg, export_onnx=str(tmp_path / "run" / "tiny.onnx"))
    res = train(cfg, tmp_path / "run", resume=False, progress=False, log=lambda *_: None)
    dest = tmp_path / "weights"
    paths = install(res, tmp_path / "run", cfg.name, dest)
    assert [p.name for p in paths] == ["tiny.onnx", "tiny.pt"]
    assert (dest / "tiny.onnx").read_bytes() == Path(res["onnx"]).read_bytes()
    with pytest.raises(TrainError, match="--install needs an ONNX export"):
        install({"onnx": None}, tmp_path / "run", "x", dest)


def test_config_error_names_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"variant": "mobilenetv2_s16", "data": {"train": [{"path": "x"}]},
                                    "schedule": {"btch_size": 4}}))
    assert main(["--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "btch_size" in err and "batch_size" in err and len(err.splitlines()) == 1
    path.write_text(yaml.safe_dump({"variant": "mobilenetv2_s16", "data": {"train": [{"path": "x"}]},
                                    "fastdet": {"trunk_blocks": 3}}))
    with pytest.raises(ConfigError, match="trunk_blocks"):
        load_config(path)
    path.write_text(yaml.safe_dump({"variant": "no_such", "data": {"train": [{"path": "x"}]}}))
    assert main(["--config", str(path), "--no-progress"]) == 2
    assert "no_such" in capsys.readouterr().err


def test_assignment_radius_needs_a_wide_enough_offset_span(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = {"variant": "mobilenetv2_s16", "data": {"train": [{"path": "x"}]}, "loss": {"center_radius": [1.0, 1.5]}}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="offset_span"):
        load_config(path)
    cfg["fastdet"] = {"offset_span": 4.0}
    path.write_text(yaml.safe_dump(cfg))
    assert load_config(path).loss.center_radius == (1.0, 1.5)


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"variant": "mobilenetv2_s16", "data": {"train": [{"path": str(tmp_path / "none")}]}}))
    assert main(["--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none" in err and len(err.splitlines()) == 1


def test_prepare_starts_the_data_tools_as_modules_from_any_cwd(tmp_path, monkeypatch):
    """A missing dataset is pseudo-labelled and audited by ``python -m tools.pseudo_label`` and
    ``python -m tools.audit_data``; both commands start whatever the caller's folder (here tmp_path)
    and with no PYTHONPATH (they run from the repository root)."""
    import os
    import subprocess

    from tools import train as train_module
    from tools.training.config import DatasetEntry

    calls, real_run = [], subprocess.run
    def record(cmd, **kw):
        calls.append((cmd, kw.get("cwd")))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(train_module.subprocess, "run", record)
    monkeypatch.chdir(tmp_path)
    entry = DatasetEntry(path=str(tmp_path / "ds"), source=(str(REPO / "examples" / "test_video.mp4"),))
    assert train_module.prepare(entry, progress=False) == tmp_path / "ds"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)                     # still elsewhere when the commands run
    assert [cmd[1:3] for cmd, _ in calls] == [["-m", "tools.pseudo_label"], ["-m", "tools.audit_data"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for cmd, cwd in calls:
        proc = real_run(cmd[:3] + ["--help"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (cmd[:3], proc.stderr[-500:])


@needs_shared
def test_resume_continues_the_step_count(tmp_path, tiny_dataset):
    path = tiny_config(tmp_path, tiny_dataset, epochs=10)
    out = tmp_path / "run"
    assert main(["--config", str(path), "--max-steps", "2", "--no-progress"]) == 0
    assert torch.load(out / "last_state.pt", weights_only=True)["step"] == 2
    assert main(["--config", str(path), "--max-steps", "4", "--resume", "--no-progress"]) == 0
    st = torch.load(out / "last_state.pt", weights_only=True)
    assert st["step"] == 4 and [h["step"] for h in st["history"]] == [1, 2, 3, 4]


def test_resume_without_state_is_an_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"variant": "mobilenetv2_s16", "data": {"train": [{"path": str(tmp_path)}]},
                                    "out": str(tmp_path / "run")}))
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    assert main(["--config", str(path), "--resume", "--no-progress"]) == 2


@needs_shared
@pytest.mark.parametrize("name, max_mb", [("lite", 20), ("dashcam", 10)], ids=["lite", "dashcam"])
def test_shipped_model_finds_a_car_in_the_onnx_backend(name, max_mb):
    from pipeline.config import DetectorConfig
    from pipeline.onnx_detector import OnnxDetector

    path = REPO / "models" / "weights" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"models/weights/{name}.onnx is not shipped in this checkout")
    det = OnnxDetector(DetectorConfig(model=str(path), threads=2))
    d = det.detect([cv2.imread(str(UDACITY / "test1.jpg"))])[0]
    cars = [i for i, c in enumerate(d.class_id) if det.class_names[int(c)] == "car"]
    assert cars, (d.xyxy, d.class_id, d.score)
    assert path.stat().st_size <= max_mb * 1e6


def test_shipped_preset_points_at_the_shipped_model():
    preset = REPO / "configs" / "detectors" / "lite.yaml"
    if not preset.is_file():
        pytest.skip("configs/detectors/lite.yaml is not in this checkout")
    det = yaml.safe_load(preset.read_text())["detector"]
    assert det["backend"] == "onnx" and (preset.parent / det["model"]).resolve() == SHIPPED.resolve()


@pytest.mark.parametrize("extra, word", [
    ({"schedule": {"ema": 1.5}}, "ema"),
    ({"schedule": {"best_by": "map"}}, "best_by"),
    ({"schedule": {"unfreeze_at": 1.0}}, "unfreeze_at"),
    ({"init_from": "no/such/file.pth"}, "init_from"),
    ({"augment": {"crop": [250, 416]}}, "crop"),
    ({"fastdet": {"channels": 8}}, "fastdet family"),
], ids=["ema", "best_by", "unfreeze_at", "init_from", "crop", "fastdet_section_on_yolox"])
def test_yolox_config_errors_name_the_key(tmp_path, capsys, extra, word):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"variant": "yolox_nano", "classes": "dashcam", "data": {"train": [{"path": "x"}]},
                                    **extra}))
    assert main(["--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("decay, updates, expect", [
    (0.9, 1, 1 - 2 / 11),                        # ramp: d = min(0.9, 2 / 11): the first average is mostly the model
    (0.1, 1, 0.9),                               # the decay caps the ramp
    (0.9, 2, 0.25 * (1 - 2 / 11) + 0.75),        # second update: d = 3 / 12
], ids=["ramp_first_update", "decay_caps_ramp", "second_update"])
def test_weight_ema_ramp(decay, updates, expect):
    """The model's weight jumps from 0 to 1; the average follows by the ramped decay."""
    from tools.training.ema import WeightEMA

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(updates):
        ema.update(model)
    assert float(ema.model.weight) == pytest.approx(expect)
