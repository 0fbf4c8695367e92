"""Track lifecycle as tables of named cases: born, confirmed, coasting, recovered, dead."""
from __future__ import annotations

import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig

CAR = 2


def dets(*boxes, score=0.9, cls=CAR) -> Detections:
    if not boxes:
        return Detections.empty()
    b = np.array(boxes, dtype=np.float32)
    return Detections(b, np.full(len(b), score), np.full(len(b), cls))


def moving_box(frame: int, vx: float = 6.0, vy: float = 1.0) -> tuple:
    x, y = 100 + vx * frame, 80 + vy * frame
    return (x, y, x + 60, y + 40)


def run(track_frames, gap=(), n=30, dt=0.1, cfg=None, **box_kw):
    """Feed one moving box for frames in range(n) except `gap`; return outputs per frame."""
    tracker = KalmanTracker(cfg or TrackerConfig())
    outs = []
    for f in range(n):
        d = dets(moving_box(f, **box_kw)) if (f in track_frames and f not in gap) else dets()
        outs.append(tracker.update(d, f * dt))
    return tracker, outs


LIFECYCLE_CASES = [
    # name, config overrides, gap frames, expected: (frame, n_out, coasted or None)
    ("born_tentative_not_emitted", {"min_hits": 3}, (), [(0, 0, None), (1, 0, None)]),
    ("confirmed_after_min_hits", {"min_hits": 3}, (), [(2, 1, False), (10, 1, False)]),
    ("confirmed_at_birth_min_hits_1", {"min_hits": 1}, (), [(0, 1, False)]),
    ("coasting_through_10_frame_gap", {"max_coast_seconds": 1.5, "coast_trust": False}, tuple(range(10, 20)),
     [(10, 1, True), (15, 1, True), (19, 1, True), (20, 1, False)]),
    ("coast_not_emitted_after_emit_window", {"emit_coast_seconds": 0.3, "coast_trust": False}, tuple(range(10, 20)),
     [(12, 1, True), (13, 0, None), (20, 1, False)]),
    ("dead_after_max_coast_seconds", {"max_coast_seconds": 0.5, "emit_coast_seconds": 0.5, "coast_trust": False},
     tuple(range(10, 30)), [(14, 1, True), (15, 0, None), (25, 0, None)]),
]


@pytest.mark.parametrize("name,overrides,gap,expect", LIFECYCLE_CASES, ids=[c[0] for c in LIFECYCLE_CASES])
def test_lifecycle(name, overrides, gap, expect):
    _, outs = run(range(30), gap=gap, cfg=TrackerConfig(**overrides))
    for frame, n_out, coasted in expect:
        out = outs[frame]
        assert len(out) == n_out, f"{name}: frame {frame} has {len(out)} boxes"
        if n_out:
            assert out.track_id.tolist() == [1]
            assert bool(out.coasted[0]) is coasted, f"{name}: frame {frame}"


def test_same_id_and_good_box_through_10_frame_gap():
    # every coasted box emitted (coast_trust off): the prediction itself is checked here;
    # which of them are emitted by default is tests/test_tracker_trust.py's subject
    _, outs = run(range(30), gap=tuple(range(10, 20)), cfg=TrackerConfig(coast_trust=False))
    ids = {int(o.track_id[0]) for o in outs[1:]}
    assert ids == {1}
    for f in range(10, 20):   # the coasted box follows the motion
        err = np.abs(outs[f].xyxy[0] - np.array(moving_box(f))).max()
        assert err < 3.0, f"frame {f}: coasted box off by {err:.1f} px"
    assert outs[15].score[0] < outs[9].score[0]   # decayed score while coasting


def test_dead_track_gets_new_id():
    cfg = TrackerConfig(max_coast_seconds=0.5, emit_coast_seconds=0.5)
    _, outs = run(range(30), gap=tuple(range(10, 20)), cfg=cfg)
    assert outs[9].track_id.tolist() == [1]
    assert len(outs[20]) == 0            # reborn as tentative, not emitted yet
    assert outs[21].track_id.tolist() == [2]


def test_recovery_corrects_drift_from_coasting():
    """The object turns during the gap; after re-match the velocity follows the new direction."""
    cfg = TrackerConfig(min_similarity=0.05)

    def box(f):  # moves right, then (during the gap) starts moving down
        x = 100 + 6 * min(f, 10)
        y = 80 + 4 * max(0, f - 10)
        return (x, y, x + 60, y + 40)

    results = {}
    for reupdate in (True, False):
        tracker = KalmanTracker(TrackerConfig(**{**cfg.__dict__, "reupdate_on_recovery": reupdate}))
        for f in range(25):
            d = dets(box(f)) if not 11 <= f < 16 else dets()
            out = tracker.update(d, f * 0.1)
        assert out.track_id.tolist() == [1]
        assert tracker.stats.recoveries == 1
        vel = tracker.tracks.x[0, 4:6]    # (d x1/dt, d y1/dt) px/s, true (0, 40)
        results[reupdate] = abs(vel[0]) + abs(vel[1] - 40.0)
    assert results[True] < 8.0
    assert results[True] <= results[False] + 1e-6


@pytest.mark.parametrize("missed, replays", [(1, 0), (2, 1), (5, 1)])
def test_only_gaps_of_two_or_more_frames_are_replayed(missed, replays):
    """After one missed frame the track is updated directly (the replay's one midpoint
    observation changes little); longer gaps are re-run from the last observation."""
    tracker = KalmanTracker(TrackerConfig())
    for f in range(12 + missed):
        x = 100 + 5 * f
        out = tracker.update(dets((x, 50, x + 60, 90)) if not 6 <= f < 6 + missed else dets(), f * 0.1)
    assert out.track_id.tolist() == [1] and not out.coasted.any()
    assert tracker.stats.recoveries == 1 and tracker.stats.replays == replays


def test_two_objects_keep_their_ids_and_ids_count_per_instance():
    a = [KalmanTracker(TrackerConfig(min_hits=1)) for _ in range(2)]
    for tracker in a:
        for f in range(5):
            out = tracker.update(dets((10, 10, 50, 50), (200, 10, 260, 60)), f * 0.1)
        assert sorted(out.track_id.tolist()) == [1, 2]
    a[0].reset()
    out = a[0].update(dets((10, 10, 50, 50)), 0.0)
    assert out.track_id.tolist() == [1]


def test_class_consistent_no_cross_class_match():
    tracker = KalmanTracker(TrackerConfig(min_hits=1, coast_trust=False))
    tracker.update(dets((10, 10, 50, 50), cls=CAR), 0.0)
    out = tracker.update(dets((10, 10, 50, 50), cls=0), 0.1)
    # the pedestrian detection starts its own track; the car track coasts
    assert sorted(out.track_id.tolist()) == [1, 2]
    assert out.coasted[out.track_id == 1].tolist() == [True]
    assert out.class_id[out.track_id == 2].tolist() == [0]


def test_class_check_with_two_track_classes_and_one_detection_class():
    """Tracks of two classes, detections of one: the class check must still run
    (it is skipped only when every track and detection has the same class)."""
    tracker = KalmanTracker(TrackerConfig(min_hits=1, coast_trust=False))
    both = Detections(np.array([[10, 10, 50, 50], [200, 10, 260, 60]], np.float32),
                      np.full(2, 0.9, np.float32), np.array([CAR, 0], np.int32))
    tracker.update(both, 0.0)                                  # car track 1, pedestrian track 2
    out = tracker.update(dets((200, 10, 260, 60), cls=CAR), 0.1)   # a car where the pedestrian was
    assert out.track_id[~out.coasted].tolist() == [3]
    assert sorted(out.track_id[out.coasted].tolist()) == [1, 2]


def test_empty_every_frame_and_timestamps_must_not_go_back():
    tracker = KalmanTracker(TrackerConfig())
    for f in range(3):
        out = tracker.update(Detections.empty(), f * 0.1)
        assert len(out) == 0 and out.tracked
    with pytest.raises(ValueError, match="go back"):
        tracker.update(Detections.empty(), 0.05)


def test_wide_boxes_are_kept():
    """Never drop a box by aspect ratio: a car seen from the side is 4x wider than tall."""
    tracker = KalmanTracker(TrackerConfig(min_hits=1))
    out = tracker.update(dets((0, 100, 400, 200), (500, 100, 520, 300)), 0.0)
    assert len(out) == 2


def test_low_score_second_pass_extends_but_never_births():
    cfg = TrackerConfig(min_hits=1, high_score=0.6, low_score=0.1)
    tracker = KalmanTracker(cfg)
    tracker.update(dets((10, 10, 50, 50), score=0.9), 0.0)
    out = tracker.update(dets((11, 10, 51, 50), score=0.3), 0.1)      # weak: extends track 1
    assert out.track_id.tolist() == [1] and out.coasted.tolist() == [False]
    out = tracker.update(dets((11, 10, 51, 50), (300, 10, 350, 50), score=0.3), 0.2)
    assert out.track_id.tolist() == [1]                                 # no birth from weak det


@pytest.mark.parametrize("name,overrides,first_emitted", [
    ("default_emits_at_confirmation", {}, 1),
    ("emit_min_hits_4_delays_output", {"emit_min_hits": 4}, 3),
    ("emit_min_hits_below_min_hits_changes_nothing", {"min_hits": 3, "emit_min_hits": 2}, 2),
])
def test_emit_min_hits(name, overrides, first_emitted):
    tracker = KalmanTracker(TrackerConfig(**overrides))
    emitted = [len(tracker.update(dets((10 + 5 * f, 10, 50 + 5 * f, 50)), f * 0.1)) for f in range(6)]
    assert emitted == [0] * first_emitted + [1] * (6 - first_emitted), f"{name}: {emitted}"
