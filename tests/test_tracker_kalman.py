"""The batched numpy Kalman filter equals filterpy's; dt is taken from timestamps."""
from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig
from trackers.kalman import BoxKalman, box_size, full_covariance, state_box_to_xyxy, xyxy_to_state_box


def _random_boxes(rng, n):
    x1 = rng.uniform(0, 1000, n)
    y1 = rng.uniform(0, 300, n)
    return np.stack([x1, y1, x1 + rng.uniform(10, 300, n), y1 + rng.uniform(10, 150, n)], axis=1)


@pytest.mark.parametrize("param", ["cxcywh", "xyxy"])
def test_batched_filter_equals_filterpy(param):
    rng = np.random.default_rng(0)
    kf = BoxKalman(param, meas_noise=0.05, accel_pos=2.0, accel_size=1.0, init_vel_std=2.0)
    n = 7
    z0 = xyxy_to_state_box(_random_boxes(rng, n), param)
    x, P = kf.initiate(z0)
    refs = []
    for i in range(n):
        f = KalmanFilter(dim_x=8, dim_z=4)
        f.x, f.P = x[i].copy(), full_covariance(P)[i]
        f.H = np.hstack([np.eye(4), np.zeros((4, 4))])
        refs.append(f)
    for step, dt in enumerate([0.1, 0.1, 0.3, 0.05, 0.1, 0.0, 0.2]):
        sizes = box_size(x[:, :4], param)
        for i, f in enumerate(refs):
            f.predict(F=kf.transition(dt), Q=kf.process_noise(sizes[i:i + 1], dt)[0])
        kf.predict(x, P, dt)
        rows = np.arange(n) if step % 2 == 0 else np.arange(0, n, 2)     # some tracks unmatched
        z = x[rows, :4] + rng.normal(0, 3, (len(rows), 4))
        x[rows], P[rows] = kf.update(x[rows], P[rows], z)
        R = kf.measurement_noise(box_size(z, param))
        for k, i in enumerate(rows):
            refs[i].update(z[k], R=R[k])
        for i, f in enumerate(refs):
            np.testing.assert_allclose(x[i], f.x.reshape(-1), rtol=1e-9, atol=1e-7)
            np.testing.assert_allclose(full_covariance(P)[i], f.P, rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("param", ["cxcywh", "xyxy"])
def test_box_param_roundtrip(param):
    b = _random_boxes(np.random.default_rng(1), 5)
    np.testing.assert_allclose(state_box_to_xyxy(xyxy_to_state_box(b, param), param), b, atol=1e-9)


def test_two_half_steps_equal_one_step():
    """Continuous process noise: predicting dt/2 twice == once by dt (same velocity, no update)."""
    kf = BoxKalman("xyxy", 0.05, 2.0, 1.0, 2.0)
    x, P = kf.initiate(np.array([[100.0, 100.0, 160.0, 140.0]]))
    x2, P2 = x.copy(), P.copy()
    kf.predict(x, P, 0.2)
    kf.predict(x2, P2, 0.1)
    kf.predict(x2, P2, 0.1)
    np.testing.assert_allclose(x, x2)
    np.testing.assert_allclose(P, P2, rtol=1e-9)   # box size is constant here (zero velocity)


DT_CASES = [
    # name, frame times (s), frames where the object is observed
    ("regular_10fps", [0.1 * f for f in range(12)], range(12)),
    ("skipped_frames", [0.0, 0.1, 0.2, 0.3, 0.4, 0.8, 0.9, 1.4, 1.5], range(9)),
    ("variable_rate", [0.0, 0.03, 0.1, 0.12, 0.25, 0.27, 0.4, 0.55, 0.56, 0.7], range(10)),
    ("dropped_frames_no_detection", [0.1 * f for f in range(12)], [0, 1, 2, 3, 4, 5, 9, 10, 11]),
]


@pytest.mark.parametrize("name,times,seen", DT_CASES, ids=[c[0] for c in DT_CASES])
def test_dt_from_timestamps(name, times, seen):
    """A box moving at 80 px/s: the prediction at each time matches the truth."""
    v = 80.0

    def box(t):
        return (100 + v * t, 50.0, 160 + v * t, 90.0)

    tracker = KalmanTracker(TrackerConfig(min_hits=1, coast_trust=False))    # every coasted box emitted
    for k, t in enumerate(times):
        d = Detections(np.array([box(t)]), np.array([0.9]), np.array([2])) if k in seen else Detections.empty()
        if k >= 4:   # velocity learnt: check the pure prediction before the update
            pred = tracker.tracks.x[0, :4] + (t - times[k - 1]) * tracker.tracks.x[0, 4:]
            err = np.abs(pred - np.array(box(t))).max()
            assert err < 2.0, f"{name}: t={t}: predicted box off by {err:.2f} px"
        out = tracker.update(d, t)
        assert out.track_id.tolist() == [1]
    assert abs(tracker.tracks.x[0, 4] - v) < 5.0


DT_CASES = [
    # name, time steps (seconds): the matrices kept per recent dt must give what fresh ones give
    ("float_noise_steps", [f / 10 - (f - 1) / 10 for f in range(1, 12)]),
    ("alternating_two_steps", [0.1, 0.2, 0.1, 0.2, 0.1]),
    ("zero_and_repeat", [0.0, 0.1, 0.0, 0.1]),
    ("more_steps_than_kept", [0.001 * k for k in range(1, 140)] + [0.001]),
]


@pytest.mark.parametrize("name,steps", DT_CASES, ids=[c[0] for c in DT_CASES])
def test_predict_with_kept_matrices_equals_fresh_filter(name, steps):
    rng = np.random.default_rng(1)
    kept = BoxKalman("cxcywh", meas_noise=0.05, accel_pos=2.0, accel_size=1.0, init_vel_std=2.0)
    x, P = kept.initiate(xyxy_to_state_box(_random_boxes(rng, 5), "cxcywh"))
    x[:, 4:] = rng.normal(0, 20, (5, 4))
    x2, P2 = x.copy(), P.copy()
    for dt in steps:
        kept.predict(x, P, dt)
        BoxKalman("cxcywh", meas_noise=0.05, accel_pos=2.0, accel_size=1.0, init_vel_std=2.0).predict(x2, P2, dt)
        assert np.array_equal(x, x2) and np.array_equal(P, P2), f"{name}: differs after dt={dt}"
