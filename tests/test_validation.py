"""Hostile configuration values (issue 19): each is refused at load with one line naming the key and
the fix, before anything runs; through ``run_stream.py`` that is exit 2 and no traceback."""
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO
from pipeline.config import DEFAULT_CONFIG, MAX_QUEUE, NULL, load_config, max_threads
from dashtrack_core.configtools import ConfigError, _convert

CORES = os.cpu_count() or 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_every_float_refuses_nan_and_infinity(value):
    """One check for all configs, at the conversion of any float."""
    with pytest.raises(ConfigError, match="use a finite number"):
        _convert(value, float, "x.y")
    with pytest.raises(ConfigError, match=r"x.y\[1\]: .* use a finite number"):
        _convert([0, value, 0], tuple[float, float, float], "x.y")


@pytest.mark.parametrize("text, number", [("1e30", 1e30), ("1E-3", 1e-3), ("+5", 5.0), (".5", 0.5)],
                         ids=["1e30", "1E-3", "+5", ".5"])
def test_numbers_yaml_leaves_as_strings_are_read_as_floats(text, number):
    assert _convert(text, float, "x.y") == number


# (override, message fragment): every row failed (accepted, hung or ran wild) before issue 19.
REFUSED = [
    ("nan_open_timeout", {"source.open_timeout_s": math.nan}, "source.open_timeout_s: nan is not allowed"),
    ("inf_open_timeout", {"source.open_timeout_s": math.inf}, "source.open_timeout_s: inf is not allowed"),
    ("nan_reconnect_timeout", {"source.reconnect_timeout_s": math.nan}, "reconnect_timeout_s: nan is not allowed"),
    ("huge_read_timeout", {"source.read_timeout_s": 1e9}, "read_timeout_s: 1000000000.0 is too large"),
    ("nan_fps", {"source.fps": math.nan}, "source.fps: nan is not allowed"),
    ("nan_mean", {"detector.mean": [math.nan, 0, 0]}, "detector.mean[0]: nan is not allowed"),
    ("inf_std", {"detector.std": [1, math.inf, 1]}, "detector.std[1]: inf is not allowed"),
    ("nan_tracker", {"tracker.max_coast_seconds": math.nan}, "tracker.max_coast_seconds: nan is not allowed"),
    ("threads_100000", {"detector.threads": 100000}, f"detector.threads: 100000 is too large; use at most {max_threads()}"),
    ("workers_100000", {"detector.workers": 100000}, "detector.workers: 100000 is too large"),
    ("workers_x_threads", {"detector.workers": 8, "detector.threads": 8}, "detector.workers x detector.threads: 64"),
    ("decode_threads", {"source.decode_threads": 100000}, "source.decode_threads: 100000 is too large"),
    ("video_threads_negative", {"output.video_threads": -3}, "output.video_threads: -3 must be >= 0"),
    ("video_threads_huge", {"output.video_threads": 100000}, "output.video_threads: 100000 is too large"),
    ("video_crf_999", {"output.video_crf": 999}, "output.video_crf: 999 must be in 0..51"),
    ("queue_10e12", {"pipeline.queue_size": 10 ** 12}, f"queue_size: 1000000000000 is too large; use at most {MAX_QUEUE}"),
    ("live_queue_huge", {"pipeline.live_queue_size": 10 ** 6}, "live_queue_size: 1000000 is too large"),
    ("null_queue", {"pipeline.queue_size": NULL}, "pipeline.queue_size: null is not allowed; use int"),
    ("null_threshold", {"detector.score_threshold": NULL}, "score_threshold: null is not allowed; use float"),
    ("video_xyz", {"output.save_video": "o.xyz"}, "--save-video o.xyz: unknown container .xyz; use one of .mp4"),
    ("video_no_suffix", {"output.save_video": "out"}, "unknown container (no extension)"),
    ("json_and_mot_same", {"output.save_json": "s.out", "output.save_mot": "s.out"},
     "--save-json and --save-mot both write s.out"),
    ("video_and_stats_same", {"output.save_video": "a.mp4", "output.stats_json": "./a.mp4"},
     "--save-video and --stats-json both write ./a.mp4"),
]


@pytest.mark.parametrize("over, message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_hostile_values_are_refused_in_one_line(over, message):
    with pytest.raises(ConfigError) as e:
        load_config(DEFAULT_CONFIG, over)
    assert message in str(e.value) and "\n" not in str(e.value)


ACCEPTED = [   # (override, check(cfg, the default config))
    ("null_input_size", {"detector.input_size": NULL}, lambda c, d: c.detector.input_size is None),
    ("null_tune", {"output.video_tune": NULL}, lambda c, d: c.output.video_tune is None),
    ("none_is_not_given", {"output.video_tune": None}, lambda c, d: c.output.video_tune == d.output.video_tune),
    ("1e1_as_string", {"tracker.max_coast_seconds": "1e1"}, lambda c, d: c.tracker.max_coast_seconds == 10.0),
    ("threads_at_limit", {"detector.workers": 1, "detector.threads": max_threads()},
     lambda c, d: c.detector.threads == max_threads()),
    ("queue_at_limit", {"pipeline.queue_size": MAX_QUEUE}, lambda c, d: c.pipeline.queue_size == MAX_QUEUE),
    ("mkv_output", {"output.save_video": "o.mkv"}, lambda c, d: c.output.save_video == "o.mkv"),
    ("yaml_no_is_a_word", {"source.reconnect": False}, lambda c, d: c.source.reconnect == "no"),   # `reconnect: no`
    ("yaml_yes_is_a_word", {"output.show": True}, lambda c, d: c.output.show == "yes"),
]


@pytest.mark.parametrize("over, check", [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_sane_values_still_load(over, check):
    assert check(load_config(DEFAULT_CONFIG, over), load_config(DEFAULT_CONFIG))


def _cli(*args, cwd=REPO, timeout=60):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, str(REPO / "run_stream.py"), "--no-show", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


CLI = [
    ("threads", ["--set", "detector.threads=100000"], "detector.threads: 100000 is too large"),
    ("queue", ["--set", "pipeline.queue_size=1000000000000"], "pipeline.queue_size: 1000000000000 is too large"),
    ("nan_timeout", ["--set", "source.open_timeout_s=.nan"], "source.open_timeout_s: nan is not allowed"),
    ("inf_reconnect", ["--set", "source.reconnect_timeout_s=.inf"], "reconnect_timeout_s: inf is not allowed"),
    ("nan_fps_flag", ["--fps", "nan"], "source.fps: nan is not allowed"),
    ("nan_mean", ["--set", "detector.mean=[.nan,0,0]"], "detector.mean[0]: nan is not allowed"),
    ("null_queue", ["--set", "pipeline.queue_size=null"], "pipeline.queue_size: null is not allowed"),
    ("crf", ["--set", "output.video_crf=999"], "output.video_crf: 999 must be in 0..51"),
    ("video_xyz", ["--save-video", "o.xyz"], "unknown container .xyz"),
    ("same_path", ["--save-json", "s.out", "--save-mot", "s.out"], "--save-json and --save-mot both write s.out"),
]


@pytest.mark.parametrize("args, message", [r[1:] for r in CLI], ids=[r[0] for r in CLI])
def test_cli_refuses_hostile_values_with_exit_2(tmp_path, args, message):
    proc = _cli("--source", str(REPO / "examples" / "test_video.mp4"), "--model", "lite", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []                  # nothing was written


def test_cli_null_sets_an_optional_field(tmp_path):
    """``--set detector.input_size=null`` used to be dropped silently; now it sets the field."""
    import run_stream

    cfg = run_stream.build_config(run_stream.parse_args(
        ["--source", "x.mp4", "--model", "lite", "--set", "detector.input_size=[320,320]"]))
    assert cfg.detector.input_size == (320, 320)
    cfg = run_stream.build_config(run_stream.parse_args(
        ["--source", "x.mp4", "--model", "lite", "--set", "detector.input_size=[320,320]",
         "--set", "detector.input_size=null"]))
    assert cfg.detector.input_size is None


def test_config_file_that_is_not_utf8_is_one_line(tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_bytes(b"\xff\xfe")
    proc = _cli("--source", "x.mp4", "--config", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"config file {bad}: not UTF-8 text" in lines[0], proc.stderr


@pytest.mark.parametrize("over", [
    {"source.fps": math.nan},                                # --fps nan: not the YAML file's value
    {"detector.threads": 100000},
    {"output.save_json": "s", "output.save_mot": "s"},
    {"detector.score_threshold": 2.0},
], ids=["fps_flag", "threads_set", "same_path_flags", "threshold_flag"])
def test_a_bad_command_line_value_does_not_blame_the_config_file(over):
    with pytest.raises(ConfigError) as e:
        load_config(DEFAULT_CONFIG, over)
    assert str(DEFAULT_CONFIG) not in str(e.value) and "\n" not in str(e.value)


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("source:\n  open_timeout_s: .nan\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: config.source.open_timeout_s: nan is not allowed"):
        load_config(bad, {"source.fps": 5.0})
