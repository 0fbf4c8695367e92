"""Camera-motion compensation: recovers a shift; falls back safely when it cannot."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig
from trackers.cmc import CameraMotion


def textured(h=240, w=640, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.GaussianBlur(img, (5, 5), 0), cv2.COLOR_GRAY2BGR)


def shifted(img, dx, dy):
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_recovers_translation():
    cmc = CameraMotion(max_width=320, max_corners=150, min_inliers=15)
    img = textured()
    assert cmc.estimate(img) is None            # no previous frame yet
    A = cmc.estimate(shifted(img, 12.0, -6.0))
    assert A is not None
    np.testing.assert_allclose(A[:, 2], [12.0, -6.0], atol=1.0)
    np.testing.assert_allclose(A[:, :2], np.eye(2), atol=0.02)
    assert cmc.fallbacks == 1 and cmc.calls == 2 and cmc.seconds > 0


FALLBACK_CASES = [
    ("no_image", lambda: None),
    ("flat_grey_no_corners", lambda: np.full((240, 640, 3), 128, np.uint8)),
    ("size_changed", lambda: textured(200, 400)),
    ("unrelated_frame_noise", lambda: np.random.default_rng(5).integers(0, 255, (240, 640, 3), dtype=np.uint8)),
]


@pytest.mark.parametrize("name,make", FALLBACK_CASES, ids=[c[0] for c in FALLBACK_CASES])
def test_fallback_to_no_compensation(name, make):
    cmc = CameraMotion(max_width=320, min_inliers=15)
    cmc.estimate(textured() if name != "flat_grey_no_corners" else make())
    assert cmc.estimate(make()) is None, name
    assert cmc.fallbacks == 2


def test_tracker_with_cmc_follows_panning_camera_and_reports_cost():
    """The camera pans 15 px/frame; a static object moves in the image. With CMC the
    prediction is right from the second frame even before velocity is learnt."""
    base = textured(360, 720)
    cfg = TrackerConfig(cmc=True, min_hits=1, cmc_max_width=360)
    tracker = KalmanTracker(cfg)
    for f in range(6):
        dx = -15.0 * f
        img = shifted(base, dx, 0.0)
        box = np.array([[300 + dx, 100, 360 + dx, 140]], np.float32)
        out = tracker.update(Detections(box, [0.9], [2]), f * 0.1, image=img)
        assert out.track_id.tolist() == [1]
    # the object's image-space motion comes from the camera, so the filter's
    # own velocity estimate stays near zero
    assert abs(tracker.tracks.x[0, 4]) < 40.0
    assert tracker.stats.cmc_calls == 6 and tracker.stats.cmc_fallbacks == 1
    assert tracker.stats.cmc_ms_per_call > 0


def test_tracker_cmc_without_image_falls_back():
    tracker = KalmanTracker(TrackerConfig(cmc=True, min_hits=1))
    out = tracker.update(Detections(np.array([[0, 0, 10, 10]]), [0.9], [2]), 0.0, image=None)
    assert len(out) == 1 and tracker.stats.cmc_fallbacks == 1
