"""Training loss: target encoding, centre-sampling assignment, IoU-aware objectness, per-scale aux loss."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models import build_model, load_variant


# ---- training loss: per-scale terms, aux path, target encoding ----------------------------------

@pytest.mark.parametrize("anchors", [(), ((20.0, 20.0), (60.0, 30.0), (30.0, 70.0))])
def test_target_encoding_decodes_back_to_the_box(anchors):
    from models.loss import encode

    spec = load_variant("resnet18_s32")
    spec = dataclasses.replace(spec, input_size=(128, 192), fastdet=dataclasses.replace(spec.fastdet, anchors=anchors))
    model = build_model(spec)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [100.0, 5.0, 190.0, 120.0], [63.9, 63.9, 64.1, 64.1]])
    slot, owner, target = encode(model, boxes, 4, 6, 32)
    assert sorted(owner.tolist()) == [0, 1, 2]  # centre cell only: one slot per object
    priors = model._priors(4, 6, 32, boxes)[slot]  # (M, 5)
    logits = torch.cat((torch.logit(target[:, :2]), target[:, 2:]), dim=1)  # sigmoid^-1 of the in-cell fraction
    decoded = model.decode_boxes(logits, priors)
    small = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)  # sizes under 1 px are encoded as 1 px
    expected = torch.cat((boxes[:, :2] + boxes[:, 2:] - small, boxes[:, :2] + boxes[:, 2:] + small), 1) / 2
    assert torch.allclose(decoded[owner.argsort()], expected, atol=1e-2)


def _span_model(span: float, input_size=(128, 192)):
    spec = load_variant("resnet18_s32")
    return build_model(dataclasses.replace(spec, input_size=input_size,
                                           fastdet=dataclasses.replace(spec.fastdet, offset_span=span)))


# A 4 x 6 map at stride 32 (cells are 32 px; cell (gx, gy) has its centre at (32 gx + 16, 32 gy + 16)).
# Expected positive cells as (gx, gy) per object, with center_radius (min, max) in cells.
ASSIGN_CASES = [
    ("centre cell only", (0.0, 0.0), [[40, 40, 60, 60]], [[(1, 1)]]),
    ("tiny box, radius 1: the 2 x 2 cells around its centre", (1.0, 1.5), [[60, 60, 70, 70]], [[(1, 1), (2, 1), (1, 2), (2, 2)]]),
    ("tiny box on a cell centre, radius 1: 3 x 3", (1.0, 1.5), [[76, 76, 84, 84]],
     [[(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2), (1, 3), (2, 3), (3, 3)]]),
    ("wide box: radius 1.5 across (3 cells), 1 down (2 cells)", (1.0, 1.5), [[0, 50, 190, 70]],
     [[(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]]),
    ("radius under half a cell still keeps the centre cell", (0.2, 0.2), [[100, 10, 110, 20]], [[(3, 0)]]),
    ("a shared cell goes to the object it is the centre cell of, else to the smaller",
     (1.0, 1.5), [[40, 40, 104, 104], [56, 56, 62, 62]], [[(2, 2)], [(1, 1), (2, 1), (1, 2)]]),
    ("overlapping centre cells: the smaller object wins", (0.0, 0.0), [[40, 40, 104, 104], [60, 60, 70, 70]],
     [[], [(2, 2)]]),
]


@pytest.mark.parametrize("case, radius, boxes, expected", ASSIGN_CASES, ids=[c[0] for c in ASSIGN_CASES])
def test_centre_sampling_assigns_the_expected_cells(case, radius, boxes, expected):
    from models.loss import assign

    owner = assign(_span_model(4.0), torch.tensor(boxes, dtype=torch.float32), 4, 6, 32, radius)  # (24,)
    got = [sorted((int(c) % 6, int(c) // 6) for c in (owner == i).nonzero().squeeze(1)) for i in range(len(boxes))]
    assert got == [sorted(e) for e in expected], case


def test_neighbour_cell_targets_decode_back_to_the_centre():
    from models.loss import encode

    model = _span_model(4.0)
    boxes = torch.tensor([[140.0, 100.0, 150.0, 110.0], [0.0, 50.0, 190.0, 70.0]])
    slot, owner, target = encode(model, boxes, 4, 6, 32, (1.0, 1.5))
    assert len(slot) == 4 + 6 and ((target[:, :2] > 0) & (target[:, :2] < 1)).all()
    logits = torch.cat((torch.logit(target[:, :2]), target[:, 2:]), dim=1)
    decoded = model.decode_boxes(logits, model._priors(4, 6, 32, boxes)[slot])
    assert torch.allclose(decoded, boxes[owner], atol=1e-2)


def test_assignment_radius_must_fit_the_offset_span():
    from models.loss import LossConfig, check_assignment

    check_assignment(LossConfig(center_radius=(1.0, 2.0)), _span_model(4.0).cfg)
    with pytest.raises(ValueError, match="offset_span"):
        check_assignment(LossConfig(center_radius=(1.0, 1.5)), _span_model(1.0).cfg)


def test_iou_aware_loss_is_finite_and_trains_every_positive():
    from models.loss import LossConfig, detection_loss

    model = _span_model(4.0).train()
    targets = [(torch.tensor([[10.0, 10.0, 90.0, 70.0], [120.0, 40.0, 128.0, 48.0]]), torch.tensor([2, 6]))]
    cfg = LossConfig(center_radius=(1.0, 1.5), obj_iou=0.5, giou_weight=1.0)
    losses = detection_loss(model, torch.randn(1, 3, 128, 192), targets, cfg=cfg)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert model.head.pred.weight.grad.abs().sum() > 0


def test_fusion_gets_its_own_loss_and_gradient():
    from models.loss import detection_loss

    spec = dataclasses.replace(load_variant("mobilenetv2_s32"), input_size=(128, 256))
    model = build_model(spec).train()
    targets = [(torch.tensor([[10.0, 10.0, 90.0, 70.0]]), torch.tensor([2])), (torch.zeros(0, 4), torch.zeros(0))]
    losses = detection_loss(model, torch.randn(2, 3, 128, 256), targets)
    assert {"s32_obj", "s32_cls", "s32_box", "s64_obj", "s64_cls", "s64_box", "total"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert model.aux_head.pred.weight.grad.abs().sum() > 0
    assert model.down[0].pconv.conv.weight.grad.abs().sum() > 0
