"""Tracking-health counters (trackers/health.py) on a scripted sequence, alone and through the Runner."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import DEFAULT_CONFIG, load_config
from dashtrack_core.records import Detections
from pipeline.stats import format_table
from pipeline.trails import Trails
from trackers import KalmanTracker, TrackerConfig
from trackers.health import TrackHealth

CAR = 2
FPS = 10.0
N_FRAMES = 80
A = (100.0, 150.0, 160.0, 190.0)      # detected frames 0-49, then gone
B = (400.0, 150.0, 470.0, 200.0)      # detected 0-59 except a 10-frame dropout 30-39
C = (250.0, 60.0, 280.0, 80.0)        # a flicker: detected frames 10-12 only


def scripted(f: int) -> Detections:
    boxes = []
    if f < 50:
        boxes.append(A)
    if f < 60 and not 30 <= f < 40:
        boxes.append(B)
    if 10 <= f <= 12:
        boxes.append(C)
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.full(len(b), 0.9), np.full(len(b), CAR))


@pytest.fixture(scope="module")
def health_report():
    tracker, health = KalmanTracker(TrackerConfig()), TrackHealth(end_after_s=1.5)
    for f in range(N_FRAMES):
        health.update(tracker.update(scripted(f), f / FPS), f / FPS)
    return health.report(tracker.stats)


# min_hits 2: each track is first emitted one frame after its first detection
HEALTH_CASES = [
    ("born_three_tracks_dropout_keeps_its_id", "tracks_born", 3),
    ("all_three_ended", "tracks_ended", 3),
    ("born_per_minute_over_7_9_s", "born_per_min", round(3 / (7.9 / 60), 2)),
    ("mean_lifetime", "lifetime_mean_s", round((4.8 + 5.8 + 0.1) / 3, 3)),
    ("median_lifetime", "lifetime_median_s", 4.8),
    ("one_short_track_is_churn", "short_tracks", 1),
    ("churn_per_minute", "id_churn_per_min", round(1 / (7.9 / 60), 2)),
    ("one_recovery_after_the_dropout", "recoveries", 1),
    ("no_relinks", "relinks", 0),
]


@pytest.mark.parametrize("name,key,expect", HEALTH_CASES, ids=[c[0] for c in HEALTH_CASES])
def test_health_counters(health_report, name, key, expect):
    assert health_report[key] == pytest.approx(expect, abs=1e-6), name


def test_coasted_share_counts_the_coasted_boxes(health_report):
    # detected boxes: A 49 (frames 1-49), B 49 (1-29, 40-59), C 2 (11-12); coasted: the first
    # two unseen frames of B's dropout and of A's and B's ends (then the filter's position
    # std passes 0.2 box sizes), C none (its 0.2 s history allows 0.06 s)
    assert health_report["coasted_share"] == pytest.approx(6 / (100 + 6), abs=1e-4)


def test_trails_keep_one_second():
    trails = Trails(1.0)
    for f in range(30):
        x = 100.0 + 5 * f
        trails.update(Detections([[x, 50, x + 20, 70]], [0.9], [CAR], [7], [False]), f / FPS)
    pts = trails.points(7)
    assert len(pts) == 11 and pts[-1].tolist() == [100.0 + 5 * 29 + 10, 70.0]
    trails.update(Detections.empty(tracked=True), 5.0)          # unseen for longer than a second
    assert len(trails.points(7)) == 0


class ScriptedDetector:
    """Detections from ``scripted`` by frame count (the preprocess stage runs frames in order)."""

    class_names = ("person", "bicycle", "car")
    workers = 1

    def __init__(self) -> None:
        self.frame = -1

    def preprocess(self, images):
        self.frame += 1
        return self.frame

    def infer(self, batch):
        return batch

    def postprocess(self, raw, batch):
        return [scripted(raw)]


def test_runner_reports_health_and_writes_columns(tmp_path):
    from pipeline.runner import Runner

    cfg = load_config(DEFAULT_CONFIG, {"output.show": "no", "output.progress": False, "pipeline.drop_policy": "block",
                                       "output.save_json": str(tmp_path / "o.jsonl"),
                                       "output.save_video": str(tmp_path / "o.mp4"),
                                       "output.stats_json": str(tmp_path / "stats.json")})
    source = f"lavfi:testsrc2=size=640x360:rate={FPS:g}:duration={N_FRAMES / FPS:g}"
    report = Runner(cfg, source, detector=ScriptedDetector()).run()
    assert report["frames_out"] == N_FRAMES
    saved = json.loads((tmp_path / "stats.json").read_text())["tracking"]
    assert saved["tracks_born"] == 3 and saved["short_tracks"] == 1 and saved["recoveries"] == 1
    assert "tracks: born 3" in format_table(report)
    boxes = [b for line in (tmp_path / "o.jsonl").read_text().splitlines() for b in json.loads(line)["boxes"]]
    assert boxes and all("ttc_s" in b and "in_path" in b for b in boxes)
