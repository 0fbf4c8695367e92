"""Build frozen, validated dataclasses from plain mappings (parsed YAML).

One function, ``from_mapping``, checks every key against the dataclass's typed
fields.  An unknown key, a missing required key or a value of the wrong type
raises ``ConfigError`` naming the key path, the bad value and what is allowed.
Supported field types: bool, int, float, str, Path, Literal[...], Optional[X],
tuple[X, ...], tuple[X, Y], and nested dataclasses.

Every float is checked here, once for all configs: NaN and infinity are refused
(a NaN compares false with every bound, so a later ``x <= 0`` check would let it
through), and a number YAML leaves as a string (``1e30``: YAML 1.1 wants ``1.0e+30``)
is read as the number it spells.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")

# A decimal number in any spelling Python reads (YAML 1.1 leaves 1e30, 1E-3, +5 as strings).
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line for the user."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return "a list of " + str(len(args)) + " (" + ", ".join(_type_name(a) for a in args) + ")"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is Path:
        return "a path"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if isinstance(value, bool):     # YAML 1.1 reads no/yes/off/on as booleans: take the word back
            words = [a for a in get_args(tp) if isinstance(a, str)
                     and a.lower() in (("yes", "on", "true") if value else ("no", "off", "false"))]
            if len(words) == 1:
                return words[0]
        if value in get_args(tp) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {value!r} is not allowed; use {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: null is not allowed; use {_type_name(tp)}")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:            # Optional[X]: X's own message is the precise one
            raise errors[0]
        raise ConfigError(f"{where}: {value!r} is not allowed; use {_type_name(tp)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {value!r} is not a list; use {_type_name(tp)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: {value!r} has {len(value)} items; use {_type_name(tp)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_mapping(tp, value, where)
    if value is None:
        raise ConfigError(f"{where}: null is not allowed; use {_type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
            value = float(value.strip())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: {value!r} is not allowed; use a finite number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    elif tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
    else:
        raise TypeError(f"{where}: unsupported field type {tp!r}")
    raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, validating keys and types.

    Runs the dataclass's ``__post_init__`` (which may raise ``ConfigError`` for
    cross-field checks).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r} ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def to_mapping(obj: Any) -> Any:
    """The inverse of ``from_mapping``: plain dicts, lists and strings (for JSON/YAML dumps)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
