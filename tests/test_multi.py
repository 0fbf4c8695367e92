"""Several sources sharing one detector: outputs per source, batches across streams, errors."""
import json

import numpy as np
import pytest

from conftest import VIDEOS, YOLOX_ONNX, need
from pipeline.batching import SharedDetector, concat_batches
from pipeline.config import DEFAULT_CONFIG, load_config
from pipeline.multi import MultiRunner, per_source_path
from pipeline.sources import SourceError
from pipeline.stages import StageError

pytestmark = pytest.mark.timeout(180)


def cfg(tmp_path, **over):
    need(YOLOX_ONNX)
    base = {"output.show": "no", "output.progress": False, "output.save_json": str(tmp_path / "out.jsonl"),
            "output.stats_json": str(tmp_path / "stats.json")}
    base.update(over)
    return load_config(DEFAULT_CONFIG, base)


def test_per_source_paths():
    assert per_source_path("runs/out.mp4", 2, 3) == "runs/out_2.mp4"
    assert per_source_path("out.mp4", 0, 1) == "out.mp4" and per_source_path(None, 1, 2) is None


def test_two_streams_share_one_detector_with_batches(tmp_path, example_video):
    other = need(VIDEOS / "project_video_cut.mp4")
    runner = MultiRunner(cfg(tmp_path), [str(example_video), str(other)])
    reports = runner.run()
    assert [r["frames_out"] for r in reports] == [38, 76]
    for i, n in enumerate((38, 76)):
        rows = [json.loads(line) for line in (tmp_path / f"out_{i}.jsonl").read_text().splitlines()]
        assert [r["index"] for r in rows] == list(range(n))
        assert sum(any(b["class"] == "car" for b in r["boxes"]) for r in rows) > 0.5 * n   # cars leave the view at times
        assert json.loads((tmp_path / f"stats_{i}.json").read_text())["frames_out"] == n
    sizes = np.array(runner.shared.batch_sizes)
    assert sizes.sum() == 38 + 76 and sizes.max() == 2      # frames of both streams shared calls
    assert runner.runners[0].tracker is not runner.runners[1].tracker


def test_shared_detector_matches_the_detector_alone(yolox, example_video):
    from pipeline.sources import open_source

    images = [f.image for f in open_source(str(example_video))][:3]
    shared = SharedDetector(yolox, max_batch=3)
    try:
        batched = shared.postprocess(shared.infer(concat_batches([yolox.preprocess([im]) for im in images])), None)
    finally:
        shared.close()
    for im, got in zip(images, batched):
        want = yolox.detect([im])[0]
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)


def test_a_missing_source_fails_before_anything_runs(tmp_path, example_video):
    with pytest.raises(SourceError, match="nope.mp4"):
        MultiRunner(cfg(tmp_path), [str(example_video), "nope.mp4"])


def test_error_in_shared_inference_stops_every_stream(tmp_path, example_video):
    runner = MultiRunner(cfg(tmp_path), [str(example_video), str(example_video)])
    inner = runner.shared.detector
    calls = []

    def failing_infer(batch):
        calls.append(len(batch))
        if len(calls) == 5:
            raise RuntimeError("device lost")
        return type(inner).infer(inner, batch)

    inner.infer = failing_infer
    with pytest.raises(StageError, match="inference stage failed: device lost"):
        runner.run()
    assert all(not r.chain.alive for r in runner.runners)
    assert all(r.report["frames_out"] < 38 for r in runner.runners)
