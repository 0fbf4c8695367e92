"""dashtrack_core.boxes: the numpy box arithmetic shared by the tracker and the tools."""
from __future__ import annotations

import numpy as np
import pytest

from dashtrack_core import boxes

CASES = [
    # name, a, b, expected IoU
    ("identical", [[0, 0, 10, 10]], [[0, 0, 10, 10]], [[1.0]]),
    ("half_overlap", [[0, 0, 10, 10]], [[5, 0, 15, 10]], [[50 / 150]]),
    ("touching_edges", [[0, 0, 10, 10]], [[10, 0, 20, 10]], [[0.0]]),
    ("contained", [[0, 0, 10, 10]], [[2, 2, 4, 4]], [[4 / 100]]),
    ("degenerate_both", [[5, 5, 5, 5]], [[5, 5, 5, 5]], [[0.0]]),
    ("inverted_box_is_empty", [[10, 10, 0, 0]], [[0, 0, 10, 10]], [[0.0]]),
]


@pytest.mark.parametrize("name,a,b,expected", CASES, ids=[c[0] for c in CASES])
def test_iou_cases(name, a, b, expected):
    np.testing.assert_allclose(boxes.iou(np.array(a, float), np.array(b, float)), expected, atol=1e-12)


def test_iou_matches_a_plain_loop_and_shapes():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 100, (7, 4)); a[:, 2:] += a[:, :2]
    b = rng.uniform(0, 100, (5, 4)); b[:, 2:] += b[:, :2]
    ref = np.zeros((7, 5))
    for i in range(7):
        for j in range(5):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            ref[i, j] = inter / union
    np.testing.assert_allclose(boxes.iou(a, b), ref, rtol=1e-12)
    np.testing.assert_allclose(boxes.intersection(a, b) / (boxes.area(a)[:, None] + boxes.area(b)[None] - boxes.intersection(a, b)), ref)
    assert boxes.iou(a[:0], b).shape == (0, 5) and boxes.iou(a, b[:0]).shape == (7, 0)
