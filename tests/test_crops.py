"""detector.crops: the crop merge (pipeline/tiling.py), the tracker-guided crop planner (pipeline/crops.py),
their config keys, a real pipeline run with crops on, and bench/bench_detector.py on two real frames."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED, YOLOX_ONNX, need
from pipeline.config import DEFAULT_CONFIG, DetectorConfig, load_config, model_overrides
from dashtrack_core.configtools import ConfigError, from_mapping
from pipeline.crops import CropPlanner, CropSettings
from dashtrack_core.records import Detections
from pipeline.tiling import merge_with_crops

W, H = 1280, 720


def dets(rows, tracks=None) -> Detections:
    """rows: (x1, y1, x2, y2, score, class)."""
    a = np.asarray(rows, np.float32).reshape(-1, 6)
    d = Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))
    return d.with_tracks(np.asarray(tracks, np.int64)) if tracks is not None else d


# -- merge -------------------------------------------------------------------------------------
CROP = (400, 200, 816, 616)      # an inner crop: every edge lies inside the 1280x720 frame
BORDER_CROP = (0, 0, 416, 416)   # left and top edges on the frame border

MERGE_CASES = {
    # name: (full-pass rows, crop rect, crop rows in crop pixels, expected rows (x1, y1, class) in frame pixels)
    "whole box inside the crop is kept": ([], CROP, [(100, 100, 120, 130, 0.8, 9)], [(500, 300, 9)]),
    "box cut by the crop's left edge is dropped": ([], CROP, [(0, 100, 40, 150, 0.9, 2)], []),
    "box cut by the crop's bottom edge is dropped": ([], CROP, [(100, 380, 160, 416, 0.9, 2)], []),
    "cut box dropped, whole neighbour kept": ([], CROP, [(0, 100, 40, 150, 0.9, 2), (200, 100, 240, 150, 0.6, 2)],
                                              [(600, 300, 2)]),
    "box on a crop edge that is the frame border is kept": ([], BORDER_CROP, [(0, 0, 30, 40, 0.7, 0)], [(0, 0, 0)]),
    "crop duplicate of a full-pass box: the higher score wins": (
        [(500, 300, 522, 330, 0.4, 2)], CROP, [(101, 100, 121, 130, 0.9, 2)], [(501, 300, 2)]),
    "full-pass box and a crop box of another class both stay": (
        [(500, 300, 520, 330, 0.4, 2)], CROP, [(100, 100, 120, 130, 0.9, 9)], [(500, 300, 9), (500, 300, 2)]),
    "edge-cut crop box never suppresses the full pass's whole box": (
        [(380, 300, 440, 340, 0.5, 2)], CROP, [(0, 100, 40, 140, 0.95, 2)], [(380, 300, 2)]),
}


@pytest.mark.parametrize("full,rect,crop_rows,expected", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merge_with_crops(full, rect, crop_rows, expected):
    out = merge_with_crops(dets(full), [(rect, dets(crop_rows))], W, H, nms_iou=0.5, margin=8.0)
    got = sorted((round(float(b[0])), round(float(b[1])), int(c)) for b, c in zip(out.xyxy, out.class_id))
    assert got == sorted(expected)
    assert np.all(np.diff(out.score) <= 0)          # highest score first


# -- planner -----------------------------------------------------------------------------------
def planner(budget=2, small=40.0, size=(416, 416), band=(0.3, 0.6)) -> CropPlanner:
    return CropPlanner(CropSettings(budget=budget, small_px=small, size=size, band=band))


def inside(box, rect, margin=8) -> bool:
    return rect[0] <= box[0] - margin and rect[1] <= box[1] - margin and box[2] + margin <= rect[2] \
        and box[3] + margin <= rect[3]


def horizon(p: CropPlanner, frame: int) -> list:
    return p._horizon_tiles(W, H, 416, 416)


SMALL_LIGHT = (900, 100, 910, 120)        # a 20 px traffic light high up, away from the horizon band
SMALL_CAR = (200, 600, 230, 622)          # a 22 px car low down
LARGE_CAR = (500, 400, 700, 560)          # 160 px


PLAN_CASES = {
    # name: (budget, tracked boxes, frame to plan, check)
    "small tracked box gets a crop with context around it, plus one horizon tile": (
        2, [SMALL_LIGHT], 1, lambda rects, tiles: len(rects) == 2 and inside(SMALL_LIGHT, rects[0])
        and rects[0][0] < SMALL_LIGHT[0] - 100 and rects[1] in tiles),
    "a large tracked box gets no crop: the budget goes to the horizon": (
        2, [LARGE_CAR], 1, lambda rects, tiles: len(rects) == 2 and all(r in tiles for r in rects)),
    "budget 3 with two small boxes far apart: two object crops and one horizon tile": (
        3, [SMALL_LIGHT, SMALL_CAR], 1, lambda rects, tiles: len(rects) == 3 and inside(SMALL_LIGHT, rects[0])
        and inside(SMALL_CAR, rects[1]) and rects[2] in tiles),
    "two small boxes side by side share one crop": (
        3, [SMALL_LIGHT, (930, 100, 940, 118)], 1,
        lambda rects, tiles: inside(SMALL_LIGHT, rects[0]) and inside((930, 100, 940, 118), rects[0])
        and all(r in tiles for r in rects[1:])),
    "more small boxes than the budget: never over budget": (
        2, [SMALL_LIGHT, SMALL_CAR, (50, 50, 60, 70), (1200, 40, 1210, 60)], 1, lambda rects, tiles: len(rects) == 2),
    "budget 1, odd frame: the small object": (1, [SMALL_LIGHT], 1, lambda rects, tiles: len(rects) == 1 and inside(SMALL_LIGHT, rects[0])),
    "budget 1, even frame: the horizon": (1, [SMALL_LIGHT], 2, lambda rects, tiles: len(rects) == 1 and rects[0] in tiles),
}


@pytest.mark.parametrize("budget,boxes,frame,check", PLAN_CASES.values(), ids=PLAN_CASES.keys())
def test_planner_picks_crops_within_budget(budget, boxes, frame, check):
    p = planner(budget)
    p.update(0, dets([(*b, 0.8, 2) for b in boxes], tracks=list(range(1, len(boxes) + 1))))
    rects = p.plan(frame, W, H)
    assert len(rects) <= budget
    assert all(0 <= r[0] < r[2] <= W and 0 <= r[1] < r[3] <= H and (r[3] - r[1], r[2] - r[0]) == (416, 416) for r in rects)
    assert check(rects, horizon(p, frame)), rects


def test_horizon_tile_rotates_over_the_band():
    p = planner(budget=1)
    tiles = horizon(p, 0)
    assert len(tiles) >= 3 and all(t[1] <= 0.3 * H and t[3] >= 0.6 * H for t in tiles)   # the band is covered
    seen = [p.plan(f, W, H)[0] for f in range(len(tiles))]        # nothing tracked: every slot is the horizon's
    assert sorted(seen) == sorted(tiles)                          # every tile within len(tiles) frames
    assert p.plan(len(tiles), W, H)[0] == seen[0]                 # then round again


def test_small_tracks_take_turns_when_the_budget_is_short():
    p = planner(budget=2)                       # one object slot per frame
    p.update(0, dets([(*SMALL_LIGHT, 0.8, 9), (*SMALL_CAR, 0.8, 2)], tracks=[1, 2]))
    first, second = p.plan(1, W, H)[0], p.plan(2, W, H)[0]
    assert {inside(SMALL_LIGHT, first), inside(SMALL_LIGHT, second)} == {True, False}
    assert {inside(SMALL_CAR, first), inside(SMALL_CAR, second)} == {True, False}


def test_moving_track_is_predicted_to_the_planned_frame():
    p = planner(budget=2)
    for f in range(3):                          # +20 px per frame to the right
        x = 300 + 20 * f
        p.update(f, dets([(x, 100, x + 10, 120, 0.8, 9)], tracks=[7]))
    rect = p.plan(6, W, H)[0]                   # 4 frames later: x about 420
    centre = (rect[0] + rect[2]) / 2
    assert abs(centre - 425) <= 12, rect


def test_untracked_find_is_revisited_until_a_track_holds_it():
    p = planner(budget=2)
    find = (600, 80, 612, 100)
    p.update(4, dets([], tracks=[]), dets([(*find, 0.6, 9), (*LARGE_CAR, 0.9, 2)]))
    assert inside(find, p.plan(5, W, H)[0])
    assert all(r in horizon(p, 20) for r in p.plan(20, W, H))     # stale after a while: horizon only


def test_weak_untracked_detection_is_not_a_find():
    p = planner(budget=2)
    p.update(4, dets([], tracks=[]), dets([(600, 80, 612, 100, 0.1, 9)]))     # below find_score 0.3
    assert all(r in horizon(p, 5) for r in p.plan(5, W, H))


def test_frame_no_larger_than_a_crop_gets_no_crops():
    p = planner(budget=2, size=(416, 416))
    p.update(0, dets([(10, 10, 20, 30, 0.8, 9)], tracks=[1]))
    assert p.plan(1, 400, 300) == []


def test_crop_size_follows_the_network_input_through_a_shared_detector(yolox_cfg):
    from pipeline.batching import SharedDetector
    from pipeline.crops import crop_size_for
    from pipeline.onnx_detector import OnnxDetector

    shared = SharedDetector(OnnxDetector(yolox_cfg))
    try:
        assert crop_size_for(shared, None)(1280, 720) == (416, 416)
        assert crop_size_for(shared, [256, 320])(1280, 720) == (256, 320)     # detector.crop_size wins
    finally:
        shared.close()


# -- config -----------------------------------------------------------------------------------
BAD_CONFIG = {
    "budget 0": ({"crop_budget": 0}, "detector.crop_budget"),
    "negative size threshold": ({"crop_small_px": -5}, "detector.crop_small_px"),
    "tiny crop": ({"crop_size": [16, 400]}, "detector.crop_size"),
    "band upside down": ({"crop_band": [0.7, 0.3]}, "detector.crop_band"),
    "band past the frame": ({"crop_band": [0.2, 1.5]}, "detector.crop_band"),
    "merge IoU 0": ({"crop_merge_iou": 0}, "detector.crop_merge_iou"),
    "negative edge margin": ({"crop_edge_margin": -1}, "detector.crop_edge_margin"),
}


@pytest.mark.parametrize("section,key", BAD_CONFIG.values(), ids=BAD_CONFIG.keys())
def test_bad_crop_config_names_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(DetectorConfig, section, "detector")


def test_crops_on_off_from_yaml_words(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(DEFAULT_CONFIG.read_text().replace("detector:", "detector:\n  crops: on", 1))
    assert load_config(cfg).detector.crops is True
    assert load_config(DEFAULT_CONFIG).detector.crops is False     # off by default


# -- real runs --------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_pipeline_with_crops_finds_boxes_and_counts_the_crop_cost(tmp_path, small2):
    from pipeline.runner import Runner

    need(YOLOX_ONNX)
    over = {**model_overrides("yolox_nano"), "detector.crops": True, "detector.crop_budget": 2,
            "output.show": "no", "output.progress": False, "source.max_frames": 12,
            "output.save_json": str(tmp_path / "out.jsonl")}
    report = Runner(load_config(DEFAULT_CONFIG, over), str(small2)).run()
    assert report["frames_out"] == 12
    assert report["counts"]["crops"] == 24                         # the budget, every frame
    assert {"crop plan", "crop merge", "preprocess", "inference", "decode"} <= set(report["stages"])
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sum(len(x["boxes"]) for x in lines) > 0


@pytest.mark.timeout(300)
def test_bench_detector_on_two_frames_writes_valid_json(tmp_path):
    need(SHARED / "images" / "pandaset_002_front")
    need(YOLOX_ONNX)
    from bench import bench_detector

    out = tmp_path / "bench.json"
    rc = bench_detector.main(["--max-frames", "2", "--context-seconds", "0.2", "--rows", "teacher416,crops,tiled",
                              "--crops-model", "teacher416", "--work", str(tmp_path / "work"), "--json", str(out)])
    assert rc == 0

    def no_nan(token):
        raise ValueError(f"{token} in the JSON")

    results = json.loads(out.read_text(), parse_constant=no_nan)["results"]
    assert [(r["row"], r["split"]) for r in results] == [
        (row, split) for row in ("teacher416", "crops", "tiled") for split in ("pandaset 60-79", "test_small2 every 5th")]
    for r in results:
        assert r["scored_frames"] == 2 and r["ms_per_frame"] > 0 and 0 <= r["car"]["recall"] <= 1
    tiled = [r for r in results if r["row"] == "tiled"]
    assert all(r["car"]["recall"] == 1.0 for r in tiled)       # the labels are the tiled teacher's own boxes
    assert all(r["crops_per_frame"] == 2 for r in results if r["row"] == "crops")
