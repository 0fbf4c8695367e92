"""Preprocessing described once (issue 21): one ``Preprocess`` record, the same from a variant's spec, its
exported ONNX metadata, a checkpoint's meta and the flat ``detector.*`` fields, and the ONNX path runs with
the record the model file carries."""
import dataclasses

import pytest

from conftest import REPO
from dashtrack_core.configtools import from_mapping
from dashtrack_core.detector import Preprocess
from models.registry import ModelSpec
from pipeline.config import DetectorConfig
from pipeline.onnx_detector import OnnxDetector

FIELDS = [f.name for f in dataclasses.fields(Preprocess)]


@pytest.mark.parametrize("values", [
    {},
    {"color": "rgb", "mean": (123.7, 116.3, 103.5), "std": (58.4, 57.1, 57.4), "letterbox": "center", "pad_value": 0.0},
    {"letterbox": "stretch", "pad_value": 114.0},
], ids=["defaults", "imagenet-rgb-center", "stretch"])
def test_detector_config_fields_are_the_record(values):
    cfg = from_mapping(DetectorConfig, values, "detector")
    assert cfg.preprocess == Preprocess(**values)
    assert [getattr(cfg.preprocess, k) for k in FIELDS] == [getattr(cfg, k) for k in FIELDS]


def test_the_record_is_the_model_specs_type():
    assert next(f for f in dataclasses.fields(ModelSpec) if f.name == "preprocess").default == Preprocess()


@pytest.mark.parametrize("model", ["dashcam.onnx", "lite.onnx"])
def test_a_shipped_onnx_file_runs_with_the_preprocessing_it_carries(model, capsys):
    pytest.importorskip("onnx", reason="reading ONNX metadata needs the onnx package (pip install -e .[test])")
    from models.export import read_onnx_metadata

    path = REPO / "models" / "weights" / model
    meta = read_onnx_metadata(path)
    carried = Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.items() if k in FIELDS})
    contradicting = dataclasses.replace(DetectorConfig(model=str(path)), color="rgb" if carried.color == "bgr" else "bgr",
                                        pad_value=carried.pad_value + 1)
    det = OnnxDetector(contradicting)
    assert det.prep == carried                     # the file wins over the config, field by field
    said = capsys.readouterr().err
    assert (f"detector.pad_value={contradicting.pad_value} contradicts {model}'s own pad_value {carried.pad_value}; "
            "the model file wins") in said           # a value asked for (not the default) gets its one line


def test_rgb_mean_and_std_are_applied_in_the_models_colour_order_by_every_path():
    """The ONNX path once subtracted the mean reversed for an RGB model (B's ImageNet mean on R): lite ran on
    shifted inputs (held-out car AP50 0.24 / 0.42 -> 0.27 / 0.50 with the fix).  A flat BGR frame must come out
    as (R - mean[0]) / std[0], (G - mean[1]) / std[1], (B - mean[2]) / std[2] from the ONNX path, the training
    loader and the torch path alike."""
    import numpy as np
    import torch

    from models.device_preprocess import DevicePreprocessor
    from tools.train_data import to_tensor_batch

    det = OnnxDetector(DetectorConfig(model=str(REPO / "models" / "weights" / "lite.onnx")))
    prep = det.prep
    assert prep.color == "rgb" and prep.mean[0] != prep.mean[2]     # the case that shows a swap
    b, g, r = 200, 120, 40
    frame = np.empty((288, 512, 3), np.uint8)
    frame[:] = (b, g, r)
    want = [(r - prep.mean[0]) / prep.std[0], (g - prep.mean[1]) / prep.std[1], (b - prep.mean[2]) / prep.std[2]]
    h, w = det.input_shape(512, 288)
    onnx_px = det.preprocess([frame]).data[0, :, h // 2, w // 2]
    train_px = to_tensor_batch([frame], prep)[0, :, 10, 10]
    with torch.no_grad():
        torch_px = DevicePreprocessor(prep)([frame], (h, w))[0][0, :, h // 2, w // 2].numpy()
    for got in (onnx_px, train_px, torch_px):
        np.testing.assert_allclose(got, want, atol=1e-3)
