"""models/yolox_loss.py (SimOTA-lite assignment, loss) and models/transfer.py (COCO -> dashcam class rows)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SHARED
from models.checkpoint import CheckpointError
from models.classes import CLASS_SETS
from models.transfer import class_rows, load_class_mapped
from models.yolox import YOLOX
from models.yolox_loss import YoloxLossConfig, assign, candidates, encode, pair_iou, yolox_loss

PTH = SHARED / "teachers" / "yolox_nano" / "yolox_nano.pth"
needs_pth = pytest.mark.skipif(not PTH.is_file(), reason=f"shared data {PTH} is absent")


def priors_for(h: int, w: int, strides=(8, 16, 32)) -> torch.Tensor:
    """(N, 5) gx gy s s s for an h x w input, as ``YOLOXHead`` lays them out (row-major per stride)."""
    rows = []
    for s in strides:
        gy, gx = torch.meshgrid(torch.arange(h // s), torch.arange(w // s), indexing="ij")
        gx, gy = gx.flatten().float(), gy.flatten().float()
        sv = torch.full_like(gx, float(s))
        rows.append(torch.stack((gx, gy, sv, sv, sv), 1))
    return torch.cat(rows)


def predictions(priors: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor, n_cls: int = 3):
    """Predicted boxes: each point predicts a stride-sized box at its centre, except that points whose centre is
    inside a label predict that label exactly (a perfect detector there); logits: confident on the label's class."""
    s = priors[:, 2]
    cx, cy = (priors[:, 0] + 0.5) * s, (priors[:, 1] + 0.5) * s
    pred = torch.stack((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), 1)
    cls = torch.full((len(priors), n_cls), -4.0)
    for b, c in zip(boxes, classes):
        inside = (cx > b[0]) & (cx < b[2]) & (cy > b[1]) & (cy < b[3])
        pred[inside] = b
        cls[inside, int(c)] = 4.0
    return pred, torch.zeros(len(priors)), cls


P = priors_for(128, 128)  # 256 + 64 + 16 points


@pytest.mark.parametrize("boxes, classes, expect", [
    ([], [], "none"),
    ([[60, 60, 66, 66]], [0], "small_object_gets_a_positive"),            # 6 px: no stride-16/32 point inside
    ([[10, 10, 118, 118]], [1], "large_object_gets_several"),             # perfect predictions: k > 1
    ([[20, 20, 60, 60], [70, 70, 110, 110]], [0, 2], "each_object_own"),  # two apart: each gets points
    ([[40, 40, 80, 80], [44, 44, 84, 84]], [0, 0], "shared_point_single_owner"),  # overlapping: no point twice
], ids=lambda v: v if isinstance(v, str) else None)
def test_assignment(boxes, classes, expect):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    c = torch.tensor(classes, dtype=torch.long)
    pred, obj, cls = predictions(P, b, c)
    pos, owner, iou = assign(pred, obj, cls, P, b, c)
    assert len(pos) == len(owner) == len(iou)
    assert len(set(pos.tolist())) == len(pos)  # a point is positive for one object at most
    if expect == "none":
        assert len(pos) == 0
        return
    for m in range(len(b)):
        assert (owner == m).sum() >= 1, f"object {m} got no positive"
    s = P[pos, 2]
    px, py = (P[pos, 0] + 0.5) * s, (P[pos, 1] + 0.5) * s
    ob = b[owner]
    cx, cy = (ob[:, 0] + ob[:, 2]) / 2, (ob[:, 1] + ob[:, 3]) / 2
    near = ((px - cx).abs() < 2.5 * s) & ((py - cy).abs() < 2.5 * s)
    assert near.all(), "a positive outside its object's centre region"
    if expect == "small_object_gets_a_positive":
        assert (s == 8).all()
    if expect == "large_object_gets_several":
        assert len(pos) >= 5 and torch.allclose(iou, torch.ones_like(iou))


@pytest.mark.parametrize("radius, n_any, n_both", [
    (0.5, 4, 0),   # centre region narrower than the point spacing: only the 4 stride-8 points inside the box
    (2.5, 48, 4),  # 4x4 points per stride within 2.5 strides of the centre; the 4 inside it are in both
], ids=["tight", "default"])
def test_candidates_count(radius, n_any, n_both):
    b = torch.tensor([[56.0, 56.0, 72.0, 72.0]])  # 16 px, centre (64, 64) between stride-8 point centres
    any_c, both = candidates(b, P, radius)
    assert (int(any_c.sum()), int(both.sum())) == (n_any, n_both)


@pytest.mark.parametrize("box", [[10, 20, 50, 40], [0, 0, 8, 8], [100, 3, 127, 90]], ids=["wide", "tiny", "tall"])
def test_encode_inverts_decode(box):
    b = torch.tensor([box], dtype=torch.float32)
    pri = P[100:101]
    back = YOLOX.decode_boxes(encode(b, pri), pri)
    assert torch.allclose(back, b, atol=1e-4)


def test_pair_iou_table():
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    b = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert torch.allclose(pair_iou(a, b)[0], torch.tensor([1.0, 1 / 3, 0.0]))


@pytest.mark.parametrize("bad", [{"center_radius": 0}, {"top_iou": 0}, {"box_weight": -1}],
                         ids=["radius", "top_iou", "weight"])
def test_loss_config_rejects(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        YoloxLossConfig(**bad)


def test_class_rows_coco_to_dashcam():
    assert class_rows(CLASS_SETS["coco"], CLASS_SETS["dashcam"]) == [0, 1, 2, 3, 5, 7, 9]
    with pytest.raises(CheckpointError, match="tractor"):
        class_rows(CLASS_SETS["coco"], ["car", "tractor"])


def test_loss_on_random_model_is_finite_and_has_gradients():
    torch.manual_seed(0)
    m = YOLOX("nano", 3).train()
    x = torch.rand(2, 3, 64, 96) * 255
    targets = [(torch.tensor([[10.0, 10.0, 40.0, 30.0]]), torch.tensor([1])), (torch.zeros(0, 4), torch.zeros(0))]
    losses = yolox_loss(m, x, targets)
    assert torch.isfinite(losses["total"]) and losses["n_pos"] >= 1
    losses["total"].backward()
    assert sum(float(c.weight.grad.abs().sum()) for c in m.head.cls_preds) > 0


@needs_pth
def test_class_sliced_start_is_the_teacher():
    """The 7-class model loaded from the 80-class COCO checkpoint scores exactly the teacher's 7 columns."""
    sd = torch.load(PTH, map_location="cpu", weights_only=True)["model"]
    teacher = YOLOX("nano", 80).eval()
    teacher.load_state_dict(sd)
    student = YOLOX("nano", 7).eval()
    sliced = load_class_mapped(student, CLASS_SETS["dashcam"], PTH)
    assert len(sliced) == 6  # weight and bias of the three strides' class convs
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 160)).astype(np.float32))
    with torch.no_grad():
        t, s = teacher(x), student(x)
    assert torch.allclose(s[..., :4], t[..., :4])
    assert torch.allclose(s[..., 4:], t[..., 4:][..., [0, 1, 2, 3, 5, 7, 9]])
