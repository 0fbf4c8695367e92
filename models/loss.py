"""Training loss of the fast family, one term per scale (main map and, with fusion, stride 64).

The seed found that the coarse stride-64 path of the fusion does not learn from the main
loss alone, so each scale gets its own detection loss; ``aux_weight`` scales the coarse one.

Assignment (``assign``): an object's candidate cells are its centre cell plus every cell whose
centre lies within ``r`` cells of the object's centre on each axis, with the per-axis radius
``r = clamp(half the box size in cells, *center_radius)``: a small object gets the few cells
around its centre (``center_radius[0]``), a large one its central region up to
``center_radius[1]``.  ``center_radius: [0, 0]`` is the centre cell alone (the first lite model).
With anchors an object takes only the prior of best shape IoU in each of its cells.  A slot
claimed by several objects goes to the one whose centre cell it is, else to the smallest (an
object keeps its centre cell; small objects keep their neighbours).

Per scale, for the positive slots (each object's P slots weigh 1 / P, so every object counts
once, however large):
    objectness  BCE over every slot / number of positive slots; the target at a positive is
                ``1 - obj_iou + obj_iou * IoU(predicted box, object)`` (IoU-aware; 0: a hard 1)
    classes     BCE at positive cells (one-hot), / number of objects
    box         BCE-with-logits of tx, ty against the offset fraction (see ``offset_target``),
                smooth L1 of tw, th against log(w / pw), log(h / ph), plus ``giou_weight`` x
                (1 - GIoU) of the decoded box, / number of objects
The decode's ``offset_span`` (``models/fastdet.py``) must reach every candidate cell:
span >= 2 * center_radius[1] (checked by ``check_assignment``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .fastdet import FastDet, FastDetConfig
from .layers import cell_grid


@dataclass(frozen=True)
class LossConfig:
    center_radius: tuple[float, float] = (0.0, 0.0)  # per-axis radius (cells) clamped to [min, max]; 0, 0: centre cell
    obj_iou: float = 0.0  # weight of the predicted box's IoU in the objectness target (0: hard 1)
    giou_weight: float = 0.0  # weight of the (1 - GIoU) term of the box loss

    def __post_init__(self) -> None:
        lo, hi = self.center_radius
        if not 0 <= lo <= hi:
            raise ValueError(f"loss.center_radius {list(self.center_radius)} must be 0 <= min <= max")
        if not 0 <= self.obj_iou <= 1:
            raise ValueError(f"loss.obj_iou {self.obj_iou} must be in [0, 1]")
        if self.giou_weight < 0:
            raise ValueError(f"loss.giou_weight {self.giou_weight} must be >= 0")


def check_assignment(loss: LossConfig, model_cfg: FastDetConfig) -> None:
    """The decode must reach the farthest candidate cell: offset_span >= 2 * center_radius max."""
    if model_cfg.offset_span < 2 * loss.center_radius[1]:
        raise ValueError(f"loss.center_radius max {loss.center_radius[1]} needs fastdet.offset_span >= "
                         f"{2 * loss.center_radius[1]:g} (is {model_cfg.offset_span:g})")


def _anchor_sizes(model: FastDet, stride: int, like: torch.Tensor) -> torch.Tensor:
    if model.cfg.anchors:
        return torch.tensor(model.cfg.anchors, dtype=like.dtype, device=like.device)  # (K, 2)
    return torch.full((1, 2), float(stride), dtype=like.dtype, device=like.device)


def best_anchor(model: FastDet, boxes: torch.Tensor, stride: int) -> torch.Tensor:
    """(M, 4) boxes -> (M,) index of the prior of best shape IoU (anchor-free: 0)."""
    sizes = _anchor_sizes(model, stride, boxes)
    bw, bh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0), (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    inter = torch.minimum(bw[:, None], sizes[None, :, 0]) * torch.minimum(bh[:, None], sizes[None, :, 1])  # (M, K)
    shape_iou = inter / (bw[:, None] * bh[:, None] + sizes.prod(1)[None] - inter)
    return shape_iou.argmax(dim=1)


def assign(model: FastDet, boxes: torch.Tensor, h: int, w: int, stride: int,
           center_radius: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """(M, 4) xyxy boxes -> (h*w*K,) owning object per slot (row-major cells, anchors fastest), -1: negative."""
    k = model.num_anchors
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # (M,)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    lo, hi = center_radius
    rx, ry = (bw / (2 * stride)).clamp(lo, hi), (bh / (2 * stride)).clamp(lo, hi)  # (M,) cells
    gx, gy = cell_grid(h, w, boxes)  # (h*w,)
    dx = (gx[None] + 0.5) - cx[:, None] / stride  # (M, h*w) cell centre - object centre, cells
    dy = (gy[None] + 0.5) - cy[:, None] / stride
    centre_cell = (gx[None] == (cx / stride).floor().clamp(0, w - 1)[:, None]) & \
                  (gy[None] == (cy / stride).floor().clamp(0, h - 1)[:, None])
    cand = centre_cell | ((dx.abs() <= rx[:, None]) & (dy.abs() <= ry[:, None]))  # (M, h*w)
    cand = cand[:, :, None] & (torch.arange(k, device=boxes.device)[None, None] == best_anchor(model, boxes, stride)[:, None, None])
    cand = cand.reshape(len(boxes), h * w * k)  # (M, h*w, K) -> (M, h*w*K)
    area = (bw * bh)[:, None].expand_as(cand)  # (M, h*w*K)
    centre_slot = centre_cell[:, :, None].expand(-1, -1, k).reshape_as(cand)
    rank = torch.where(centre_slot, area, area + area.max() + 1)  # centre cells first, then the smallest object
    best, owner = rank.masked_fill(~cand, float("inf")).min(dim=0)  # (h*w*K,)
    return torch.where(torch.isfinite(best), owner, torch.full_like(owner, -1))


def offset_target(centre: torch.Tensor, cell: torch.Tensor, stride: int, span: float) -> torch.Tensor:
    """sigmoid target of tx (or ty): the inverse of the decode's ``span * sigmoid(t) - (span - 1) / 2``."""
    return ((centre / stride - cell + (span - 1) / 2) / span).clamp(0, 1 - 1e-4)


def encode(model: FastDet, boxes: torch.Tensor, h: int, w: int, stride: int,
           center_radius: tuple[float, float] = (0.0, 0.0)):
    """(M, 4) xyxy boxes -> positive slots (P,), their objects (P,) and targets (P, 4) = fx fy log w/pw log h/ph."""
    owner_of_slot = assign(model, boxes, h, w, stride, center_radius)
    slot = (owner_of_slot >= 0).nonzero().squeeze(1)  # (P,)
    owner = owner_of_slot[slot]
    k = model.num_anchors
    cell, a = slot // k, slot % k
    b = boxes[owner]  # (P, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    bw, bh = (b[:, 2] - b[:, 0]).clamp(min=1.0), (b[:, 3] - b[:, 1]).clamp(min=1.0)
    sizes = _anchor_sizes(model, stride, boxes)
    span = model.cfg.offset_span
    target = torch.stack((offset_target(cx, (cell % w).to(boxes), stride, span),
                          offset_target(cy, (cell // w).to(boxes), stride, span),
                          torch.log(bw / sizes[a, 0]), torch.log(bh / sizes[a, 1])), dim=1)  # (P, 4)
    return slot, owner, target


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of paired (P, 4) xyxy boxes -> two (P,) tensors."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = (area_a + area_b - inter).clamp(min=1e-6)
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1).clamp(min=1e-6)
    return iou, iou - (hull - union) / hull


def scale_loss(model: FastDet, out: torch.Tensor, stride: int, targets: list[tuple[torch.Tensor, torch.Tensor]],
               cfg: LossConfig = LossConfig()):
    """Loss of one (B, K*5 + C, h, w) head map; targets per image: (boxes (M, 4) input px, classes (M,))."""
    b, _, h, w = out.shape
    k, c = model.num_anchors, model.num_classes
    box = out[:, : 4 * k].reshape(b, k, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * k, 4)  # (B, h*w*K, 4)
    obj = out[:, 4 * k: 5 * k].permute(0, 2, 3, 1).reshape(b, h * w * k)  # (B, K, h, w) -> (B, h*w*K)
    cls = out[:, 5 * k:].permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, C, h, w) -> (B, h*w, C)
    priors = model._priors(h, w, stride, out)  # (h*w*K, 5)
    obj_target = torch.zeros_like(obj)
    cls_loss = box_loss = out.new_zeros(())
    n_pos = n_obj = 0
    for i, (boxes, classes) in enumerate(targets):
        if len(boxes) == 0:
            continue
        boxes = boxes.to(out)
        slot, owner, target = encode(model, boxes, h, w, stride, cfg.center_radius)
        weight = 1.0 / torch.bincount(owner, minlength=len(boxes)).to(out)[owner]  # (P,): 1 / positives of its object
        pred = box[i, slot]  # (P, 4)
        iou, g = giou(model.decode_boxes(pred, priors[slot]), boxes[owner])
        obj_target[i, slot] = 1.0 - cfg.obj_iou + cfg.obj_iou * iou.detach().clamp(min=0)
        cls_target = F.one_hot(classes[owner].long(), c).to(out)  # (P, C)
        cls_bce = F.binary_cross_entropy_with_logits(cls[i, slot // k], cls_target, reduction="none").sum(1)
        box_terms = (F.binary_cross_entropy_with_logits(pred[:, :2], target[:, :2], reduction="none").sum(1)
                     + F.smooth_l1_loss(pred[:, 2:], target[:, 2:], reduction="none").sum(1)
                     + cfg.giou_weight * (1.0 - g))
        cls_loss = cls_loss + (weight * cls_bce).sum()
        box_loss = box_loss + (weight * box_terms).sum()
        n_pos += len(slot)
        n_obj += len(boxes)
    obj_loss = F.binary_cross_entropy_with_logits(obj, obj_target, reduction="sum")
    return {"obj": obj_loss / max(n_pos, 1), "cls": cls_loss / max(n_obj, 1), "box": box_loss / max(n_obj, 1)}


def detection_loss(model: FastDet, images: torch.Tensor, targets, aux_weight: float = 0.5,
                   cfg: LossConfig = LossConfig()) -> dict[str, torch.Tensor]:
    """Losses per scale (``s32_obj``, ``s64_box``, ...) and ``total`` = main + aux_weight * stride-64 terms."""
    losses: dict[str, torch.Tensor] = {}
    total = images.new_zeros(())
    for j, (out, stride) in enumerate(model.raw_maps(images)):
        weight = 1.0 if j == 0 else aux_weight
        for name, value in scale_loss(model, out, stride, targets, cfg).items():
            losses[f"s{stride}_{name}"] = value
            total = total + weight * value
    losses["total"] = total
    return losses
