"""Start a model from another class set's weights: every tensor as is, the class rows picked by name.

    load_class_mapped(model, spec, "../shared/data/teachers/yolox_nano/yolox_nano.pth")

The 7 dashcam classes of a YOLOX head are the COCO rows person 0, bicycle 1, car 2, motorcycle 3,
bus 5, truck 7, traffic light 9: the slice keeps the teacher's own class scores, so the model
before any training step IS the teacher (restricted to those classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, is_ours, load_state_strict, read_checkpoint
from .classes import CLASS_SETS


def class_rows(source: Sequence[str], target: Sequence[str]) -> list[int]:
    """Row of each target class in the source class list; a class the source lacks is an error."""
    missing = [c for c in target if c not in source]
    if missing:
        raise CheckpointError(f"classes {missing} are not among the {len(source)} classes of the source weights")
    return [list(source).index(c) for c in target]


def source_state(path: str | Path) -> tuple[dict, Sequence[str] | None]:
    """The state dict of a checkpoint file (ours or an official ``{'model': ...}``) and its class names if known."""
    ckpt = read_checkpoint(path)
    if is_ours(ckpt):
        return ckpt["state_dict"], ckpt["meta"]["classes"]
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"], None
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None
    raise CheckpointError(f"{path}: not a state dict, an official {{'model': ...}} file or a dashtrack checkpoint")


def load_class_mapped(model: nn.Module, target_classes: Sequence[str], path: str | Path) -> list[str]:
    """Load ``path`` into ``model``; class-prediction tensors whose first dimension differs from the model's are
    sliced by class name (the source's names from its metadata, else COCO when it has 80 rows).
    Returns the names of the sliced tensors."""
    state, names = source_state(path)
    own = model.state_dict()
    out, sliced = {}, []
    for k, v in state.items():
        if k in own and v.ndim >= 1 and own[k].shape[0] == len(target_classes) and v.shape[0] != own[k].shape[0] \
                and ".cls_preds." in k:
            src = names if names is not None else (CLASS_SETS["coco"] if v.shape[0] == 80 else None)
            if src is None or len(src) != v.shape[0]:
                raise CheckpointError(f"{path}: {k} has {v.shape[0]} class rows and no class names to map them by")
            v = v[class_rows(src, target_classes)].clone()
            sliced.append(k)
        out[k] = v
    load_state_strict(model, out, str(path), type(model).__name__)
    return sliced
