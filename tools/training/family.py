"""What differs between the model families during training: start weights, frozen blocks, BN, loss.

fastdet: the trunk is ``model.trunk`` (stem + ``blocks``), loss ``models/loss.py``.
yolox:   the trunk is the CSPDarknet ``model.backbone.backbone`` (stem, dark2 .. dark5), loss
         ``models/yolox_loss.py``; ``freeze_bn`` keeps every batch norm of the model at the
         teacher's statistics (small CPU batches would only add noise to them).
"""
from __future__ import annotations

import torch
from torch import nn

from models.loss import detection_loss
from models.registry import ModelSpec
from models.transfer import load_class_mapped
from models.yolox_loss import yolox_loss


def trunk_parts(model: nn.Module, spec: ModelSpec) -> list[nn.Module]:
    """The trunk's blocks in input order (what ``freeze_blocks`` counts)."""
    if spec.family == "yolox":
        d = model.backbone.backbone
        return [d.stem, d.dark2, d.dark3, d.dark4, d.dark5]
    return [model.trunk.stem, *list(model.trunk.blocks)]


def freeze_trunk(model: nn.Module, spec: ModelSpec, n: int, frozen: bool = True) -> int:
    """(Un)freeze the stem and first ``n`` trunk blocks (fastdet: the stem plus n blocks; yolox: n of stem,
    dark2 .. dark5; -1: the whole trunk); returns the parameter count touched."""
    if n == 0:
        return 0
    if n < 0:
        parts = [model.backbone.backbone if spec.family == "yolox" else model.trunk]
    else:
        parts = trunk_parts(model, spec)[: n + 1 if spec.family == "fastdet" else n]
    count = 0
    for part in parts:
        for prm in part.parameters():
            prm.requires_grad_(not frozen)
            count += prm.numel()
    return count


def set_bn_eval(model: nn.Module, spec: ModelSpec) -> None:
    """Batch norms that keep their pretrained statistics: the fastdet trunk's, every one of a yolox model."""
    for m in (model.modules() if spec.family == "yolox" else model.trunk.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def init_weights(model: nn.Module, spec: ModelSpec, path) -> list[str]:
    """Start from ``path`` (class rows picked by name); returns the sliced tensors' names."""
    return load_class_mapped(model, spec.class_names, path)


def compute_loss(model: nn.Module, spec: ModelSpec, x: torch.Tensor, targets, cfg, aux_weight: float):
    if spec.family == "yolox":
        return yolox_loss(model, x, targets, cfg.yolox_loss)
    return detection_loss(model, x, targets, aux_weight=aux_weight, cfg=cfg.loss)
