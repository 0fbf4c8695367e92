"""tools/eval_ttc.py on one real KITTI sequence, its ground-truth TTC and its bad-input lines."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tools import eval_ttc
from trackers.eval import kitti

KITTI = kitti.default_root()
needs_kitti = pytest.mark.skipif(not (KITTI / "label_02").is_dir(),
                                 reason=f"shared KITTI data not found at {KITTI} (../shared/data beside the repo)")
SEQ = "0003"


def test_gt_ttc_central_difference():
    # one object closing at 5 m/s: z = 30 - 0.5 f (frames at 10 fps)
    gt = {f: {"id": np.array([7]), "z": np.array([30.0 - 0.5 * f]), "x": np.zeros(1), "trunc": np.zeros(1),
              "box": np.zeros((1, 4))} for f in range(20)}
    assert eval_ttc.gt_ttc(gt, 10, 7) == pytest.approx((30.0 - 5.0) / 5.0)
    assert np.isnan(eval_ttc.gt_ttc(gt, 2, 7))             # no frame 2 - 4: unknown
    receding = {f: dict(v, z=np.array([10.0 + 0.5 * f])) for f, v in gt.items()}
    assert np.isnan(eval_ttc.gt_ttc(receding, 10, 7))
    far = {f: dict(v, z=np.array([90.0 - 0.5 * f])) for f, v in gt.items()}
    assert np.isnan(eval_ttc.gt_ttc(far, 10, 7))             # TTC 17 s > 8 s


@pytest.mark.parametrize("name,args,message", [
    ("missing_root", ["--kitti-root", "/nonexistent/kitti"], "label_02 or detections_pointrcnn not found"),
    ("unknown_sequence", ["--seqs", "9999"], "sequence(s) 9999 not in"),
    ("bad_set", ["--set", "ttc_max_s=-1"], "ttc_max_s must be > 0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_is_one_line(name, args, message, capsys):
    if name != "missing_root" and not (KITTI / "label_02").is_dir():
        pytest.skip(f"shared KITTI data not found at {KITTI}")
    assert eval_ttc.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@needs_kitti
def test_scores_one_sequence_and_dumps_boxes(tmp_path):
    out, dump = tmp_path / "ttc.json", tmp_path / "boxes.jsonl"
    assert eval_ttc.main(["--kitti-root", str(KITTI), "--seqs", SEQ, "--json", str(out), "--dump", str(dump)]) == 0
    report = json.loads(out.read_text())
    assert report["command"] == f"python -m tools.eval_ttc --kitti-root {KITTI} --seqs {SEQ} --json {out} --dump {dump}"
    p = report["in_path"]
    assert p["matched_boxes"] > 100 and 0.0 <= p["f1"] <= 1.0
    assert set(report["ttc_bins"]) == {"0-2", "2-4", "4-8", "0-4"}
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert rows and set(rows[0]) == {"seq", "frame", "track_id", "x1", "y1", "x2", "y2", "ttc_s", "in_path"}
    assert any(r["ttc_s"] is not None for r in rows) and any(r["in_path"] for r in rows)
