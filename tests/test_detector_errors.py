"""bench/detector_errors.py: each miss and false positive gets the cause it really has (named cases)."""
import numpy as np
import pytest

from bench.detector_errors import classify, crowded_mask

BIG = [100, 100, 200, 180]          # an 80 px tall car label


@pytest.mark.parametrize("name, labels, boxes, scores, misses, fps", [
    ("hit", [BIG], [BIG], [0.9], [], []),
    ("box too loose: miss and FP mislocated", [BIG], [[100, 100, 280, 200]], [0.9],
     [("large", "mislocated")], [("large", "mislocated")]),
    ("nothing near: not found", [BIG], [], [], [("large", "not found")], []),
    ("below the operating score counts as nothing", [BIG], [BIG], [0.2], [("large", "not found")], []),
    ("a label mostly inside another: crowded (the box on its neighbour is not a loose box for it)",
     [BIG, [105, 110, 150, 170]], [BIG], [0.9], [("large", "crowded")], []),
    ("second box on a taken label: duplicate", [BIG], [BIG, [102, 100, 200, 180]], [0.9, 0.8], [], [("large", "duplicate")]),
    ("box where no label is: unlabelled", [BIG], [BIG, [500, 300, 520, 315]], [0.9, 0.8], [], [("small", "unlabelled")]),
    ("small label not found", [[500, 300, 520, 315]], [], [], [("small", "not found")], []),
])
def test_classify(name, labels, boxes, scores, misses, fps):
    g = np.asarray(labels, np.float64).reshape(-1, 4)
    d = np.asarray(boxes, np.float64).reshape(-1, 4)
    got_m, got_f = classify(g, d, np.asarray(scores, np.float64), conf=0.3)
    assert (sorted(got_m), sorted(got_f)) == (sorted(misses), sorted(fps)), name


def test_crowded_mask_marks_only_the_label_inside_another():
    g = np.asarray([BIG, [105, 110, 150, 170], [400, 100, 480, 160]], np.float64)
    assert crowded_mask(g).tolist() == [False, True, False]
    assert crowded_mask(g[:1]).tolist() == [False]
