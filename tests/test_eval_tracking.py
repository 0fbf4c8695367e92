"""The KITTI harness on one short real sequence: loading, dropout, trackeval scoring."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from trackers.eval import kitti

ROOT = Path(__file__).resolve().parents[1]
KITTI = kitti.default_root()          # ../shared/data/kitti_tracking beside the repo
needs_kitti = pytest.mark.skipif(not (KITTI / "label_02").is_dir(),
                                 reason=f"shared KITTI data not found at {KITTI} (../shared/data beside the repo)")
needs_trackeval = pytest.mark.skipif(importlib.util.find_spec("trackeval") is None,
                                     reason="trackeval (bench extra) not installed")
SEQ = "0003"   # a short sequence (144 frames) with several cars


@needs_kitti
def test_load_sequence_threshold_and_sigmoid():
    seq = kitti.load_sequence(KITTI, SEQ, ["Car"], 2.0)
    assert seq.n_frames == len(seq.dets) > 100
    scores = np.concatenate(seq.raw_score)
    assert scores.min() >= 2.0
    sig = np.concatenate([d.score for d in seq.dets])
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-scores)), rtol=1e-5)
    assert set(np.concatenate([d.class_id for d in seq.dets]).tolist()) == {2}


@needs_kitti
@pytest.mark.parametrize("k", [2, 10])
def test_dropout_is_seeded_and_removes_runs(k):
    seq = kitti.load_sequence(KITTI, SEQ, ["Car"], 2.0)
    labels = kitti.load_labels(KITTI, SEQ)
    a, na = kitti.apply_dropout(seq, labels, ["Car"], k, 0.3, seed=0)
    b, nb = kitti.apply_dropout(seq, labels, ["Car"], k, 0.3, seed=0)
    c, nc = kitti.apply_dropout(seq, labels, ["Car"], k, 0.3, seed=1)
    assert na == nb > 0
    assert [len(d) for d in a.dets] == [len(d) for d in b.dets]
    assert na <= sum(len(d) for d in seq.dets)
    assert (na, [len(d) for d in a.dets]) != (nc, [len(d) for d in c.dets])


@needs_kitti
@needs_trackeval
def test_eval_tool_scores_ours_on_one_sequence(tmp_path):
    from tools import eval_tracking

    out = tmp_path / "r.json"
    rc = eval_tracking.main(["--kitti-root", str(KITTI), "--seqs", SEQ, "--trackers", "ours,ours-with-coasted,nope",
                             "--dropout-frames", "5", "--json", str(out), "--explain-idsw"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith(f"python -m tools.eval_tracking --kitti-root {KITTI} --seqs {SEQ} ")
    assert "nope" in report["missing_trackers"]
    car = report["trackers"]["ours"]["clean"]["car"]
    for key in ("HOTA", "MOTA", "IDF1", "IDSW", "Frag"):
        assert key in car
    assert 40.0 < car["HOTA"] <= 100.0 and car["IDF1"] > 50.0
    assert report["trackers"]["ours-with-coasted"]["dropout"]["K=5"]["car"]["HOTA"] > 30.0
    # coasted boxes only add boxes: never fewer true positives
    assert report["trackers"]["ours-with-coasted"]["clean"]["car"]["TP"] >= car["TP"]
    assert report["dropout"]["detections_removed"]["5"] > 0
    causes = report["trackers"]["ours"]["idsw_causes"]
    assert sum(causes["clean"].values()) == car["IDSW"]       # every switch gets a cause


def _log(born, removed=None, matched=None):
    from trackers.eval import idsw
    return idsw.TrackLog(born=born, removed=removed or {}, matched=matched or {})


IDSW_CAUSES = [
    # name, (old, new, last frame with old, switch frame), log, expected cause
    ("old_removed", (1, 2, 10, 30), _log({1: 0, 2: 29}, removed={1: 25}), "old_removed"),
    ("duplicate_while_coasting", (1, 2, 10, 30), _log({1: 0, 2: 29}, matched={1: {10}}), "duplicate"),
    ("old_moved_on", (1, 2, 10, 30), _log({1: 0, 2: 29}, matched={1: {10, 29}}), "old_moved_on"),
    ("steal", (1, 2, 10, 11), _log({1: 0, 2: 5}, matched={1: {10}}), "steal_swap"),
    ("swap", (1, 2, 10, 11), _log({1: 0, 2: 5}, matched={1: {10, 11}}), "steal_swap+old_busy"),
]


@pytest.mark.parametrize("name,ev,log,expected", IDSW_CAUSES, ids=[c[0] for c in IDSW_CAUSES])
def test_idsw_cause(name, ev, log, expected):
    from trackers.eval import idsw
    old, new, last, frame = ev
    assert idsw.classify(idsw.Switch("0000", frame, 0, old, new, last), log) == expected
