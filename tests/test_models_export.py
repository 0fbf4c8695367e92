"""Export: ONNX (decoded layout + dashtrack metadata) and TorchScript outputs equal the torch model's."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_detector, build_model, load_variant
from models.export import export_onnx, export_torchscript, read_onnx_metadata
from models.postprocess import decoded_to_raw, postprocess

pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' package (pip install onnx)")
ort = pytest.importorskip("onnxruntime")

from conftest import SHARED as DATA  # noqa: E402  ($DASHTRACK_SHARED_DATA, else ../shared/data)

TEACHER_PTH = DATA / "teachers" / "yolox_nano" / "yolox_nano.pth"


def real_batch(det) -> torch.Tensor:
    import cv2

    images = [cv2.imread(str(DATA / "images" / "udacity" / n)) for n in ("test1.jpg", "test4.jpg")]
    assert all(i is not None for i in images)
    return det.preprocess(images).data


def check_parity(det, path: Path, x: torch.Tensor) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        want = det.model(x)
    c = len(det.spec.class_names)
    assert got.shape == want.shape == (x.shape[0], want.shape[1], 4 + c)
    assert (got[..., :4] - want[..., :4]).abs().max() < 0.05  # pixels (float32 summation order)
    assert (got[..., 4:] - want[..., 4:]).abs().max() < 1e-4
    # post-NMS boxes through our own postprocess agree (compared as sets: near-tied scores may swap order)
    hw, post = det.spec.input_size, dataclasses.replace(det.post, max_detections=10_000)
    for a, b in zip(postprocess(*decoded_to_raw(got, hw)[:3], lambda p, _: p, hw, post),
                    postprocess(*decoded_to_raw(want, hw)[:3], lambda p, _: p, hw, post)):
        assert len(a[0]) == len(b[0]) > 0
        ka, kb = sorted_rows(*a), sorted_rows(*b)
        assert torch.allclose(ka, kb, atol=0.05), (ka - kb).abs().max()


def sorted_rows(xyxy: torch.Tensor, score: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    rows = torch.cat((cls[:, None].float(), xyxy, score[:, None]), dim=1)  # (M, 6)
    for col in (2, 1, 0):  # stable sorts: by class, then x1, then y1
        rows = rows[rows[:, col].argsort(stable=True)]
    return rows


@pytest.mark.skipif(not TEACHER_PTH.is_file(), reason=f"no YOLOX teacher at {TEACHER_PTH}")
def test_yolox_nano_onnx_export_parity_and_metadata(tmp_path):
    det = build_detector(f"yolox_nano:{TEACHER_PTH}", score_threshold=0.3)
    path = export_onnx(det.model, det.spec, tmp_path / "yolox_nano.onnx")
    meta = read_onnx_metadata(path)
    assert meta["format"] == "decoded" and meta["input_size"] == [416, 416]
    assert meta["letterbox"] == "topleft" and meta["pad_value"] == 114 and meta["color"] == "bgr"
    assert meta["mean"] == [0, 0, 0] and meta["std"] == [1, 1, 1] and len(meta["class_names"]) == 80
    x = real_batch(det)
    check_parity(det, path, x)
    # real frames give real boxes, so the NMS comparison above compared something
    out = postprocess(*det.model.raw(x), det.model.decode_boxes, (416, 416), det.post)
    assert len(out[0][0]) >= 2


@pytest.mark.skipif(not (DATA / "images" / "udacity" / "test1.jpg").is_file(),
                    reason=f"shared data not found at {DATA} (images/udacity/test1.jpg)")
@pytest.mark.parametrize("offset_span", [1.0, 4.0])  # in-cell decode (first lite model), centre sampling (v2)
def test_fastdet_onnx_and_torchscript_export_parity(tmp_path, offset_span):
    spec = load_variant("mobilenetv2_s16")
    spec = dataclasses.replace(spec, input_size=(192, 320),
                               fastdet=dataclasses.replace(spec.fastdet, offset_span=offset_span))
    model = build_model(spec)
    torch.manual_seed(0)
    with torch.no_grad():  # a head with spread-out scores (no near-ties) and enough boxes over 0.3 for NMS
        model.head.pred.weight.normal_(0.0, 0.3)
        model.head.pred.bias[4] = 1.0
    from models.detector import TorchDetector
    from models.postprocess import PostprocessConfig

    det = TorchDetector(model, spec, post=PostprocessConfig(score_threshold=0.3))
    path = export_onnx(model, spec, tmp_path / "m.onnx")
    meta = read_onnx_metadata(path)
    assert meta["input_size"] == [192, 320] and meta["color"] == "rgb" and meta["class_names"] == list(spec.class_names)
    assert set(meta) >= {"format", "input_size", "letterbox", "pad_value", "color", "mean", "std", "class_names"}
    x = real_batch(det)
    check_parity(det, path, x)
    ts = export_torchscript(model, spec, tmp_path / "m.ts")
    extra = {"dashtrack.json": ""}
    loaded = torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["dashtrack.json"])["class_names"] == list(spec.class_names)
    with torch.no_grad():
        traced_out, eager_out = loaded(x), model(x)
    assert torch.allclose(traced_out, eager_out, atol=1e-4)
    assert np.isfinite(traced_out.numpy()).all()


def test_exported_onnx_runs_in_the_pipeline_backend(tmp_path):
    """The exported YOLOX-Nano, read by pipeline.onnx_detector (layout and preprocessing from the
    model's metadata alone), gives the torch detector's boxes on real frames."""
    import cv2

    from pipeline.config import DetectorConfig
    from pipeline.onnx_detector import OnnxDetector

    if not TEACHER_PTH.is_file():
        pytest.skip(f"{TEACHER_PTH} is absent")
    classes = ("person", "car", "truck", "traffic light")
    det = build_detector(f"yolox_nano:{TEACHER_PTH}", classes=classes, imgsz=416)   # 1280x720 -> 256x416
    path = export_onnx(det.model, det.spec, tmp_path / "yolox_nano.onnx")
    backend = OnnxDetector(DetectorConfig(model=str(path), classes=classes))     # dynamic: 416 from metadata
    assert backend.cfg.format == "decoded" and (backend.in_h, backend.in_w) == tuple(det.spec.input_size)
    assert backend.input_shape(1280, 720) == det.input_shape(1280, 720) == (256, 416)
    images = [cv2.imread(str(DATA / "images" / "udacity" / n)) for n in ("test1.jpg", "test4.jpg")]
    for want, got in zip(det.detect(images), backend.detect(images)):
        assert len(want) == len(got) >= 2
        assert [backend.class_names[c] for c in got.class_id] == [det.class_names[c] for c in want.class_id]
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1.0)       # cv2 vs torch bilinear resize
        np.testing.assert_allclose(got.score, want.score, atol=0.01)
