"""The motion filter is injectable (``KalmanTracker(..., motion_filter=factory)``) and used."""
from __future__ import annotations

import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig
from trackers.kalman import BoxKalman, DIM, box_size
from trackers.motion import kalman_filter


class ConstantPosition:
    """A filter that assumes objects stand still: rates stay 0, the box variance grows by
    ``q * size^2`` per second and an update averages prediction and measurement by their variances."""

    def __init__(self, config, q: float = 0.5) -> None:
        self.config, self.q, self.meas_noise = config, q, config.meas_noise
        self.calls = {"initiate": 0, "predict": 0, "update": 0}

    def initiate(self, z):
        self.calls["initiate"] += 1
        x = np.zeros((len(z), 2 * DIM))
        x[:, :DIM] = z
        C = np.zeros((len(z), 3, DIM))
        C[:, 0] = (self.meas_noise * box_size(z, self.config.box_param)[:, None]) ** 2
        return x, C

    def predict(self, x, C, dt):
        self.calls["predict"] += 1
        C[:, 0] += self.q * dt * box_size(x[:, :DIM], self.config.box_param)[:, None] ** 2

    def update(self, x, C, z, copy=True):
        self.calls["update"] += 1
        if copy:
            x, C = x.copy(), C.copy()
        r = (self.meas_noise * box_size(z, self.config.box_param)[:, None]) ** 2
        k = C[:, 0] / (C[:, 0] + r)
        x[:, :DIM] += k * (z - x[:, :DIM])
        C[:, 0] *= 1 - k
        return x, C


def moving(f):      # 40x30 px, 10 px a frame to the right
    return (100.0 + 10 * f, 50.0, 140.0 + 10 * f, 80.0)


def run(factory, frames=8, gap=(6,)):
    """Detections of ``moving`` except in the ``gap`` frames; returns the tracker and each frame's output."""
    tracker = KalmanTracker(TrackerConfig(coast_trust=False), motion_filter=factory)
    outs = []
    for f in range(frames):
        d = Detections.empty() if f in gap else Detections(np.array([moving(f)], np.float32), [0.9], [2])
        outs.append(tracker.update(d, f * 0.1))
    return tracker, outs


# name, factory, the coasted box's x1 in frame 6 minus the last detected x1 (frame 5): (low, high)
FILTER_CASES = [
    ("default_kalman_predicts_ahead", None, (5.0, 15.0)),
    ("kalman_factory_same_as_default", kalman_filter, (5.0, 15.0)),
    ("constant_position_stays_behind", ConstantPosition, (-15.0, 0.5)),
]


@pytest.mark.parametrize("name,factory,shift", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_coasted_box_follows_the_injected_filter(name, factory, shift):
    tracker, outs = run(factory)
    coasted = outs[6]
    assert len(coasted) == 1 and bool(coasted.coasted[0]), f"{name}: frame 6 should emit one coasted box"
    moved = float(coasted.xyxy[0, 0]) - moving(5)[0]
    assert shift[0] <= moved <= shift[1], f"{name}: coasted box moved {moved:.1f} px from the last detection"
    assert outs[7].track_id.tolist() == [1], f"{name}: the track should survive the gap"


def test_injected_filter_is_built_from_the_config_and_does_every_step():
    made = []

    def factory(config):
        made.append(ConstantPosition(config))
        return made[-1]

    cfg = TrackerConfig(coast_trust=False)
    tracker = KalmanTracker(cfg, motion_filter=factory)
    assert len(made) == 1 and made[0].config is cfg and tracker.motion is made[0]
    for f in range(5):
        tracker.update(Detections(np.array([moving(f)], np.float32), [0.9], [2]), f * 0.1)
    assert made[0].calls == {"initiate": 1, "predict": 5, "update": 4}
    assert np.all(tracker.tracks.x[:, DIM:] == 0.0)     # no velocity: the constant-velocity filter never ran
    tracker.reset()
    assert tracker.motion is made[0] and len(made) == 1    # reset keeps the filter (it holds no track state)


def test_default_filter_is_the_kalman_filter_with_the_config_noise():
    cfg = TrackerConfig()
    f = KalmanTracker(cfg).motion
    assert isinstance(f, BoxKalman)
    assert (f.param, f.meas_noise, f.init_vel_std) == (cfg.box_param, cfg.meas_noise, cfg.init_vel_std)


class NoUpdate:
    meas_noise = 0.05

    def __init__(self, config):
        pass

    def initiate(self, z):
        raise AssertionError("not reached")

    def predict(self, x, C, dt):
        pass


BAD_FILTERS = [
    # name, motion_filter, words the one-line error must contain
    ("instance_not_factory", ConstantPosition(TrackerConfig()), ["must be a factory", "ConstantPosition"]),
    ("filter_without_update", NoUpdate, ["NoUpdate", "without update"]),
]


@pytest.mark.parametrize("name,bad,words", BAD_FILTERS, ids=[c[0] for c in BAD_FILTERS])
def test_bad_motion_filter_is_one_clear_line(name, bad, words):
    with pytest.raises(TypeError) as e:
        KalmanTracker(TrackerConfig(), motion_filter=bad)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), f"{name}: {msg}"
