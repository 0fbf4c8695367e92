"""The training config: YAML -> validated, frozen dataclasses (one place), and the model spec it names.

``load_config`` reads ``configs/train/<name>.yaml``; an unknown or mistyped key is a one-line
``ConfigError`` naming it.  See ``tools/train.py`` for the file's layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from models.loss import LossConfig, check_assignment
from models.registry import ModelSpec, load_variant, spec_from_mapping
from models.yolox_loss import YoloxLossConfig
from dashtrack_core.configtools import ConfigError, from_mapping, to_mapping
from tools.train_data import AugmentConfig

ROOT = Path(__file__).resolve().parents[2]


class TrainError(RuntimeError):
    """Bad input to training; the message is one line for the user."""


@dataclass(frozen=True)
class DatasetEntry:
    path: str  # YOLO dataset folder (relative to the repository root)
    select: str = ""  # START:STOP slice of its sorted frames
    source: tuple[str, ...] = ()  # raw frames to pseudo-label when ``path`` is missing (videos / image folders)
    every: int = 1  # keep every N-th frame of ``source``

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every {self.every} must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    train: tuple[DatasetEntry, ...]
    val: tuple[DatasetEntry, ...] = ()

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("data.train is empty; list at least one dataset")


@dataclass(frozen=True)
class Schedule:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # cosine ends at lr * this
    max_steps: int = 0  # 0: epochs * steps per epoch; else stop there (the cosine spans it)
    grad_clip: float = 10.0
    aux_weight: float = 0.5  # stride-64 auxiliary loss (fusion variants)
    freeze_bn: bool = True  # keep the pretrained trunk's batch-norm statistics (small CPU batches)
    freeze_blocks: int = 0  # trunk stem + first N blocks not trained (-1: whole trunk); saves backward time on CPU
    max_minutes: float = 0.0  # wall-clock budget: the cosine follows max(step / total, time / budget); 0: off
    eval_every: int = 5  # epochs; 0: only at the end
    eval_conf: float = 0.3
    amp: bool = True  # CUDA only
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads on CPU (0: torch default)
    seed: int = 0
    ema: float = 0.0  # decay of an exponential moving average of the weights (evaluated and kept); 0: off
    unfreeze_at: float = 0.0  # fraction of the run (steps or time budget) after which frozen blocks train; 0: never
    trunk_lr: float = 1.0  # learning-rate multiplier of the blocks unfrozen by unfreeze_at (warmed up again)
    best_by: Literal["f1", "ap50"] = "f1"  # held-out car metric that picks best.pt

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"schedule.{name} {getattr(self, name)} must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"schedule.lr {self.lr} must be > 0")
        if self.max_steps < 0 or self.warmup_steps < 0 or self.eval_every < 0:
            raise ValueError("schedule.max_steps, warmup_steps and eval_every must be >= 0")
        if not 0 <= self.ema < 1:
            raise ValueError(f"schedule.ema {self.ema} must be in [0, 1)")
        if not 0 <= self.unfreeze_at < 1:
            raise ValueError(f"schedule.unfreeze_at {self.unfreeze_at} must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    variant: str
    data: DataConfig
    name: str = ""
    input_size: tuple[int, int] | None = None
    fastdet: dict | None = None
    classes: Literal["coco", "dashcam"] | tuple[str, ...] | None = None  # override of the variant's classes
    init_from: str = ""  # weights to start from (class rows picked by name, models/transfer.py); "": the variant's
    schedule: Schedule = Schedule()
    loss: LossConfig = LossConfig()  # fastdet family
    yolox_loss: YoloxLossConfig = YoloxLossConfig()  # yolox family (models/yolox_loss.py)
    augment: AugmentConfig = AugmentConfig()
    out: str = "runs/train/default"
    export_onnx: str = ""


# -- config ------------------------------------------------------------------------------------
def load_config(path: Path) -> TrainConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    cfg = from_mapping(TrainConfig, data, str(path))
    model_spec(cfg, str(path))  # validate the model part now
    return cfg


def model_spec(cfg: TrainConfig, where: str = "config") -> ModelSpec:
    base = to_mapping(load_variant(cfg.variant))
    base["name"] = cfg.name or cfg.variant
    if cfg.input_size is not None:
        base["input_size"] = list(cfg.input_size)
    if cfg.fastdet:
        if base.get("fastdet") is None:
            raise ConfigError(f"{where}.fastdet: variant {cfg.variant!r} is not of the fastdet family")
        base["fastdet"] = {**base["fastdet"], **cfg.fastdet}
    if cfg.classes is not None:
        base["classes"] = cfg.classes if isinstance(cfg.classes, str) else list(cfg.classes)
    if base["family"] not in ("fastdet", "yolox"):
        raise ConfigError(f"{where}.variant: {cfg.variant!r} is a {base['family']} model; training supports "
                          "fastdet and yolox")
    if cfg.init_from:
        base["weights"] = "none"  # the trained checkpoint carries its own weights
        if not resolve_path(cfg.init_from).is_file():
            raise ConfigError(f"{where}.init_from: {cfg.init_from} is not a file (the COCO YOLOX-Nano checkpoint is "
                              "../shared/data/teachers/yolox_nano/yolox_nano.pth)")
    spec = spec_from_mapping(base, where)
    if spec.family == "fastdet":
        try:
            check_assignment(cfg.loss, spec.fastdet)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return spec


def resolve_path(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else ROOT / path
