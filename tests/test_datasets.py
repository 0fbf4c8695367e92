"""Label readers and writers (tools/datasets.py, tools/label_formats.py) on tiny hand-made files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.datasets import DatasetError, ImageLabels, canonical_class, image_size
from tools.label_formats import read_bdd, read_coco, read_kitti, read_labels, read_yolo, write_coco, write_yolo


def _image(path: Path, w: int = 200, h: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_image_size_from_header(tmp_path, suffix):
    p = _image(tmp_path / f"a{suffix}", 123, 45)
    assert image_size(p) == (123, 45)


def test_image_size_unreadable(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"not an image")
    assert image_size(p) is None


def test_yolo_reader(tmp_path):
    _image(tmp_path / "images" / "f1.jpg")
    _image(tmp_path / "images" / "f2.jpg")          # background image, no label file
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "f1.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\nbad row\n\n")
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "dataset.yaml").write_text("names:\n  0: car\n  1: person\n")
    ls = read_yolo(tmp_path / "labels", tmp_path / "images")
    assert ls.names == ["car", "person"]
    by = {it.name: it for it in ls.items}
    f1 = by["f1.jpg"]
    assert (f1.width, f1.height) == (200, 100)
    np.testing.assert_allclose(f1.xyxy[0], [80, 30, 120, 70])
    assert f1.class_id.tolist() == [0, 1]
    assert f1.rows.tolist() == [1, 2]
    assert len(f1.problems) == 1 and "f1.txt:3" in f1.problems[0]
    assert len(by["f2.jpg"]) == 0
    assert by["orphan"].image is None and by["orphan"].width is None


def test_yolo_undeclared_class_is_a_problem(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / "classes.txt").write_text("car\n")
    ls = read_yolo(tmp_path / "labels", tmp_path / "images")
    assert ls.problems and "class id 3" in ls.problems[0]


def test_coco_reader(tmp_path):
    _image(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 8, "file_name": "missing.jpg", "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5]},
            {"id": 4, "image_id": 7, "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ls = read_coco(tmp_path / "ann.json")
    assert ls.names == ["person", "car"]
    a = ls.items[0]
    np.testing.assert_allclose(a.xyxy, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert a.class_id.tolist() == [1, 0] and a.ignore.tolist() == [False, True]
    assert ls.items[1].image is None
    assert len(ls.problems) == 2     # unknown image id, malformed annotation


def test_kitti_reader(tmp_path):
    _image(tmp_path / "image_2" / "000001.png", 1242, 375)
    (tmp_path / "label_2").mkdir()
    (tmp_path / "label_2" / "000001.txt").write_text(
        "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
        "DontCare -1 -1 -10 800.0 160.0 825.0 180.0 -1 -1 -1 -1000 -1000 -1000 -10\n"
        "Pedestrian 0.00 0 0.2 100 120 110 160 1.7 0.6 0.8 1 1 10 0 0.87\n"
        "Car 0 0 0 1 2 3\n")
    ls = read_kitti(tmp_path / "label_2")           # images found in ../image_2
    it = ls.items[0]
    assert ls.names == ["Car", "DontCare", "Pedestrian"]
    assert (it.width, it.height) == (1242, 375)
    np.testing.assert_allclose(it.xyxy[0], [587.01, 173.33, 614.12, 200.12])
    assert it.ignore.tolist() == [False, True, False]
    assert len(it.problems) == 1 and ":4:" in it.problems[0]


def test_bdd_reader(tmp_path):
    _image(tmp_path / "b1.jpg", 1280, 720)
    frames = [{"name": "b1.jpg", "attributes": {"weather": "clear"}, "labels": [
        {"id": "1", "category": "car", "box2d": {"x1": 10.5, "y1": 20, "x2": 50, "y2": 60}},
        {"id": "2", "category": "lane", "poly2d": [[0, 0]]},
        {"id": "3", "category": "traffic light", "box2d": {"x1": 1, "y1": 1, "x2": 5}},
    ]}, {"name": "gone.jpg", "labels": None}]
    (tmp_path / "det.json").write_text(json.dumps(frames))
    ls = read_bdd(tmp_path / "det.json")
    a, b = ls.items
    assert ls.names == ["car"] and len(a) == 1 and (a.width, a.height) == (1280, 720)
    np.testing.assert_allclose(a.xyxy[0], [10.5, 20, 50, 60])
    assert len(a.problems) == 1     # traffic light without y2
    assert b.image is None and len(b) == 0


@pytest.mark.parametrize("fmt,content,message", [
    ("coco", "{not json", "malformed JSON"),
    ("bdd", "[1, 2", "malformed JSON"),
    ("coco", json.dumps({"foo": 1}), "not a COCO"),
    ("bdd", json.dumps({"foo": 1}), "not a BDD100K"),
])
def test_malformed_json_is_one_line_error(tmp_path, fmt, content, message):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(DatasetError, match=message) as e:
        read_labels(fmt, tmp_path / "x.json", tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", ["yolo", "kitti", "coco", "bdd"])
def test_missing_input_is_one_line_error(tmp_path, fmt):
    with pytest.raises(DatasetError, match="no such"):
        read_labels(fmt, tmp_path / "nope", tmp_path)


def test_yolo_and_coco_writers_round_trip(tmp_path):
    img = _image(tmp_path / "images" / "r.jpg", 200, 100)
    it = ImageLabels("r.jpg", img, 200, 100, [[10, 10, 50, 90], [0, 0, 200, 100]], [1, 0], [False, False])
    write_yolo(tmp_path / "labels", [it], ["car", "person"])
    back = read_yolo(tmp_path / "labels", tmp_path / "images").items[0]
    np.testing.assert_allclose(back.xyxy, it.xyxy, atol=1e-3)
    assert back.class_id.tolist() == [1, 0]
    write_coco(tmp_path / "images" / "a.json", [it], ["car", "person"])
    ls = read_coco(tmp_path / "images" / "a.json")
    np.testing.assert_allclose(ls.items[0].xyxy, it.xyxy, atol=1e-2)
    assert ls.names == ["car", "person"] and ls.items[0].class_id.tolist() == [1, 0]


@pytest.mark.parametrize("name,expected", [
    ("Car", "car"), ("Pedestrian", "person"), ("Cyclist", "bicycle"), ("Van", None), ("DontCare", None),
    ("traffic light", "traffic light"), ("motor", "motorcycle"), ("zebra", None),
])
def test_canonical_class(name, expected):
    assert canonical_class(name) == expected
