"""Variants as data: one YAML file per variant in ``configs/models/``, one builder per family.

    spec = load_variant("mobilenetv2_s16")   # validated, frozen ModelSpec
    model = build_model(spec)                # nn.Module with raw / decode_boxes / forward

A variant file::

    family: fastdet            # fastdet | yolox
    input_size: [384, 640]     # network input H, W
    classes: dashcam           # a class set name (coco, dashcam) or a list of names
    preprocess: {color: rgb, mean: [...], std: [...], letterbox: topleft, pad_value: 0}
    fastdet: {...}             # FastDetConfig, for family fastdet
    yolox: {size: nano}        # YoloxConfig, for family yolox
    weights: zoo               # yolox only: official weights from the zoo on first use

The variant name is the file name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import yaml
from torch import nn

from dashtrack_core.configtools import ConfigError, from_mapping
from dashtrack_core.detector import Preprocess

from .classes import CLASS_SETS
from .fastdet import FastDet, FastDetConfig
from .yolox import YOLOX, YOLOX_SIZES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"


@dataclass(frozen=True)
class YoloxConfig:
    size: str = "nano"

    def __post_init__(self) -> None:
        if self.size not in YOLOX_SIZES:
            raise ValueError(f"yolox.size {self.size!r} is not known; use one of {', '.join(YOLOX_SIZES)}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: Literal["fastdet", "yolox"]
    input_size: tuple[int, int]
    classes: Literal["coco", "dashcam"] | tuple[str, ...]
    preprocess: Preprocess = Preprocess()
    fastdet: FastDetConfig | None = None
    yolox: YoloxConfig | None = None
    weights: Literal["none", "zoo"] = "none"

    def __post_init__(self) -> None:
        if getattr(self, self.family) is None:
            raise ValueError(f"family {self.family!r} needs a {self.family!r} section")
        h, w = self.input_size
        if h % 32 or w % 32:
            raise ValueError(f"input_size {list(self.input_size)} must be multiples of 32")

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_SETS[self.classes] if isinstance(self.classes, str) else self.classes

    @property
    def strides(self) -> tuple[int, ...]:
        return (8, 16, 32) if self.family == "yolox" else (self.fastdet.stride,)


def _build_fastdet(spec: ModelSpec) -> nn.Module:
    return FastDet(spec.fastdet, len(spec.class_names))


def _build_yolox(spec: ModelSpec) -> nn.Module:
    return YOLOX(spec.yolox.size, len(spec.class_names))


BUILDERS: dict[str, Callable[[ModelSpec], nn.Module]] = {"fastdet": _build_fastdet, "yolox": _build_yolox}


def list_variants() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def spec_from_mapping(data: dict, where: str) -> ModelSpec:
    return from_mapping(ModelSpec, data, where)


def load_variant(name: str) -> ModelSpec:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown model variant {name!r}; registered: {', '.join(list_variants())}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys")
    return spec_from_mapping({"name": name, **data}, str(path))


def build_model(spec: ModelSpec | str) -> nn.Module:
    """The network of a variant (eval mode, random init apart from pretrained trunks)."""
    if isinstance(spec, str):
        spec = load_variant(spec)
    return BUILDERS[spec.family](spec).eval()
