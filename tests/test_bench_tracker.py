"""bench/bench_tracker.py: the speed table and the camera-motion row run end to end."""
from __future__ import annotations

import json

import pytest

from bench import bench_tracker
from conftest import REPO

EXAMPLE = REPO / "examples" / "test_video.mp4"


def test_table_and_cmc_rows(tmp_path, capsys):
    out = tmp_path / "speed.json"
    rc = bench_tracker.main(["--trackers", "ours", "--tracks", "5,20", "--frames", "40",
                             "--cmc-clip", str(EXAMPLE), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| ours |" in text and "| 320 px |" in text
    data = json.loads(out.read_text())
    assert set(data["results"]["ours"]) == {"5", "20"}
    cmc = data["cmc"]["320"]
    assert cmc["frames"] >= 10 and cmc["median_ms"] > 0 and cmc["fallbacks"] >= 0


def test_missing_cmc_clip_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench_tracker.main(["--trackers", "ours", "--cmc-clip", "no/such.mp4"])
    assert e.value.code == 2
    assert "no/such.mp4 not found" in capsys.readouterr().err


def test_clip_timestamps_come_from_the_stream():
    frames, times = bench_tracker.clip_frames(EXAMPLE, 5)
    assert len(frames) == len(times) == 5
    assert all(b > a for a, b in zip(times, times[1:]))


def test_unreadable_cmc_clip_names_the_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SystemExit, match="broken.mp4: fewer than 2 frames"):
        bench_tracker.clip_frames(bad, 10)
