import pytest

from pipeline.config import AppConfig, DEFAULT_CONFIG, load_config
from dashtrack_core.configtools import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_default_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert isinstance(cfg, AppConfig)
    assert cfg.detector.format == "decoded" and cfg.detector.input_size is None and cfg.detector.imgsz == 640
    assert cfg.detector.model.endswith("models/weights/dashcam.onnx")   # shipped in the repo: no ../shared needed
    assert "traffic light" in cfg.detector.classes


@pytest.mark.parametrize(
    "case, text, expected",
    [
        ("unknown section", "detectr: {}\n", "unknown key 'detectr' (did you mean 'detector'?)"),
        ("unknown key", "pipeline: {queue_sise: 3}\n", "config.pipeline: unknown key 'queue_sise'"),
        ("wrong type", "pipeline: {queue_size: lots}\n", "config.pipeline.queue_size: 'lots' is not int"),
        ("bool is not int", "pipeline: {queue_size: true}\n", "queue_size: True is not int"),
        ("bad literal", "pipeline: {drop_policy: newest}\n", "'newest' is not allowed; use one of 'auto', 'block', 'drop_oldest'"),
        ("out of range", "detector: {score_threshold: 1.5}\n", "score_threshold: 1.5 must be in [0, 1]"),
        ("negative", "pipeline: {queue_size: 0}\n", "queue_size: 0 must be > 0"),
        ("trail seconds zero", "output: {trail_seconds: 0}\n", "output.trail_seconds: 0.0 must be > 0"),
        ("ttc warning negative", "output: {ttc_warn_s: -1}\n", "output.ttc_warn_s: -1.0 must be > 0"),
        ("wrong tuple length", "detector: {input_size: [416]}\n", "input_size: [416] has 1 items"),
        ("malformed yaml", "detector: {model: [unclosed\n", "malformed YAML at line"),
        ("not a mapping", "- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_is_named(tmp_path, case, text, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert expected in str(e.value)
    assert "\n" not in str(e.value)   # one line for the user


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_win_and_paths_resolve_relative_to_yaml(tmp_path):
    p = write(tmp_path, "detector: {model: models/x.onnx, score_threshold: 0.2}\n")
    cfg = load_config(p, {"detector.score_threshold": 0.6, "output.save_json": None})
    assert cfg.detector.score_threshold == 0.6
    assert cfg.detector.model == str(tmp_path / "models" / "x.onnx")
    assert cfg.output.save_json is None
