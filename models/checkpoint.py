"""Checkpoints: one file with the state dict and the metadata needed to rebuild the model.

    {"format": "dashtrack.detector", "version": 1,
     "meta": {"variant", "family", "classes", "input_size", "strides", "preprocess", "spec"},
     "state_dict": {...}}

Only plain types and tensors, so ``torch.load(weights_only=True)`` reads it.  ``spec`` is the
full ``ModelSpec`` as a mapping; the other meta keys repeat its main facts for readers.
"""
from __future__ import annotations

from pathlib import Path

import zipfile

import torch
from torch import nn

from dashtrack_core.configtools import to_mapping

from .registry import ModelSpec, spec_from_mapping

FORMAT = "dashtrack.detector"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that does not fit what is asked of it; the message names both sides."""


def save_checkpoint(path: str | Path, model: nn.Module, spec: ModelSpec) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "variant": spec.name,
        "family": spec.family,
        "classes": list(spec.class_names),
        "input_size": list(spec.input_size),
        "strides": list(spec.strides),
        "preprocess": to_mapping(spec.preprocess),
        "spec": to_mapping(spec),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "meta": meta, "state_dict": state}, path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict (weights_only); our format or another (an official YOLOX file)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for non-checkpoints; re-raise with the path
        text = str(e)
        if "Weights only load failed" in text and zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: refused: loading it needs pickle to run code (only weights_only=True "
                                  "files are read); save a plain state dict instead") from None
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {first})") from None


def is_ours(ckpt: object) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def spec_of(ckpt: dict, path: str | Path) -> ModelSpec:
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')!r}, this code reads {VERSION}")
    return spec_from_mapping(ckpt["meta"]["spec"], f"{path}:meta.spec")


def load_state_strict(model: nn.Module, state: dict, source: str, target: str) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file, the variant and the first mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys missing from the file (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} keys the model lacks (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise CheckpointError(f"weights {source} do not fit variant {target}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
