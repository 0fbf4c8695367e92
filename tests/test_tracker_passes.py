"""The leftover passes: fast objects, drifted predictions, relinking a reappearing object."""
from __future__ import annotations

import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig


def one(box, score=0.9, cls=2) -> Detections:
    return Detections(np.array([box], np.float32), [score], [cls])


def ids_over(boxes, cfg, dt=0.1):
    tracker = KalmanTracker(cfg)
    seen = []
    for f, b in enumerate(boxes):
        out = tracker.update(one(b) if b is not None else Detections.empty(), f * dt)
        seen.append(out.track_id[~out.coasted].tolist())
    return tracker, seen


def fast(f):        # 20x40 px, moves 25 px a frame: no overlap with a zero-velocity prediction
    return (100 + 25 * f, 50, 120 + 25 * f, 90)


def reappear(f):    # 4-frame gap during which the object turned: prediction far off
    x = 300 + 5 * f if f < 8 else 300 + 5 * 8 - 10 * (f - 8)
    return (x, 100, x + 60, 140)


PASS_CASES = [
    # name, config overrides, box per frame (None: no detection), frames whose emitted id must be [1]
    ("fast_object_centre_pass", {}, [fast(f) for f in range(8)], range(1, 8)),
    ("fast_object_giou_similarity", {"similarity": "giou", "min_similarity": -0.5, "centre_pass": False},
     [fast(f) for f in range(8)], range(1, 8)),
    ("reappears_off_prediction_relinked", {},
     [reappear(f) if not 8 <= f < 12 else None for f in range(16)], [1, 5, 7, 13, 14, 15]),
]


@pytest.mark.parametrize("name,overrides,boxes,frames", PASS_CASES, ids=[c[0] for c in PASS_CASES])
def test_keeps_id(name, overrides, boxes, frames):
    _, seen = ids_over(boxes, TrackerConfig(**overrides))
    for f in frames:
        assert seen[f] == [1], f"{name}: frame {f} emitted ids {seen[f]}"


def test_without_centre_pass_fast_object_fragments():
    """The control for the first case: the IoU passes alone lose the fast object."""
    _, seen = ids_over([fast(f) for f in range(8)], TrackerConfig(centre_pass=False, relink=False))
    assert sum(s == [1] for s in seen) <= 1      # each frame starts a new tentative track


def test_without_relink_reappearing_object_gets_new_id():
    cfg = TrackerConfig(relink=False, centre_pass=False, recovery_pass=False)
    tracker, seen = ids_over([reappear(f) if not 8 <= f < 12 else None for f in range(16)], cfg)
    assert seen[15] != [1]
    cfg = TrackerConfig(centre_pass=False, recovery_pass=False)
    tracker, seen = ids_over([reappear(f) if not 8 <= f < 12 else None for f in range(16)], cfg)
    assert seen[15] == [1] and tracker.stats.relinks == 1


def test_relink_never_crosses_classes():
    boxes = [reappear(f) if not 8 <= f < 12 else None for f in range(16)]
    tracker = KalmanTracker(TrackerConfig(centre_pass=False, recovery_pass=False))
    for f, b in enumerate(boxes):
        cls = 2 if f < 8 else 0      # after the gap a pedestrian appears there
        out = tracker.update(one(b, cls=cls) if b is not None else Detections.empty(), f * 0.1)
    assert tracker.stats.relinks == 0
    assert 1 not in out.track_id[~out.coasted].tolist()


def test_stats_report_timing():
    tracker, _ = ids_over([fast(f) for f in range(8)], TrackerConfig())
    assert tracker.stats.updates == 8 and tracker.stats.us_per_update > 0


def steady(f):      # 60x40 px, 10 px a frame to the right
    return (100 + 10 * f, 80, 160 + 10 * f, 120)


# After a 4-frame gap, a box 1.6x the size appears around the last observed one:
# IoU 0.39 with it (recovery pass gate 0.3), 0.15 with the prediction.
BIGGER_AT_LAST_SEEN = [steady(f) if f < 6 else None for f in range(10)] + [(132, 68, 228, 132)]

RECOVERY_SIZE_CASES = [
    # name, config overrides, ids emitted (not coasted) at the last frame
    ("size_gate_rejects_other_size", {}, []),
    ("no_size_gate_recovers", {"recovery_max_size_ratio": 100.0}, [1]),
    ("gate_above_ratio_recovers", {"recovery_max_size_ratio": 1.7}, [1]),
]


@pytest.mark.parametrize("name,overrides,expected", RECOVERY_SIZE_CASES, ids=[c[0] for c in RECOVERY_SIZE_CASES])
def test_recovery_pass_size_gate(name, overrides, expected):
    cfg = TrackerConfig(centre_pass=False, relink=False, recovery_pass=True, **overrides)
    _, seen = ids_over(BIGGER_AT_LAST_SEEN, cfg)
    assert seen[5] == [1]
    assert seen[-1] == expected, name


def right_then(gap, after):
    """40x30 px box moving 10 px a frame to the right for frames 0-7 (last seen at x=370),
    no detection for `gap` frames, then the boxes `after` (x positions) frame by frame."""
    boxes = [(300 + 10 * f, 100, 340 + 10 * f, 130) for f in range(8)] + [None] * gap
    return boxes + [(x, 100, x + 40, 130) for x in after]


MOTION_CASES = [
    # name, boxes, config overrides, id emitted (not coasted) at the last frame
    # another car now stands where track 1 was last seen, 0.6 s later while 1 was
    # predicted to move on 60 px: a new id with the check, id 1 (GIoU >= 0 with the
    # last box) without it
    ("car_in_old_place_not_relinked", right_then(5, [370, 370]), {}, [2]),
    ("car_in_old_place_control", right_then(5, [370, 370]), {"relink_motion_check": False}, [1]),
    # the car accelerated while unseen: 140 px ahead of its last box where 70 px were
    # predicted, no overlap with the prediction (GIoU -0.27): relinked with the check
    ("accelerating_car_relinked", right_then(5, [500, 510]), {}, [1]),
    ("accelerating_car_control", right_then(5, [500, 510]), {"relink_motion_check": False}, [2]),
    # 20 px behind the last box after 0.3 s unseen: too early to veto (min age 0.45 s)
    ("short_gap_not_vetoed", right_then(1, [350, 350]), {}, [1]),
    ("short_gap_control", right_then(1, [350, 350]), {"relink_motion_min_age_s": 0.0}, [2]),
]


@pytest.mark.parametrize("name,boxes,overrides,ids", MOTION_CASES, ids=[c[0] for c in MOTION_CASES])
def test_relink_by_motion(name, boxes, overrides, ids):
    cfg = TrackerConfig(centre_pass=False, recovery_pass=False, **overrides)
    _, seen = ids_over(boxes, cfg)
    assert seen[-1] == ids, f"{name}: last frame emitted {seen[-1]}"
