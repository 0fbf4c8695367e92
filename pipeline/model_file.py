"""The model file carries its own preprocessing; a config value that contradicts it loses, with one line.

A detector's weights were trained with one preprocessing (colour order, mean/std, letterbox mode,
pad value, class names, output layout).  It travels with the weights: in an exported ONNX file as
the ``dashtrack`` metadata (``models/export.py``), in a checkpoint as ``meta.preprocess``
(``models/checkpoint.py``), in a registered variant as its YAML ``preprocess`` section.  Both
backends read it through ``file_wins`` below, so the rule is written once:

- the file's value wins over ``detector.<field>`` (a different preprocessing would feed the
  network inputs it never saw; re-export the model to change it);
- when the config asked for another value (anything but the dataclass default), one ``note:``
  line names the field, both values and the reason.

The input shape is not in this list: a dynamic-shape file's ``input_size`` is only a default
(``detector.imgsz`` / ``input_size`` win), a fixed-shape file refuses a contradicting
``detector.input_size`` (``OnnxDetector._setup_shape``).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Mapping

from .config import DetectorConfig
from dashtrack_core.configtools import from_mapping

# DetectorConfig fields a model file describes about itself.
FILE_FIELDS: tuple[str, ...] = ("format", "letterbox", "pad_value", "color", "mean", "std", "class_names")

_DEFAULTS = DetectorConfig()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def print_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def file_wins(cfg: DetectorConfig, file_values: Mapping[str, Any], model: str,
              note: Callable[[str], None] = print_note) -> DetectorConfig:
    """``cfg`` with the model file's own preprocessing (``file_values``, any of ``FILE_FIELDS``) in place
    of the config's; one note per field the config had set to something else."""
    values = {k: v for k, v in file_values.items() if k in FILE_FIELDS}
    if not values:
        return cfg
    merged = dataclasses.asdict(cfg)
    for key, theirs in values.items():
        ours = merged[key]
        if not _same(ours, theirs) and not _same(ours, getattr(_DEFAULTS, key)):
            note(f"detector.{key}={show_value(ours)} contradicts {model}'s own {key} {show_value(theirs)}; the model file "
                 "wins (its weights were trained with that preprocessing; re-export the model to change it)")
        merged[key] = theirs
    return from_mapping(DetectorConfig, merged, f"{model} metadata")


def show_value(value: Any) -> str:
    """A config value as a user writes it in YAML or --set (tuples as lists, booleans lower case)."""
    if isinstance(value, tuple):
        return str(list(value))
    return str(value).lower() if isinstance(value, bool) else str(value)
