"""Time-to-contact, in-path and the horizon estimate (trackers/ttc.py), as tables of named cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dashtrack_core.records import Detections
from trackers import KalmanTracker, TrackerConfig
from trackers.ttc import HorizonEstimator, in_path

CAR = 2
DT = 0.1
W, H = 1242, 375


def dets(*boxes) -> Detections:
    b = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return Detections(b, np.full(len(b), 0.9), np.full(len(b), CAR))


def approaching(t, z0, vz, cx=621.0, bottom_below=60.0, height_m=1.5, f=700.0, cam=1.65):
    """A car straight ahead at distance z0 + vz * t (vz < 0: closing) seen by a pinhole camera."""
    z = z0 + vz * t
    h = f * height_m / z
    bottom = 170.0 + f * cam / z
    w = 1.2 * h
    return (cx - w / 2, bottom - h, cx + w / 2, bottom)


def growing(t, s0, rate, cx=621.0, bottom=300.0):
    """A box whose height grows at a known relative rate: s0 * exp(rate * t) (TTC = s / (ds/dt) = 1 / rate)."""
    h = s0 * np.exp(rate * t)
    return (cx - 0.6 * h, bottom - h, cx + 0.6 * h, bottom)


def ttc_series(z0, vz, n=25, cfg=None, box=None):
    tracker = KalmanTracker(cfg or TrackerConfig())
    tracker.set_frame_size(W, H)
    out = []
    for f in range(n):
        b = box(f * DT) if box is not None else approaching(f * DT, z0, vz)
        o = tracker.update(dets(b), f * DT)
        out.append(float(o.columns["ttc_s"][0]) if len(o) else float("nan"))
    return out


LAG = {"ttc_lag_s": 0.42}     # the lag measured on these closing cars (see TrackerConfig.ttc_lag_s)
TTC_CASES = [
    # name, z0 (m), vz (m/s), config, frame, expected TTC (s) or None for NaN / "large" for > 30 s
    ("box_growing_at_0_5_per_s_after_0_5s", None, (40.0, 0.5), {}, 5, 2.0),
    ("box_growing_at_0_25_per_s_after_1s", None, (40.0, 0.25), {}, 10, 4.0),
    ("box_growing_at_1_per_s_after_1s", None, (20.0, 1.0), {}, 10, 1.0),
    ("closing_10_mps_from_40m_after_1s", 40.0, -10.0, LAG, 10, (40.0 - 10.0 * 1.0) / 10.0),
    ("closing_5_mps_from_20m_after_1_5s", 20.0, -5.0, LAG, 15, (20.0 - 5.0 * 1.5) / 5.0),
    ("closing_15_mps_from_50m_after_2s", 50.0, -15.0, LAG, 20, (50.0 - 15.0 * 2.0) / 15.0),
    ("receding_is_nan", 20.0, 5.0, {}, 15, None),
    ("shrinking_box_is_nan", None, (80.0, -0.3), {}, 15, None),
    ("static_is_nan_or_large", 20.0, 0.0, {}, 15, "large"),
    ("too_new_is_nan", 40.0, -10.0, {}, 3, None),
]


@pytest.mark.parametrize("name,z0,vz,cfg,frame,expect", TTC_CASES, ids=[c[0] for c in TTC_CASES])
def test_ttc(name, z0, vz, cfg, frame, expect):
    if z0 is None:        # vz holds (initial height px, relative growth rate 1/s)
        got = ttc_series(0, 0, cfg=TrackerConfig(**cfg), box=lambda t: growing(t, *vz))[frame]
    else:
        got = ttc_series(z0, vz, cfg=TrackerConfig(**cfg))[frame]
    if expect is None:
        assert np.isnan(got), name
    elif expect == "large":
        assert np.isnan(got) or got > 30.0, name
    else:   # within 5% of the analytic value (allowing for the smoothing's lag of ~0.3 s)
        assert got == pytest.approx(expect, rel=0.05), f"{name}: {got:.2f} s vs {expect:.2f} s"


def test_ttc_is_causal():
    """The TTC at frame f does not change when later frames differ."""
    a = ttc_series(40.0, -10.0, n=12)
    b = ttc_series(40.0, -10.0, n=25)
    assert np.allclose(a[:12], b[:12], equal_nan=True)


PATH_CASES = [
    # name, box xyxy, horizon row, expected
    ("centred_low_in_frame", (560, 250, 680, 340), 170.0, True),
    ("at_the_left_edge", (0, 250, 120, 340), 170.0, False),
    ("at_the_right_edge", (1120, 250, 1242, 340), 170.0, False),
    ("centred_far_ahead", (610, 165, 630, 180), 170.0, True),
    ("above_the_horizon", (600, 100, 640, 150), 170.0, False),
    ("beside_the_lane_close", (780, 250, 900, 340), 170.0, False),
]


@pytest.mark.parametrize("name,box,horizon,expect", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_in_path(name, box, horizon, expect):
    got = in_path(np.array([box], float), horizon, W / 2, 1.65, 1.75)
    assert bool(got[0]) is expect, name


def synthetic_cars(rng, n, horizon, f=700.0, cam=1.65):
    """Boxes of cars 1.4-1.6 m tall at 5-60 m on a flat road, one camera at height cam."""
    z = rng.uniform(5.0, 60.0, n)
    x = rng.uniform(-8.0, 8.0, n)
    hm = rng.uniform(1.4, 1.6, n)
    bottom = horizon + f * cam / z
    h = f * hm / z
    u = W / 2 + f * x / z
    w = 1.3 * h
    return np.stack([u - w / 2, bottom - h, u + w / 2, bottom], axis=1)


@pytest.mark.parametrize("name,horizon,n", [
    ("kitti_like_horizon", 172.0, 400),
    ("high_horizon", 120.0, 400),
    ("low_horizon", 230.0, 400),
], ids=lambda v: v if isinstance(v, str) else "")
def test_horizon_estimate_within_5_percent_of_height(name, horizon, n):
    rng = np.random.default_rng(0)
    boxes = synthetic_cars(rng, n, horizon)
    boxes = boxes[(boxes[:, 3] < H - 2) & (boxes[:, 1] > 2)]
    est = HorizonEstimator(min_points=30, refit_every=1)
    for i in range(0, len(boxes), 8):      # 8 cars per frame
        est.add(boxes[i:i + 8], H)
    assert abs(est.row - horizon) <= 0.05 * H, f"{name}: {est.row:.1f} vs {horizon}"


def test_horizon_unknown_with_too_few_boxes():
    est = HorizonEstimator(min_points=30, refit_every=1)
    est.add(synthetic_cars(np.random.default_rng(1), 5, 170.0), H)
    assert np.isnan(est.row)


def test_columns_survive_selection_concat_and_jsonl(tmp_path):
    from pipeline.outputs import JsonlWriter
    from dashtrack_core.records import Frame

    tracker = KalmanTracker(TrackerConfig(min_hits=1))
    tracker.set_frame_size(W, H)
    out = tracker.update(dets((560, 250, 680, 340), (0, 250, 120, 340)), 0.0)
    assert out.columns["in_path"].tolist() == [True, False]
    assert np.isnan(out.columns["ttc_s"]).all()                 # too new
    both = Detections.concat([out[[1]], Detections.empty(tracked=True), out[[0]]])
    assert both.columns["in_path"].tolist() == [False, True]
    path = tmp_path / "o.jsonl"
    w = JsonlWriter(str(path), ["a", "b", "car"])
    w.write(Frame(np.zeros((H, W, 3), np.uint8), 0, 0.0, "x"), out)
    w.close()
    boxes = json.loads(path.read_text())["boxes"]
    assert [b["in_path"] for b in boxes] == [True, False] and boxes[0]["ttc_s"] is None
