"""Training loss of the fast family, one term per scale (main map and, with fusion, stride 64).

The seed found that the coarse stride-64 path of the fusion does not learn from the main
loss alone, so each scale gets its own detection loss; ``aux_weight`` scales the coarse one.

Assignment: an object belongs to the cell holding its centre and, with anchors, to the
prior of best shape IoU (anchor-free: the single slot).  Per scale:
    objectness  BCE over every slot (1 at assigned slots), / number of objects
    classes     BCE at assigned slots (one-hot), / number of objects
    offset      BCE-with-logits of tx, ty against the in-cell fraction cx / s - gx (in [0, 1))
    size        smooth L1 of tw, th against log(w / pw), log(h / ph)
No training runs in this issue; the loss is here so the aux path and the encoding are tested.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .fastdet import FastDet


def encode(model: FastDet, boxes: torch.Tensor, h: int, w: int, stride: int):
    """(M, 4) xyxy boxes -> slot index (M,) into the h*w*K rows and target params (M, 4) = fx fy log w/pw log h/ph."""
    k = model.num_anchors
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    bw, bh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0), (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    gx = (cx / stride).floor().clamp(0, w - 1)
    gy = (cy / stride).floor().clamp(0, h - 1)
    if model.cfg.anchors:
        sizes = torch.tensor(model.cfg.anchors, dtype=boxes.dtype, device=boxes.device)  # (K, 2)
    else:
        sizes = torch.full((1, 2), float(stride), dtype=boxes.dtype, device=boxes.device)
    inter = torch.minimum(bw[:, None], sizes[None, :, 0]) * torch.minimum(bh[:, None], sizes[None, :, 1])  # (M, K)
    shape_iou = inter / (bw[:, None] * bh[:, None] + sizes.prod(1)[None] - inter)
    a = shape_iou.argmax(dim=1)  # (M,)
    slot = ((gy * w + gx).long() * k + a)  # row-major cells, anchors fastest (as FastDet.split)
    fx = (cx / stride - gx).clamp(0, 1 - 1e-4)
    fy = (cy / stride - gy).clamp(0, 1 - 1e-4)
    target = torch.stack((fx, fy, torch.log(bw / sizes[a, 0]), torch.log(bh / sizes[a, 1])), dim=1)  # (M, 4)
    return slot, target


def scale_loss(model: FastDet, out: torch.Tensor, stride: int, targets: list[tuple[torch.Tensor, torch.Tensor]]):
    """Loss of one (B, K*5 + C, h, w) head map; targets per image: (boxes (M, 4) input px, classes (M,))."""
    b, _, h, w = out.shape
    k, c = model.num_anchors, model.num_classes
    box = out[:, : 4 * k].reshape(b, k, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * k, 4)  # (B, h*w*K, 4)
    obj = out[:, 4 * k: 5 * k].permute(0, 2, 3, 1).reshape(b, h * w * k)  # (B, K, h, w) -> (B, h*w*K)
    cls = out[:, 5 * k:].permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, C, h, w) -> (B, h*w, C)
    obj_target = torch.zeros_like(obj)
    cls_loss = box_loss = out.new_zeros(())
    n_pos = 0
    for i, (boxes, classes) in enumerate(targets):
        if len(boxes) == 0:
            continue
        slot, target = encode(model, boxes.to(out), h, w, stride)
        obj_target[i, slot] = 1.0
        cls_target = F.one_hot(classes.long(), c).to(out)  # (M, C)
        cls_loss = cls_loss + F.binary_cross_entropy_with_logits(cls[i, slot // k], cls_target, reduction="sum")
        pred = box[i, slot]  # (M, 4)
        box_loss = box_loss + F.binary_cross_entropy_with_logits(pred[:, :2], target[:, :2], reduction="sum")
        box_loss = box_loss + F.smooth_l1_loss(pred[:, 2:], target[:, 2:], reduction="sum")
        n_pos += len(boxes)
    obj_loss = F.binary_cross_entropy_with_logits(obj, obj_target, reduction="sum")
    norm = max(n_pos, 1)
    return {"obj": obj_loss / norm, "cls": cls_loss / norm, "box": box_loss / norm}


def detection_loss(model: FastDet, images: torch.Tensor, targets, aux_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Losses per scale (``s32_obj``, ``s64_box``, ...) and ``total`` = main + aux_weight * stride-64 terms."""
    losses: dict[str, torch.Tensor] = {}
    total = images.new_zeros(())
    for j, (out, stride) in enumerate(model.raw_maps(images)):
        weight = 1.0 if j == 0 else aux_weight
        for name, value in scale_loss(model, out, stride, targets).items():
            losses[f"s{stride}_{name}"] = value
            total = total + weight * value
    losses["total"] = total
    return losses
