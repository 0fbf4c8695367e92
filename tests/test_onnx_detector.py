"""The ONNX backend on the real teachers and real frames."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED, TEACHERS, need
from pipeline.config import DetectorConfig, detector_preset
from dashtrack_core.configtools import ConfigError, from_mapping
from dashtrack_core.detector import Letterbox
from pipeline.onnx_detector import DetectorError, OnnxDetector, letterbox_image, nms_per_class


def frame(name="test1.jpg"):
    return cv2.imread(str(need(SHARED / "images" / "udacity" / name)))


# The two cars of test1.jpg, checked by eye: a dark car in the middle lane and a white car on the right.
CARS_TEST1 = np.array([[813, 407, 943, 494], [1050, 404, 1275, 508]], np.float32)


def iou(a, b):
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("preset", ["yolox_nano", "nanodet_m"])
def test_teachers_find_the_cars(preset):
    section = detector_preset(preset)
    need(Path(section["model"]))                      # in $DASHTRACK_SHARED_DATA/teachers
    det = OnnxDetector(from_mapping(DetectorConfig, section, "detector"))
    d = det.detect([frame()])[0]
    cars = d[d.class_id == det.class_names.index("car")]
    for ref in CARS_TEST1:
        assert max(iou(ref, box) for box in cars.xyxy) > 0.8, f"{preset} missed car {ref}"
    assert np.all(d.xyxy[:, [0, 2]] <= 1280) and np.all(d.xyxy[:, [1, 3]] <= 720)


def test_batch_equals_single(yolox):
    imgs = [frame("test1.jpg"), frame("test4.jpg")]
    batched = yolox.detect(imgs)
    for img, b in zip(imgs, batched):
        s = yolox.detect([img])[0]
        np.testing.assert_allclose(b.xyxy, s.xyxy, atol=1e-3)


def test_class_filter(yolox_cfg):
    import dataclasses

    only_people = OnnxDetector(dataclasses.replace(yolox_cfg, classes=("person",)))
    assert len(only_people.detect([frame()])[0]) == 0     # no person on this highway frame
    with pytest.raises(ConfigError, match="'lorry'"):
        OnnxDetector(dataclasses.replace(yolox_cfg, classes=("lorry",)))


@pytest.mark.parametrize("mode", ["topleft", "center", "stretch"])
def test_letterbox_round_trip(mode):
    lb = Letterbox.fit(1280, 720, 416, 416, mode)
    img = np.zeros((720, 1280, 3), np.uint8)
    canvas = letterbox_image(img, lb, 416, 416, 114)
    assert canvas.shape == (416, 416, 3)
    box = np.array([[100.0, 50.0, 900.0, 700.0]], np.float32)
    net = np.empty_like(box)
    net[:, 0::2] = box[:, 0::2] * lb.scale_x + lb.pad_x
    net[:, 1::2] = box[:, 1::2] * lb.scale_y + lb.pad_y
    np.testing.assert_allclose(lb.to_image(net), box, atol=1e-3)


def reference_nms(xyxy, score, cls, thr):
    """Greedy per-class NMS written the slow, obvious way."""
    order = np.argsort(-score, kind="stable")
    keep = []
    for i in order:
        if all(cls[i] != cls[j] or iou(xyxy[i], xyxy[j]) <= thr for j in keep):
            keep.append(i)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (200, 2))
    wh = rng.uniform(10, 80, (200, 2))
    xyxy = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    score = rng.uniform(0, 1, 200).astype(np.float32)
    cls = rng.integers(0, 3, 200)
    np.testing.assert_array_equal(nms_per_class(xyxy, score, cls, 0.45), reference_nms(xyxy, score, cls, 0.45))


def test_format_is_guessed_from_outputs():
    det = OnnxDetector(DetectorConfig(model=str(need(TEACHERS / "yolox_nano" / "yolox_nano.onnx"))))
    assert det.cfg.format == "yolox" and (det.in_h, det.in_w) == (416, 416)


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"garbage" * 10, "not a loadable ONNX model"),
])
def test_bad_model_files(tmp_path, content, message):
    p = tmp_path / "m.onnx"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DetectorError, match=message):
        OnnxDetector(DetectorConfig(model=str(p)))


def test_wrong_format_for_model_is_named():
    path = str(need(TEACHERS / "nanodet_m" / "nanodet_m_416.onnx"))
    with pytest.raises(DetectorError, match="format 'yolox'"):
        OnnxDetector(DetectorConfig(model=path, format="yolox"))
