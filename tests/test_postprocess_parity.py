"""The numpy post-processing (ONNX backend) and the torch one (models/) give the same boxes on the same raw outputs:
same order (threshold, top-k, decode, clip, class-aware NMS, cap) and the same comparison (score >= threshold)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.detector import image_area
from models.postprocess import PostprocessConfig, decoded_to_raw, postprocess_packed
from dashtrack_core.detector import Letterbox
from pipeline.np_postprocess import select


def raw_outputs(seed: int, n: int, classes: int, in_hw: tuple[int, int], spill: float) -> np.ndarray:
    """(1, N, 4 + C) decoded rows: xyxy in input pixels (``spill``: how far boxes may reach past the input),
    then class scores, all distinct (no ties at the top-k or NMS order)."""
    rng = np.random.default_rng(seed)
    h, w = in_hw
    cx, cy = rng.uniform(-spill * w, (1 + spill) * w, n), rng.uniform(-spill * h, (1 + spill) * h, n)
    bw, bh = rng.uniform(4, w / 3, n), rng.uniform(4, h / 3, n)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    scores = rng.permutation(n * classes).reshape(n, classes) / (n * classes)   # distinct in [0, 1)
    return np.concatenate([boxes, scores], 1)[None].astype(np.float32)


def run_numpy(raw, lb, cfg, keep):
    mask = None if keep is None else np.isin(np.arange(raw.shape[2] - 4), keep)
    return select(raw[0, :, 4:], lambda idx: raw[0, idx, :4], lb, mask, cfg.score_threshold, cfg.pre_nms_topk,
                  cfg.nms_iou, cfg.max_detections)


def run_torch(raw, lb, cfg, keep, in_hw):
    t = torch.from_numpy(raw)
    if keep is not None:     # the torch detector selects the kept classes' columns
        t = torch.cat([t[..., :4], t[..., 4:][..., keep]], dim=-1)
    params, scores, priors, decode = decoded_to_raw(t, in_hw)
    clip = torch.tensor([image_area(lb)], dtype=torch.float32)
    xyxy, score, cls, _ = postprocess_packed(params, scores, priors, decode, in_hw, cfg, "torch", clip)
    cls = cls.numpy() if keep is None else np.asarray(keep)[cls.numpy()]
    return lb.to_image(xyxy.numpy()), score.numpy(), cls


# (frame w, h, input h, w, letterbox, config, kept classes, box spill past the input)
CASES = [
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(), None, 0.0, id="default_topleft"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(), None, 0.3, id="boxes_into_padding_and_out"),
    pytest.param(1280, 720, 416, 416, "center", PostprocessConfig(score_threshold=0.2), None, 0.2, id="center"),
    pytest.param(1242, 375, 256, 832, "stretch", PostprocessConfig(), None, 0.1, id="stretch"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(pre_nms_topk=20), None, 0.0, id="top_k_binds"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(max_detections=5), None, 0.0, id="cap_binds"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(nms_iou=0.2), None, 0.0, id="tight_nms"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(score_threshold=0.05), [0, 2, 5], 0.1,
                 id="class_filter"),
    pytest.param(1280, 720, 384, 672, "topleft", PostprocessConfig(score_threshold=1.0), None, 0.0, id="none_pass"),
]


@pytest.mark.parametrize("width, height, in_h, in_w, mode, cfg, keep, spill", CASES)
def test_numpy_and_torch_give_the_same_boxes(width, height, in_h, in_w, mode, cfg, keep, spill):
    raw = raw_outputs(seed=in_w + len(str(cfg)), n=300, classes=7, in_hw=(in_h, in_w), spill=spill)
    lb = Letterbox.fit(width, height, in_h, in_w, mode)
    ours = run_numpy(raw, lb, cfg, keep)
    xyxy, score, cls = run_torch(raw, lb, cfg, keep, (in_h, in_w))
    assert len(ours) == len(xyxy) and (len(ours) > 0) == (cfg.score_threshold < 1.0)
    np.testing.assert_array_equal(ours.class_id, cls)
    np.testing.assert_allclose(ours.score, score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.xyxy, xyxy, rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_score_equal_to_threshold_is_kept(backend):
    """The one comparison of both paths: a score exactly at the threshold passes (>=)."""
    raw = np.array([[[10, 10, 50, 50, 0.5, 0.1], [200, 200, 260, 240, 0.1, 0.4999]]], np.float32)
    lb = Letterbox.fit(640, 384, 384, 640, "topleft")
    cfg = PostprocessConfig(score_threshold=0.5)
    n = len(run_numpy(raw, lb, cfg, None)) if backend == "numpy" else len(run_torch(raw, lb, cfg, None, (384, 640))[0])
    assert n == 1
