"""bench/bench_class_groups.churn (also bench_low_pass's counts): a frame where the tracker emits nothing
(the fine-tuned default has them; the teacher never did) is counted, not a crash."""
import numpy as np

from bench.bench_class_groups import churn
from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig


def car(x: float) -> Detections:
    return Detections(np.array([[x, 100, x + 60, 140]], np.float32), np.array([0.9], np.float32),
                      np.array([2], np.int32))


def test_churn_counts_through_empty_frames():
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    dets = [empty, empty] + [car(100 + 2 * i) for i in range(30)]
    times = [i / 25 for i in range(len(dets))]
    r = churn(KalmanTracker(TrackerConfig()), dets, times, (720, 1280))
    assert r["frames"] == 32 and r["tracks"] == 1 and r["short"] == 0
    assert r["detected_boxes"] >= 28 and r["coasted_boxes"] == 0
    assert r["det_class_flips"] == 0 and r["output_class_changes"] == 0
