"""Strict YAML → dataclass loading, shared by every component's config.

Each component keeps one small ``@dataclass`` next to its consumer (e.g.
``asd.core.dp.PolicyConfig``); this module only knows how to fill one from a
mapping, strictly:

- an unknown key is a ``ConfigError`` that names the key, where it is (file and
  dotted path) and lists the valid keys;
- a value of the wrong type is a ``ConfigError`` naming the field, the file,
  the expected and the received type;
- missing required fields are named too.

Supported field types: ``int``, ``float`` (ints are accepted and widened),
``str``, ``bool``, ``Optional[T]``, ``list[T]``, ``tuple[T, ...]``,
``dict[str, T]``, ``Literal[...]`` and nested dataclasses. ``"inf"`` / ``.inf``
are accepted for floats.

Example::

    @dataclass
    class PolicyConfig:
        lam: float = 1.0
        kappa: float = 0.0

    cfg = load_yaml(PolicyConfig, "configs/evaluation.yaml", section="policy")
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the file and field."""


def _where(source: str | None, path: str) -> str:
    loc = path or "<root>"
    return f"{source}: {loc}" if source else loc


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, source: str | None, path: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, source, path)
            except ConfigError as e:  # try the next alternative
                errors.append(str(e))
        raise ConfigError(f"{_where(source, path)}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{_where(source, path)}: invalid value {value!r}; valid choices: {', '.join(map(repr, args))}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, path)}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, source=source, path=path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(source, path)}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{_where(source, path)}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, path)}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(source, path)}: expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(source, path)}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity", ".inf"):
            return math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(source, path)}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(source, path)}: expected str, got {value!r}")
        return value
    raise AssertionError(f"unsupported config field type {tp!r} at {path}")


def from_dict(cls: type[T], data: Mapping[str, Any], source: str | None = None, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` strictly (see module docstring)."""
    assert dataclasses.is_dataclass(cls), cls
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(source, path)}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{_where(source, path)}: unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ConfigError(f"{_where(source, sub)}: required field missing for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{_where(source, path)}: {e}") from e


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; errors name the file (and line, for syntax errors)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{line} invalid YAML: {getattr(e, 'problem', e)}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_yaml(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load dataclass ``cls`` from YAML file ``path`` (optionally one top-level ``section``)."""
    data = read_yaml(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section {section!r}; present: {', '.join(sorted(data))}")
        data = data[section]
    return from_dict(cls, data, source=str(path), path=section or "")


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict/list (JSON/YAML-safe, inf kept as float)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj
