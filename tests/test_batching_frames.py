"""``detector.batch``: consecutive frames of a file through the network together, same outputs."""
import json

import pytest

from conftest import TEACHERS, need
from pipeline.config import DEFAULT_CONFIG, load_config, model_overrides
from dashtrack_core.configtools import ConfigError
from dashtrack_core.records import PacketGroup
from pipeline.runner import Runner

pytestmark = pytest.mark.timeout(300)
PTH = TEACHERS / "yolox_nano" / "yolox_nano.pth"


def run(tmp_path, small2, batch: int, frames: int, **over) -> tuple[list[dict], Runner]:
    need(PTH)
    out = tmp_path / f"b{batch}"
    out.mkdir()
    cfg = load_config(DEFAULT_CONFIG, {**model_overrides(f"yolox_nano:{PTH}"), "detector.device": "cpu",
                                       "detector.batch": batch, "source.max_frames": frames,
                                       "output.show": "no", "output.progress": False,
                                       "output.save_json": str(out / "out.jsonl"), **over})
    runner = Runner(cfg, str(small2))
    report = runner.run()
    assert report["frames_out"] == frames
    return [json.loads(line) for line in (out / "out.jsonl").read_text().splitlines()], runner


@pytest.mark.parametrize("batch, frames", [(4, 10), (3, 9), (16, 5)],
                         ids=["partial last group", "whole groups", "batch larger than the clip"])
def test_batched_frames_give_the_tracks_of_frame_by_frame(tmp_path, small2, batch, frames):
    one, r1 = run(tmp_path, small2, 1, frames)
    many, rn = run(tmp_path, small2, batch, frames)
    assert [s.name for s in r1.stages][:3] == ["preprocess", "inference", "decode"]
    assert [s.name for s in rn.stages][:4] == ["batch", "preprocess", "inference", "decode"]
    assert [r["index"] for r in many] == list(range(frames))
    assert sum(len(r["boxes"]) for r in one) > 0
    for a, b in zip(one, many):
        assert [x["track_id"] for x in a["boxes"]] == [x["track_id"] for x in b["boxes"]]
        assert [x["class"] for x in a["boxes"]] == [x["class"] for x in b["boxes"]]
        for x, y in zip(a["boxes"], b["boxes"]):
            assert x["xyxy"] == pytest.approx(y["xyxy"], abs=0.05) and x["score"] == pytest.approx(y["score"], abs=1e-3)
    assert rn.report["stages"]["inference"]["frames"] == frames     # times per frame, not per group


def test_batch_is_validated():
    with pytest.raises(ConfigError, match="detector.batch: 0 must be >= 1"):
        load_config(DEFAULT_CONFIG, {"detector.batch": 0})


def test_packet_group_counts_frames():
    assert PacketGroup(tuple(range(3))).frames == 3


@pytest.mark.parametrize("policy, stages", [
    ("block", ["batch", "preprocess", "inference", "decode"]),
    ("drop_oldest", ["preprocess", "inference", "decode"]),        # live: no waiting for later frames
], ids=["file batches", "live stays frame by frame"])
def test_live_drop_policy_keeps_frame_by_frame(small2, policy, stages):
    need(PTH)
    cfg = load_config(DEFAULT_CONFIG, {**model_overrides(f"yolox_nano:{PTH}"), "detector.device": "cpu",
                                       "detector.batch": 8, "pipeline.drop_policy": policy,
                                       "output.show": "no", "output.progress": False})
    runner = Runner(cfg, str(small2))
    try:
        assert [s.name for s in runner.stages][:len(stages)] == stages
        assert runner.batch_size == (8 if policy == "block" else 1)
    finally:
        runner.source.close()
