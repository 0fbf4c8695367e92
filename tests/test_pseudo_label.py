"""tools/pseudo_label.py and tools/tiling.py: tiling, inner-edge box dropping, weighted box fusion, and a real labelling run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dashtrack_core.records import Detections
from tools.pseudo_label import main
from tools.tiling import cut_by_inner_edge, detect_tiled, flip_boxes, tile_grid, tile_starts, weighted_boxes_fusion

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED  # noqa: E402  ($DASHTRACK_SHARED_DATA, else ../shared/data)

PANDASET = SHARED / "images" / "pandaset_002_front"
VIDEO = SHARED / "videos" / "udacity" / "test_video.mp4"
YOLOX = SHARED / "teachers" / "yolox_nano" / "yolox_nano.onnx"
NANODET = SHARED / "teachers" / "nanodet_m" / "nanodet_m_416.onnx"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (tests read ../shared/data beside the repo)")
    return path


# -- tiling geometry -----------------------------------------------------------------------
@pytest.mark.parametrize("length,tile,overlap,expected", [
    (300, 416, 0.25, [0]),                 # smaller than a tile: one tile
    (416, 416, 0.25, [0]),
    (1000, 400, 0.0, [0, 300, 600]),       # 3 tiles needed, spread evenly to the end
    (1920, 416, 0.25, [0, 301, 602, 902, 1203, 1504]),
])
def test_tile_starts(length, tile, overlap, expected):
    starts = tile_starts(length, tile, overlap)
    assert starts == expected
    assert starts[-1] + min(tile, length) == length                    # reaches the far border
    if len(starts) > 1:
        assert min(np.diff(starts)) <= tile * (1 - overlap) + 1e-9      # at least the asked overlap


def test_tile_grid_covers_image():
    tiles = tile_grid(1920, 1080, 416, 0.25)
    cover = np.zeros((1080, 1920), bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == 416 and y1 - y0 == 416
        cover[y0:y1, x0:x1] = True
    assert cover.all()


W, H = 1000, 600
TILE = (300, 200, 700, 600)    # inner left (300), inner top (200), inner right (700), bottom on the image border
EDGE_CASES = [
    # (name, box in image pixels, cut?)
    ("inside the tile", [400, 300, 500, 400], False),
    ("cut by the inner left edge", [300, 300, 380, 400], True),
    ("cut by the inner top edge", [400, 200, 500, 260], True),
    ("cut by the inner right edge", [650, 300, 700, 400], True),
    ("within the margin of the right edge", [650, 300, 695, 400], True),
    ("touching the outer bottom edge (image border)", [400, 500, 500, 600], False),
    ("a tile at the image corner keeps boxes on the border", None, False),
]


@pytest.mark.parametrize("name,box,cut", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_cut_by_inner_edge(name, box, cut):
    if box is None:   # top-left tile: its left and top edges are the image border
        got = cut_by_inner_edge(np.array([[0.0, 0.0, 50.0, 50.0]]), (0, 0, 416, 416), W, H, margin=8)
    else:
        got = cut_by_inner_edge(np.array([box], float), TILE, W, H, margin=8)
    assert got.tolist() == [cut]


class WorldDetector:
    """A fake detector over a synthetic world: it 'sees' every object clipped to the crop.

    The crop's offset is encoded in its pixels (x = B + 256 * G, y = R), the way a real
    detector would report a partial box for an object cut by the crop border.
    """

    def __init__(self, objects: list[list[float]]):
        self.objects = np.asarray(objects, np.float32)

    def detect(self, images):
        out = []
        for img in images:
            x0 = int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])
            y0 = int(img[0, 0, 2])
            h, w = img.shape[:2]
            rel = self.objects - np.array([x0, y0, x0, y0], np.float32)
            clipped = np.clip(rel, 0, [w, h, w, h])
            vis = (clipped[:, 2] - clipped[:, 0] > 2) & (clipped[:, 3] - clipped[:, 1] > 2)
            out.append(Detections(clipped[vis], np.full(vis.sum(), 0.9), np.zeros(vis.sum())))
        return out


def _world_image(w: int, h: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([xs % 256, xs // 256, ys], -1).astype(np.uint8)


def test_detect_tiled_drops_boxes_cut_by_inner_edges():
    w, h = 1000, 200
    objects = [
        [290, 50, 330, 90],    # straddles the inner edge at x=300 (tile 0 ends at 400, tile 1 starts at 300)
        [950, 60, 1000, 120],  # touches the right image border: an outer edge, kept
        [500, 20, 560, 80],    # inside the middle tiles
    ]
    img = _world_image(w, h)
    assert [t[0] for t in tile_grid(w, h, 400, 0.25)] == [0, 300, 600]
    det = detect_tiled(WorldDetector(objects), img, tile=400, overlap=0.25, nms_iou=0.5, full_pass=False)
    got = sorted(map(tuple, det.xyxy.round().astype(int).tolist()))
    assert got == sorted(map(tuple, objects))          # every object once, whole; no partial boxes


def test_naive_tiling_would_keep_partial_boxes():
    """The control: without the inner-edge rule the same world yields partial false positives."""
    w, h = 1000, 200
    det = detect_tiled(WorldDetector([[380, 50, 460, 90]]), _world_image(w, h), 400, 0.25, full_pass=False, margin=-1e9)
    assert len(det) > 1
    det = detect_tiled(WorldDetector([[380, 50, 460, 90]]), _world_image(w, h), 400, 0.25, full_pass=False)
    assert det.xyxy.round().tolist() == [[380, 50, 460, 90]]


def test_flip_boxes_round_trip():
    d = Detections(np.array([[10, 5, 30, 25]]), np.array([0.5]), np.array([2]))
    f = flip_boxes(d, 100)
    assert f.xyxy.tolist() == [[70, 5, 90, 25]]
    assert flip_boxes(f, 100).xyxy.tolist() == d.xyxy.tolist()


# -- weighted box fusion -------------------------------------------------------------------
def _d(boxes, scores, classes):
    return Detections(np.asarray(boxes, float).reshape(-1, 4), scores, classes)


def test_wbf_hand_made():
    v1 = _d([[0, 0, 10, 10], [100, 100, 120, 120]], [0.9, 0.7], [2, 2])
    v2 = _d([[1, 1, 11, 11], [50, 50, 60, 70], [0, 0, 10, 10]], [0.6, 0.8, 0.5], [2, 0, 6])
    out = weighted_boxes_fusion([v1, v2], iou_threshold=0.55)
    rows = {(int(c), tuple(float(v) for v in np.round(b.astype(np.float64), 2))): round(float(s), 4)
            for b, s, c in zip(out.xyxy, out.score, out.class_id)}
    assert rows == {
        (2, (0.4, 0.4, 10.4, 10.4)): 0.75,     # both views: (0.9*b1 + 0.6*b2) / 1.5, score (0.9 + 0.6) / 2
        (0, (50.0, 50.0, 60.0, 70.0)): 0.4,    # one view of two: 0.8 / 2
        (2, (100.0, 100.0, 120.0, 120.0)): 0.35,
        (6, (0.0, 0.0, 10.0, 10.0)): 0.25,     # same place, other class: not fused with the car
    }
    assert np.all(np.diff(out.score) <= 0)     # sorted by score


def test_wbf_weights_and_same_view_duplicates():
    v1 = _d([[0, 0, 10, 10]], [0.9], [2])
    v2 = _d([[1, 1, 11, 11]], [0.6], [2])
    out = weighted_boxes_fusion([v1, v2], weights=[2, 1])
    np.testing.assert_allclose(out.score, [(2 * 0.9 + 0.6) / 3], rtol=1e-6)
    np.testing.assert_allclose(out.xyxy[0], [0.25, 0.25, 10.25, 10.25], rtol=1e-5)
    # two boxes of one view in one cluster count that view once (its best score)
    v = _d([[0, 0, 10, 10], [0, 0, 10, 9.5]], [0.8, 0.4], [2, 2])
    out = weighted_boxes_fusion([v, _d([], [], [])])
    assert len(out) == 1 and out.score[0] == pytest.approx(0.4)


def test_wbf_empty():
    assert len(weighted_boxes_fusion([_d([], [], []), _d([], [], [])])) == 0


# -- real runs -----------------------------------------------------------------------------
def _boxes(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.loadtxt(p, ndmin=2).reshape(-1, 5) for p in sorted((out / "labels").glob("*.txt"))}


def test_real_pandaset_tiled_vs_single_pass(tmp_path):
    need(PANDASET), need(YOLOX)
    common = ["--source", str(PANDASET), "--every", "40", "--no-progress", "--threads", "2"]
    assert main(common + ["--out", str(tmp_path / "tiled"), "--format", "yolo,coco"]) == 0
    assert main(common + ["--out", str(tmp_path / "single"), "--tile-size", "0"]) == 0
    tiled, single = _boxes(tmp_path / "tiled"), _boxes(tmp_path / "single")
    assert list(tiled) == ["pandaset_002_front_000000", "pandaset_002_front_000040"]
    assert sorted(p.name for p in (tmp_path / "tiled" / "images").iterdir()) == [f"{k}.jpg" for k in tiled]
    n_t = sum(len(b) for b in tiled.values())
    n_s = sum(len(b) for b in single.values())
    small_t = sum(int((b[:, 4] * 1080 < 25).sum()) for b in tiled.values())
    small_s = sum(int((b[:, 4] * 1080 < 25).sum()) for b in single.values())
    assert n_t > n_s and small_t > small_s, (n_t, n_s, small_t, small_s)
    for b in tiled.values():
        assert set(b[:, 0].astype(int)) <= set(range(7))
        assert np.all((b[:, 1:] >= 0) & (b[:, 1:] <= 1))
    prov = json.loads((tmp_path / "tiled" / "provenance.json").read_text())
    assert prov["teachers"][0]["name"] == "yolox_nano" and prov["teachers"][0]["input_size"] == 416
    assert prov["tiling"]["overlap"] == 0.25 and prov["thresholds"]["label_score"] == 0.3
    assert [f["frame_index"] for f in prov["frames"]] == [0, 40]
    assert prov["sources"][0]["source"] == str(PANDASET) and "--every" in prov["command"]
    names = yaml.safe_load((tmp_path / "tiled" / "dataset.yaml").read_text())["names"]
    assert names[2] == "car" and names[6] == "traffic light"
    coco = json.loads((tmp_path / "tiled" / "annotations.json").read_text())
    assert len(coco["annotations"]) == n_t and all(0.3 <= a["score"] <= 1 for a in coco["annotations"])


def test_real_video_every_flip_and_two_teachers(tmp_path):
    need(VIDEO), need(YOLOX), need(NANODET)
    out = tmp_path / "fused"
    rc = main(["--source", str(VIDEO), "--every", "15", "--max-frames", "2", "--tile-size", "0", "--flip",
               "--teacher", "yolox_nano", "--teacher", "nanodet_m", "--out", str(out), "--no-progress"])
    assert rc == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert [f["frame_index"] for f in prov["frames"]] == [0, 15]
    assert prov["fusion"] == "weighted box fusion" and prov["flip"] is True
    assert [t["name"] for t in prov["teachers"]] == ["yolox_nano", "nanodet_m"]
    cars = sum(int((b[:, 0] == 2).sum()) for b in _boxes(out).values())
    assert cars >= 2     # the highway clip has cars in every frame


def test_bad_source_and_teacher_are_exit_2(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err
    need(PANDASET)
    assert main(["--source", str(PANDASET), "--teacher", str(tmp_path / "x.onnx"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
