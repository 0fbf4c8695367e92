"""tools/eval_detection.py: metrics on hand-made cases with known answers, COCO cross-check, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools.datasets import DASHCAM_NAMES, ImageLabels
from tools.detection_metrics import average_precision, coco_map, evaluate
from tools.eval_detection import main, select, to_dashcam

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED  # noqa: E402  ($DASHTRACK_SHARED_DATA, else ../shared/data)

PANDASET = SHARED / "images" / "pandaset_002_front"
YOLOX = SHARED / "teachers" / "yolox_nano" / "yolox_nano.onnx"
CAR, PERSON = DASHCAM_NAMES.index("car"), DASHCAM_NAMES.index("person")
NAMES = list(DASHCAM_NAMES)


def gt(boxes, classes, ignore=None, w=1000, h=500) -> ImageLabels:
    return ImageLabels("img.jpg", None, w, h, np.asarray(boxes, float).reshape(-1, 4), classes, ignore)


def det(boxes, scores, classes):
    return (np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float), np.asarray(classes, int))


def test_two_gt_one_tp_one_fp():
    g = gt([[0, 0, 100, 100], [200, 200, 300, 300]], [CAR, CAR])
    d = det([[2, 2, 100, 100], [500, 0, 600, 100]], [0.9, 0.8], [CAR, CAR])
    r = evaluate([g], [d], NAMES)["classes"]["car"]
    assert (r["tp"], r["fp"], r["fn"], r["gt"]) == (1, 1, 1, 2)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5
    assert r["ap50"] == pytest.approx(51 / 101)           # precision 1 up to recall 0.5, then nothing


def test_ap_when_the_fp_scores_higher():
    g = gt([[0, 0, 100, 100], [200, 200, 300, 300]], [CAR, CAR])
    d = det([[2, 2, 100, 100], [500, 0, 600, 100]], [0.8, 0.9], [CAR, CAR])
    assert evaluate([g], [d], NAMES)["classes"]["car"]["ap50"] == pytest.approx(0.5 * 51 / 101)


METRIC_CASES = [
    # (name, gt boxes, gt classes, gt ignore, dets, scores, classes, expected car (tp, fp, fn))
    ("perfect", [[0, 0, 50, 50]], [CAR], None, [[0, 0, 50, 50]], [0.9], [CAR], (1, 0, 0)),
    ("IoU just under 0.5 is a miss", [[0, 0, 100, 100]], [CAR], None, [[0, 0, 100, 49]], [0.9], [CAR], (0, 1, 1)),
    ("IoU 0.5 counts", [[0, 0, 100, 100]], [CAR], None, [[0, 0, 100, 50]], [0.9], [CAR], (1, 0, 0)),
    ("wrong class: FP and FN", [[0, 0, 50, 50]], [CAR], None, [[0, 0, 50, 50]], [0.9], [PERSON], (0, 0, 1)),
    ("double detection: second is FP", [[0, 0, 50, 50]], [CAR], None,
     [[0, 0, 50, 50], [1, 1, 50, 50]], [0.9, 0.8], [CAR, CAR], (1, 1, 0)),
    ("below --conf: not counted", [[0, 0, 50, 50]], [CAR], None, [[0, 0, 50, 50]], [0.2], [CAR], (0, 0, 1)),
    ("on an ignore region: neither TP nor FP", [[0, 0, 50, 50], [300, 0, 400, 100]], [CAR, -1], [False, True],
     [[0, 0, 50, 50], [310, 10, 350, 50]], [0.9, 0.9], [CAR, CAR], (1, 0, 0)),
    ("ignore region is not a miss", [[300, 0, 400, 100]], [-1], [True], [], [], [], (0, 0, 0)),
]


@pytest.mark.parametrize("name,gb,gc,gi,db,ds,dc,expected", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_matching_table(name, gb, gc, gi, db, ds, dc, expected):
    r = evaluate([gt(gb, gc, gi)], [det(db, ds, dc)], NAMES, conf=0.3)["classes"]["car"]
    assert (r["tp"], r["fp"], r["fn"]) == expected


def test_height_buckets():
    g = gt([[0, 0, 20, 20], [100, 0, 130, 30], [200, 0, 300, 100], [400, 0, 420, 24]], [CAR] * 4)
    # finds the large car, the 24 px one, and puts a 10 px false positive somewhere
    d = det([[200, 0, 300, 100], [400, 0, 420, 24], [600, 0, 610, 10]], [0.9, 0.8, 0.7], [CAR] * 3)
    bh = evaluate([g], [d], NAMES)["classes"]["car"]["by_height"]
    assert (bh["small"]["gt"], bh["medium"]["gt"], bh["large"]["gt"]) == (2, 1, 1)
    assert bh["small"]["recall"] == 0.5 and bh["medium"]["recall"] == 0.0 and bh["large"]["recall"] == 1.0
    assert (bh["small"]["tp"], bh["small"]["fp"]) == (1, 1) and bh["small"]["precision"] == 0.5
    assert bh["large"]["precision"] == 1.0


def test_average_precision_edges():
    assert np.isnan(average_precision(np.array([0.5]), np.array([False]), 0))
    assert average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == pytest.approx(1.0)


def test_ap50_agrees_with_coco_eval():
    pytest.importorskip("faster_coco_eval")
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for _ in range(12):
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 800, (n, 2))
        wh = rng.uniform(10, 150, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        cls = rng.choice([CAR, PERSON], n)
        gts.append(gt(boxes, cls))
        jitter = boxes + rng.normal(0, 0.15, (n, 1)) * np.concatenate([wh, wh], 1)
        keep = rng.random(n) < 0.8
        fps = rng.uniform(0, 800, (2, 2))
        db = np.concatenate([jitter[keep], np.concatenate([fps, fps + 40], 1)])
        dets.append(det(db, rng.random(len(db)), np.concatenate([cls[keep], rng.choice([CAR, PERSON], 2)])))
    ours = evaluate(gts, dets, NAMES, conf=0.0)
    coco = coco_map(gts, dets, NAMES)
    assert coco["backend"] == "faster-coco-eval"
    for name in ("car", "person"):
        assert ours["classes"][name]["ap50"] == pytest.approx(coco["classes"][name]["ap50"], abs=1e-6)
    assert ours["overall"]["ap50"] == pytest.approx(coco["ap50"], abs=1e-6)
    assert 0 < coco["map"] < coco["ap50"] < 1


def test_to_dashcam_maps_kitti_names():
    names = ["Car", "Van", "Pedestrian", "DontCare", "Cyclist"]
    it = ImageLabels("a", None, 10, 10, np.zeros((5, 4)), [0, 1, 2, 3, 4], [False, False, False, True, False])
    out = to_dashcam([it], names)[0]
    assert out.class_id.tolist() == [CAR, -1, PERSON, -1, DASHCAM_NAMES.index("bicycle")]
    assert out.ignore.tolist() == [False, True, False, True, False]


def test_select_slices():
    assert select(list(range(80)), "-20:") == list(range(60, 80))
    assert select(list(range(5)), None) == list(range(5))


def test_default_weights_is_the_shipped_model(tmp_path):
    """--weights default runs models/weights/dashcam.onnx (no ../shared data needed)."""
    import cv2

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    cap = cv2.VideoCapture(str(REPO / "examples" / "test_video.mp4"))
    ok, img = cap.read()
    assert ok
    cv2.imwrite(str(images / "f0.jpg"), img)
    (labels / "f0.txt").write_text("")
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "tools.eval_detection", "--weights", "default",
                           "--images", str(images), "--labels", str(labels), "--format", "yolo", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["run"]["model"].endswith("dashcam.onnx")


def test_default_weights_missing_is_a_clear_error(monkeypatch, tmp_path):
    import tools.eval_detection as ev

    monkeypatch.setattr(ev, "SHIPPED_ONNX", tmp_path / "gone.onnx")
    with pytest.raises(ev.EvalError, match="shipped model .*gone.onnx is missing; .* --install"):
        ev.resolve_weights("default")


def test_missing_label_folder_is_exit_2(tmp_path, capsys):
    assert main(["--weights", "yolox_nano", "--images", str(tmp_path), "--labels", str(tmp_path / "no"),
                 "--format", "kitti", "--no-progress"]) == 2
    assert "no such" in capsys.readouterr().err


def test_real_self_consistency(tmp_path):
    """Single-pass YOLOX-Nano scored against its own single-pass labels: P and R near 1."""
    if not PANDASET.is_dir() or not YOLOX.is_file():
        pytest.skip(f"shared data {PANDASET} or {YOLOX} is absent (tests read ../shared/data beside the repo)")
    from tools.pseudo_label import main as label_main

    ds = tmp_path / "ds"
    assert label_main(["--source", str(PANDASET), "--every", "40", "--tile-size", "0", "--out", str(ds),
                       "--no-progress", "--threads", "2"]) == 0
    out = tmp_path / "r.json"
    assert main(["--weights", "yolox_nano", "--images", str(ds / "images"), "--labels", str(ds / "labels"),
                 "--format", "yolo", "--json", str(out), "--no-progress", "--threads", "2"]) == 0
    r = json.loads(out.read_text())
    car = r["classes"]["car"]
    assert car["gt"] >= 10
    assert car["precision"] >= 0.9 and car["recall"] >= 0.9
    assert r["coco"]["ap50"] > 0.8
    assert r["run"]["images"] == 2 and r["run"]["tiles"] is False
    assert main(["--weights", "yolox_nano", "--images", str(ds / "images"), "--labels", str(ds / "labels"),
                 "--format", "yolo", "--json", str(out), "--no-progress", "--last", "1"]) == 0
    assert json.loads(out.read_text())["run"]["images"] == 1
