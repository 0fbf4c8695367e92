"""Training loss of the YOLOX family: a simplified SimOTA assignment over all strides at once.

Assignment (``assign``, per image, no gradient), for M labelled boxes and the N anchor points
of every stride (a point's centre is ``(g + 0.5) * stride``):

1. candidates of a box: the points whose centre lies inside the box OR within ``center_radius``
   strides of the box centre on both axes (so a 6 px object still reaches a few stride-8 points);
2. cost of (box, point) = ``-log p`` of the box's class (p = sqrt(sigmoid(obj) * sigmoid(cls)),
   the score the detector will report) + ``iou_cost`` x ``-log IoU`` (predicted box vs label)
   + a large constant for a point that is not inside the box AND within the centre radius;
3. dynamic k: a box takes its ``k = max(1, floor(sum of its top_iou highest IoUs))`` cheapest
   candidates (a well-predicted large box gets several points, a small one at least one);
4. a point claimed by several boxes goes to the box of least cost.

Loss over the batch, each term summed over positives and divided by their number (at least 1):
    objectness  BCE over every point, target 1 at a positive, 0 elsewhere
    classes     BCE at positives, target one-hot x IoU of the predicted box (IoU-aware scores)
    box         ``box_weight`` x (1 - GIoU) of the decoded box at positives
    l1          ``l1_weight`` x L1 of dx dy logw logh against the label encoded at the point (0: off)
The model starts from the COCO teacher, so the assignment is meaningful from step 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .loss import giou

OUTSIDE_COST = 1e5  # added to points that are not both inside the box and near its centre


@dataclass(frozen=True)
class YoloxLossConfig:
    center_radius: float = 2.5  # strides: the centre region a positive may sit in
    top_iou: int = 10  # dynamic k = floor(sum of the box's top_iou IoUs), at least 1
    iou_cost: float = 3.0  # weight of -log IoU in the assignment cost
    box_weight: float = 5.0  # weight of (1 - GIoU) in the loss
    l1_weight: float = 0.0  # weight of the L1 term on the raw box parameters (0: off)
    iou_aware_cls: bool = True  # class target one-hot x IoU (False: hard one-hot)

    def __post_init__(self) -> None:
        if self.center_radius <= 0:
            raise ValueError(f"yolox_loss.center_radius {self.center_radius} must be > 0")
        if self.top_iou < 1:
            raise ValueError(f"yolox_loss.top_iou {self.top_iou} must be >= 1")
        for name in ("iou_cost", "box_weight", "l1_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"yolox_loss.{name} {getattr(self, name)} must be >= 0")


def pair_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, 4) x (N, 4) xyxy -> (M, N) IoU."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-6)


def candidates(boxes: torch.Tensor, priors: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, 4) boxes, (N, 5) priors -> (in_box | in_centre) and (in_box & in_centre), both (M, N) bool."""
    s = priors[:, 2]
    px, py = (priors[:, 0] + 0.5) * s, (priors[:, 1] + 0.5) * s  # (N,) point centres, input px
    in_box = (px[None] > boxes[:, 0:1]) & (px[None] < boxes[:, 2:3]) & \
             (py[None] > boxes[:, 1:2]) & (py[None] < boxes[:, 3:4])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = radius * s[None]  # (1, N)
    in_ctr = ((px[None] - cx[:, None]).abs() < r) & ((py[None] - cy[:, None]).abs() < r)
    return in_box | in_ctr, in_box & in_ctr


@torch.no_grad()
def assign(pred_xyxy: torch.Tensor, obj_logit: torch.Tensor, cls_logit: torch.Tensor, priors: torch.Tensor,
           boxes: torch.Tensor, classes: torch.Tensor, cfg: YoloxLossConfig = YoloxLossConfig()):
    """One image: (N, 4) decoded boxes, (N,) and (N, C) logits, (N, 5) priors, (M, 4) labels, (M,) classes
    -> positive point indices (P,), their label (P,) and the IoU of their predicted box with it (P,)."""
    dev = pred_xyxy.device
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if len(boxes) == 0:
        return empty, empty, pred_xyxy.new_zeros(0)
    any_cand, both = candidates(boxes, priors, cfg.center_radius)
    cand = any_cand.any(0).nonzero().squeeze(1)  # (Nc,) points that are a candidate of some box
    if len(cand) == 0:
        return empty, empty, pred_xyxy.new_zeros(0)
    iou = pair_iou(boxes, pred_xyxy[cand].float())  # (M, Nc)
    p = (obj_logit[cand, None].float().sigmoid() * cls_logit[cand].float().sigmoid()).sqrt()  # (Nc, C)
    p_cls = p[:, classes.long()].T  # (M, Nc): score of each box's class
    cost = -torch.log(p_cls + 1e-8) + cfg.iou_cost * -torch.log(iou + 1e-8)
    cost = cost + OUTSIDE_COST * (~both[:, cand]).float()
    cost = cost.masked_fill(~any_cand[:, cand], float("inf"))  # a point that is no candidate of this box
    k = iou.topk(min(cfg.top_iou, iou.shape[1]), dim=1).values.sum(1).floor().clamp(min=1).long()  # (M,)
    match = torch.zeros_like(cost, dtype=torch.bool)
    order = cost.argsort(dim=1)
    for m in range(len(boxes)):
        pick = order[m, : int(k[m])]
        match[m, pick[torch.isfinite(cost[m, pick])]] = True
    # a point claimed by several boxes: the box of least cost
    claimed = match.any(0)
    owner = cost.masked_fill(~match, float("inf")).argmin(0)  # (Nc,)
    pos = claimed.nonzero().squeeze(1)
    return cand[pos], owner[pos], iou[owner[pos], pos]


def encode(boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """(P, 4) xyxy labels at (P, 5) priors -> (P, 4) dx dy logw logh (the inverse of ``YOLOX.decode_boxes``)."""
    s = priors[:, 2]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0), (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    return torch.stack((cx / s - priors[:, 0], cy / s - priors[:, 1],
                        torch.log(w / priors[:, 3]), torch.log(h / priors[:, 4])), dim=1)


def yolox_loss(model, images: torch.Tensor, targets, cfg: YoloxLossConfig = YoloxLossConfig()) -> dict[str, torch.Tensor]:
    """Losses ``obj``, ``cls``, ``box`` (and ``l1``) and ``total``; targets per image: (boxes (M, 4) input px, classes (M,))."""
    params, obj, cls, priors = model.raw_logits(images)  # (B, N, 4), (B, N), (B, N, C), (N, 5)
    pred = model.decode_boxes(params, priors)  # (B, N, 4) xyxy
    n_cls = cls.shape[-1]
    obj_target = torch.zeros_like(obj, dtype=torch.float32)
    cls_loss = box_loss = l1_loss = obj.new_zeros((), dtype=torch.float32)
    n_pos = 0
    for i, (boxes, classes) in enumerate(targets):
        boxes = boxes.to(pred.device, torch.float32)
        pos, owner, _ = assign(pred[i].detach(), obj[i].detach(), cls[i].detach(), priors, boxes, classes, cfg)
        if len(pos) == 0:
            continue
        obj_target[i, pos] = 1.0
        iou, g = giou(pred[i, pos].float(), boxes[owner])
        onehot = F.one_hot(classes[owner].long(), n_cls).float()
        cls_t = onehot * iou.detach().clamp(min=0)[:, None] if cfg.iou_aware_cls else onehot
        cls_loss = cls_loss + F.binary_cross_entropy_with_logits(cls[i, pos].float(), cls_t, reduction="sum")
        box_loss = box_loss + (1.0 - g).sum()
        if cfg.l1_weight:
            l1_loss = l1_loss + (params[i, pos].float() - encode(boxes[owner], priors[pos])).abs().sum()
        n_pos += len(pos)
    norm = max(n_pos, 1)
    losses = {"obj": F.binary_cross_entropy_with_logits(obj.float(), obj_target, reduction="sum") / norm,
              "cls": cls_loss / norm, "box": cfg.box_weight * box_loss / norm}
    if cfg.l1_weight:
        losses["l1"] = cfg.l1_weight * l1_loss / norm
    losses["total"] = sum(losses.values())
    losses["n_pos"] = torch.tensor(float(n_pos))
    return losses
