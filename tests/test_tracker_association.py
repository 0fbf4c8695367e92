"""Similarities and gated Hungarian assignment, as a table of edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from trackers.association import assign, centre_similarity, giou, iou

A = np.array([[0, 0, 10, 10]], float)


def test_similarity_values():
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 0, 30, 10]], float)
    np.testing.assert_allclose(iou(A, b), [[1.0, 1 / 3, 0.0]])
    g = giou(A, b)
    assert g[0, 0] == pytest.approx(1.0) and g[0, 2] == pytest.approx(-1 / 3)
    c = centre_similarity(A, b)
    assert c[0, 0] == pytest.approx(1.0) and c[0, 1] == pytest.approx(1 - 5 / np.hypot(10, 10))


ASSIGN_CASES = [
    # name, sim (T x D), gate, track classes, det classes, expected pairs
    ("no_detections", np.zeros((3, 0)), 0.3, None, None, []),
    ("no_tracks", np.zeros((0, 4)), 0.3, None, None, []),
    ("all_below_gate", np.full((2, 2), 0.1), 0.3, None, None, []),
    ("diagonal", np.array([[0.9, 0.1], [0.2, 0.8]]), 0.3, None, None, [(0, 0), (1, 1)]),
    # heavy overlap: greedy would give (0,0) and leave track 1 unmatched
    ("heavy_overlap_global_optimum", np.array([[0.9, 0.8], [0.85, 0.2]]), 0.3, None, None, [(0, 1), (1, 0)]),
    ("gate_rejects_forced_pair", np.array([[0.9, 0.0], [0.95, 0.05]]), 0.3, None, None, [(1, 0)]),
    ("class_mismatch_never_matched", np.array([[0.9, 0.6]]), 0.3, np.array([2]), np.array([0, 2]), [(0, 1)]),
    ("more_tracks_than_dets", np.array([[0.5], [0.7], [0.6]]), 0.3, None, None, [(1, 0)]),
]


@pytest.mark.parametrize("name,sim,gate,tc,dc,expected", ASSIGN_CASES, ids=[c[0] for c in ASSIGN_CASES])
def test_assign(name, sim, gate, tc, dc, expected):
    pairs = assign(sim, gate, tc, dc)
    assert pairs.shape[1] == 2
    assert sorted(map(tuple, pairs.tolist())) == sorted(expected), name


def _reference_assign(sim, gate):
    """The plain solver on the whole matrix (what assign did before its fast path)."""
    from scipy.optimize import linear_sum_assignment
    valid = sim >= gate
    rows, cols = linear_sum_assignment(np.where(valid, -sim, 10.0))
    keep = valid[rows, cols]
    return sorted(zip(rows[keep].tolist(), cols[keep].tolist()))


@pytest.mark.parametrize("seed", range(20))
def test_assign_fast_path_equals_full_solver(seed):
    """Isolated one-to-one pairs skip the solver; the result must not change."""
    rng = np.random.default_rng(seed)
    t, d = rng.integers(1, 30, size=2)
    sim = np.where(rng.random((t, d)) < rng.uniform(0.02, 0.3), rng.random((t, d)), 0.0)
    assert sorted(map(tuple, assign(sim, 0.3).tolist())) == _reference_assign(sim, 0.3)


def _reference_ordered(sim, gate):
    from scipy.optimize import linear_sum_assignment
    valid = sim >= gate
    rows, cols = linear_sum_assignment(np.where(valid, -sim, 10.0))
    keep = valid[rows, cols]
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


LONE_CASES = [
    # name, sim, gate: assign must give the solver's pairs in the solver's order
    ("all_lone_shuffled", np.array([[0.0, 0.0, 0.8], [0.9, 0.0, 0.0], [0.0, 0.7, 0.0]]), 0.3),
    ("lone_with_unmatched_rows", np.array([[0.0, 0.0], [0.0, 0.6], [0.0, 0.0], [0.5, 0.0]]), 0.3),
    ("lone_with_unmatched_cols", np.array([[0.0, 0.6, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5]]), 0.3),
    ("row_with_two_valid", np.array([[0.9, 0.8], [0.85, 0.0]]), 0.3),
    ("col_with_two_valid", np.array([[0.9, 0.0], [0.8, 0.0]]), 0.3),
    ("negative_gate_giou", np.array([[-0.2, -0.9], [-0.9, 0.4]]), -0.5),
    # a valid pair costing more than an invalid one (10): the solver drops it, so no shortcut
    ("gate_below_minus_10_left_to_solver", np.array([[-11.0, -50.0], [-50.0, -50.0]]), -12.0),
]


@pytest.mark.parametrize("name,sim,gate", LONE_CASES, ids=[c[0] for c in LONE_CASES])
def test_lone_pair_shortcut_gives_the_solvers_pairs_in_order(name, sim, gate):
    assert [tuple(p) for p in assign(sim, gate).tolist()] == _reference_ordered(sim, gate), name


DEDUP_CASES = [
    # name, boxes, scores, classes, max_iou, kept indices (input order)
    ("spare_box_of_one_car_dropped", [[0, 0, 10, 10], [1, 0, 11, 10]], [0.6, 0.9], [2, 2], 0.5, [1]),
    ("other_class_kept", [[0, 0, 10, 10], [1, 0, 11, 10]], [0.6, 0.9], [0, 2], 0.5, [0, 1]),
    ("below_threshold_kept", [[0, 0, 10, 10], [5, 0, 15, 10]], [0.6, 0.9], [2, 2], 0.5, [0, 1]),
    # chain a-b-c: b goes (under a), so c, which overlaps only b, stays
    ("chain_keeps_the_far_end", [[0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]], [0.9, 0.8, 0.7], [2, 2, 2], 0.6,
     [0, 2]),
]


@pytest.mark.parametrize("name, boxes, scores, classes, max_iou, kept", DEDUP_CASES, ids=[c[0] for c in DEDUP_CASES])
def test_duplicate_free(name, boxes, scores, classes, max_iou, kept):
    from dashtrack_core.records import Detections
    from trackers.association import duplicate_free

    dets = Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int32))
    assert duplicate_free(dets, max_iou).tolist() == kept


def test_dedup_option_drops_the_spare_box_before_tracking():
    from dashtrack_core.records import Detections
    from trackers import KalmanTracker, TrackerConfig

    two = Detections(np.array([[0, 0, 50, 50], [2, 0, 52, 50]], np.float32), np.array([0.9, 0.8], np.float32),
                     np.array([2, 2], np.int32))
    counts = {}
    for dedup in (0.0, 0.5):
        tr = KalmanTracker(TrackerConfig(dedup_iou=dedup, min_hits=1))
        for i in range(3):
            out = tr.update(two, i * 0.1)
        counts[dedup] = len(out)
    assert counts == {0.0: 2, 0.5: 1}
