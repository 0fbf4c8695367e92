"""TrackerConfig from YAML: defaults file, unknown keys and cross-field checks."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dashtrack_core.configtools import ConfigError, from_mapping
from trackers import KalmanTracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[1]


YAML_SECTIONS = [
    pytest.param(ROOT / "configs" / "tracker.yaml", None, id="tracker_yaml"),
    pytest.param(ROOT / "configs" / "default.yaml", "tracker", id="default_yaml_tracker_section"),
]


@pytest.mark.parametrize("path, section", YAML_SECTIONS)
def test_yaml_overrides_never_repeat_dataclass_defaults(path, section):
    """Tracker defaults live only in TrackerConfig: a YAML key is an override, never a copy of the default."""
    data = yaml.safe_load(path.read_text()) or {}
    data = data.get(section) or {} if section else data
    cfg = from_mapping(TrackerConfig, data, "tracker")
    repeats = [k for k, v in data.items() if getattr(TrackerConfig(), k) == getattr(cfg, k)]
    assert repeats == []
    KalmanTracker(cfg)


BAD = [
    ("unknown_key", {"max_coast": 1.0}, "unknown key 'max_coast'"),
    ("wrong_type", {"min_hits": "three"}, "tracker.min_hits"),
    ("bad_literal", {"similarity": "cosine"}, "tracker.similarity"),
    ("low_above_high", {"low_score": 0.8, "high_score": 0.5}, "low_score"),
    ("emit_longer_than_alive", {"max_coast_seconds": 1.0, "emit_coast_seconds": 2.0}, "emit_coast_seconds"),
    ("zero_noise", {"meas_noise": 0.0}, "meas_noise"),
    ("size_ratio_below_1", {"recovery_max_size_ratio": 0.9}, "recovery_max_size_ratio"),
    ("dedup_iou_above_1", {"dedup_iou": 1.5}, "dedup_iou"),
    ("relink_cos_above_1", {"relink_motion_min_cos": 1.5}, "relink_motion_min_cos"),
    ("coast_inside_above_1", {"coast_min_inside": 1.5}, "coast_min_inside must be in"),
    ("coast_pos_std_zero", {"coast_max_pos_std": 0.0}, "coast_max_pos_std must be > 0"),
    ("coast_ratio_negative", {"coast_unseen_ratio": -1.0}, "coast_unseen_ratio"),
    ("ttc_max_zero", {"ttc_max_s": 0.0}, "ttc_max_s must be > 0"),
    ("camera_height_zero", {"camera_height_m": 0.0}, "camera_height_m"),
    ("horizon_frac_above_1", {"horizon_frac": 1.2}, "horizon_frac"),
    ("horizon_frac_wrong_type", {"horizon_frac": "top"}, "tracker.horizon_frac"),
]


@pytest.mark.parametrize("name,data,match", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(name, data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(TrackerConfig, data, "tracker")
