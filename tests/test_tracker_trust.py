"""Which coasted boxes are emitted (trackers/trust.py), as a table of scripted scenes."""
from __future__ import annotations

import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig
from trackers.trust import covered_fraction

CAR = 2
DT = 0.1


def dets(*boxes) -> Detections:
    if not boxes:
        return Detections.empty()
    b = np.array(boxes, dtype=np.float32)
    return Detections(b, np.full(len(b), 0.9), np.full(len(b), CAR))


def car(f, x0=100.0, vx=5.0, y0=150.0, vy=0.0, w=60.0, h=40.0):
    x, y = x0 + vx * f, y0 + vy * f
    return (x, y, x + w, y + h)


def zigzag(f):
    """Steady to the right for 2.6 s, then in the last frames before the gap a turn upwards."""
    return car(f) if f < 27 else car(f, y0=150.0 + 10.0 * 26, vy=-10.0)


def scene_seen(name):
    """name -> (per-frame detections, frame size or None, id of the watched track)."""
    gap = range(30, 40)
    if name == "long_history":
        return [dets() if f in gap else dets(car(f)) for f in range(45)], None
    if name == "young_track":
        return [dets(car(f)) if 26 <= f < 30 else dets() for f in range(45)], None
    if name == "leaving_frame":      # moves right fast; the frame ends at x = 300
        return [dets() if f in gap else dets(car(f, x0=18.0, vx=8.0)) for f in range(45)], (300, 375)
    if name == "covered":            # the car drives behind a detected truck (track 2)
        truck = (250.0, 120.0, 340.0, 200.0)
        return [dets(truck) if f in gap else dets(car(f), truck) for f in range(45)], None
    if name == "erratic_velocity":
        return [dets() if f in gap else dets(zigzag(f)) for f in range(45)], None
    raise KeyError(name)


def run(name, cfg=None):
    frames, size = scene_seen(name)
    tracker = KalmanTracker(cfg or TrackerConfig())
    if size:
        tracker.set_frame_size(*size)
    return [tracker.update(d, f * DT) for f, d in enumerate(frames)]


def coasted_ids(out):
    return sorted(out.track_id[out.coasted].tolist())


TRUST_CASES = [
    # name, scene, frame, ids emitted coasted by default, the one test relaxed, ids emitted then
    ("trusted_one_frame_after_long_history", "long_history", 30, [1], {}, [1]),
    ("withheld_once_filter_std_grows", "long_history", 36, [], {"coast_max_pos_std": 1.0}, [1]),
    ("withheld_gap_longer_than_young_history", "young_track", 30, [], {"coast_unseen_ratio": 10.0}, [1]),
    ("withheld_when_leaving_the_frame", "leaving_frame", 30, [], {"coast_min_inside": 0.0}, [1]),
    ("withheld_when_covered_by_a_matched_box", "covered", 30, [], {"coast_max_covered": 1.0}, [1]),
    ("withheld_after_velocity_change", "erratic_velocity", 30, [], {"coast_max_vel_change": 0.0}, [1]),
]


@pytest.mark.parametrize("name,scene,frame,expect,relax,expect_relaxed", TRUST_CASES, ids=[c[0] for c in TRUST_CASES])
def test_coasted_emission(name, scene, frame, expect, relax, expect_relaxed):
    assert coasted_ids(run(scene)[frame]) == expect, name
    # with only the deciding test relaxed the box is emitted: that test decided
    assert coasted_ids(run(scene, TrackerConfig(**relax))[frame]) == expect_relaxed, name


def test_trusted_score_decays_below_the_last_detection_score():
    outs = run("long_history", TrackerConfig(coast_unseen_ratio=1.0, coast_max_pos_std=1.0))
    scores = [float(outs[f].score[outs[f].coasted][0]) for f in (30, 31, 32)]
    assert 0.9 > scores[0] > scores[1] > scores[2] > 0


def test_matched_boxes_do_not_change():
    on, off = run("long_history"), run("long_history", TrackerConfig(coast_trust=False))
    for a, b in zip(on, off):
        assert np.array_equal(a.xyxy[~a.coasted], b.xyxy[~b.coasted])
        assert np.array_equal(a.track_id[~a.coasted], b.track_id[~b.coasted])


@pytest.mark.parametrize("name,box,cover,expect", [
    ("no_cover", [0, 0, 10, 10], np.zeros((0, 4)), 0.0),
    ("half", [0, 0, 10, 10], [[5, 0, 20, 10]], 0.5),
    ("inside_bigger", [0, 0, 10, 10], [[-5, -5, 20, 20]], 1.0),
    ("largest_single", [0, 0, 10, 10], [[0, 0, 2, 10], [0, 0, 10, 3]], 0.3),
], ids=lambda v: v if isinstance(v, str) else "")
def test_covered_fraction(name, box, cover, expect):
    got = covered_fraction(np.array([box], float), np.asarray(cover, float).reshape(-1, 4))
    assert got[0] == pytest.approx(expect)
