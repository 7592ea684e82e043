"""Strict YAML → dataclass loading, and the same type rules for dataclasses built from Python.

Each component keeps one small ``@dataclass`` next to its consumer (e.g.
``asd.core.dp.PolicyConfig``); this module only knows how to fill one from a
mapping, strictly:

- an unknown key is a ``ConfigError`` that names the key, where it is (file,
  line and dotted path) and lists the valid keys;
- a value of the wrong type is a ``ConfigError`` naming the field, the file,
  the expected type and the received value (its ``repr`` cut to 80 characters);
- missing required fields are named too; every problem of a mapping is reported,
  one line each (``ConfigError.errors``).

Supported field types: ``int`` (within int64), ``float`` (ints are accepted and
widened; NaN is refused), ``str``, ``bool``, ``Optional[T]``, ``list[T]``,
``tuple[T, ...]``, ``dict[str, T]``, ``Literal[...]`` and nested dataclasses.
``"inf"`` / ``.inf`` are accepted for floats.

A config dataclass calls :func:`check_fields` first in its ``__post_init__``, so that
``CascadeConfig(max_new_tokens=7.5)`` from Python fails like the YAML value would::

    @dataclass
    class PolicyConfig:
        lam: float = 1.0
        kappa: float = 0.0

        def __post_init__(self) -> None:
            check_fields(self)

    cfg = load_yaml(PolicyConfig, "configs/evaluation.yaml", section="policy")

The file itself (encoding, duplicate keys, alias expansion, line numbers) is read by
:mod:`asd.config_yaml`. This module imports nothing outside the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
REPR_LIMIT = 80  # characters of a value shown in a message
_INF_WORDS = ("inf", "+inf", "infinity", "+infinity", ".inf", "+.inf")


class ConfigError(ValueError):
    """A config file, key or value is invalid; every message names the file (or class) and field.

    ``errors`` holds one line per problem (``str(e)`` joins them with newlines)."""

    def __init__(self, *messages: str):
        self.errors = [line for m in messages for line in str(m).splitlines()] or ["invalid config"]
        super().__init__("\n".join(self.errors))


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring, _repr.maxother = REPR_LIMIT, REPR_LIMIT


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, in time and memory bounded whatever the value.

    Nested containers are shown to depth 2 and 4 items (``reprlib``); ints of more than 128 bits by size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, str):  # repr of the head only: a 1 MB string costs nothing here
        text = repr(value[:limit])
        return text if len(value) <= limit and len(text) <= limit else text[: limit - 3] + "..."
    try:
        text = _repr.repr(value)
    except Exception:  # a broken __repr__ must not hide the config error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_text(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters (for messages that embed other messages)."""
    text = " ".join(text[: limit * 2].splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


Where = Callable[..., str]  # (dotted path[, path whose line to give]) → message prefix "file:12: jobs.shards"


def convert(tp: Any, value: Any, where: Where, path: str) -> Any:
    """``value`` as field type ``tp`` (ints widened to float, lists to tuples, mappings to dataclasses).

    ConfigError (one line per problem) ``where(path)``-prefixed otherwise."""
    origin = get_origin(tp)
    args = get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(a, value, where, path)
            except ConfigError:  # try the next alternative
                pass
        raise ConfigError(f"{where(path)}: expected {_type_name(tp)}, got {short_repr(value)}")
    if origin is Literal:
        if value not in args or (isinstance(value, bool) and not any(a is value for a in args)):
            raise ConfigError(
                f"{where(path)}: invalid value {short_repr(value)}; valid choices: {', '.join(map(repr, args))}"
            )
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # validated when it was built
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where(path)}: expected a mapping for {tp.__name__}, got {short_repr(value)}")
        return _build(tp, value, where, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where(path)}: expected a list, got {short_repr(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{where(path)}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert_all([(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value))], where))
        item = args[0] if args else Any
        items = _convert_all([(item, v, f"{path}[{i}]") for i, v in enumerate(value)], where)
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where(path)}: expected a mapping, got {short_repr(value)}")
        vt = args[1] if len(args) == 2 else Any
        keys = [str(k) for k in value]
        vals = _convert_all([(vt, v, f"{path}.{k}") for k, v in zip(keys, value.values())], where)
        return dict(zip(keys, vals))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where(path)}: expected bool (true/false), got {short_repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{where(path)}: expected int, got {short_repr(value)}")
        i = int(value)
        if not INT64_MIN <= i <= INT64_MAX:
            raise ConfigError(f"{where(path)}: {short_repr(i)} does not fit in 64 bits (int64)")
        return i
    if tp is float:
        if isinstance(value, str) and value.strip().lower() in _INF_WORDS:
            return math.inf
        if isinstance(value, str) and value.strip().lower() in ("-inf", "-infinity", "-.inf"):
            return -math.inf
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where(path)}: expected float, got {short_repr(value)}")
        try:
            f = float(value)
        except OverflowError:  # an int beyond the float range
            raise ConfigError(f"{where(path)}: {short_repr(value)} is beyond the float range") from None
        if math.isnan(f):
            raise ConfigError(f"{where(path)}: expected a number, got nan")
        return f
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where(path)}: expected str, got {short_repr(value)}")
        return value
    raise AssertionError(f"unsupported config field type {tp!r} at {path}")


def _convert_all(items: list[tuple[Any, Any, str]], where: Where) -> list:
    """Convert every ``(type, value, path)``; all their errors together (one line each)."""
    out, errors = [], []
    for tp, v, p in items:
        try:
            out.append(convert(tp, v, where, p))
        except ConfigError as e:
            errors.extend(e.errors)
    if errors:
        raise ConfigError(*errors)
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def _build(cls: type[T], data: Mapping[str, Any], where: Where, path: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = _hints(cls)
    errors: list[str] = []
    for k in data:
        if k not in fields:
            errors.append(
                f"{where(_join(path, str(k)))}: unknown key {short_repr(k)} for {cls.__name__}; "
                f"valid keys: {', '.join(sorted(fields))}"
            )
    kwargs = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name in data:
            try:
                kwargs[name] = convert(hints[name], data[name], where, sub)
            except ConfigError as e:
                errors.extend(e.errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{where(sub)}: required field missing for {cls.__name__}")
    if errors:
        raise ConfigError(*errors)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # __post_init__ validation: the line of the field its message names first
        first = str(e).split(" ", 1)[0].rstrip(":")
        at = _join(path, first) if first in fields else path
        raise ConfigError(f"{where(path, at)}: {short_text(str(e))}") from e


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def locator(source: str | None, lines: Mapping[str, int] | None = None) -> Where:
    """``path → "source:line: path"`` (the line of ``line_path`` or else ``path``, or of its nearest parent)."""

    def where(path: str, line_path: str | None = None) -> str:
        loc = path or "<top level>"
        line = line_of(lines, path if line_path is None else line_path) if lines else None
        if source and line:
            return f"{source}:{line}: {loc}"
        return f"{source}: {loc}" if source else loc

    return where


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """Line of ``path`` (``a.b[2].c``) or of its nearest ancestor in ``lines``."""
    p = path
    while p:
        if p in lines:
            return lines[p]
        cut = max(p.rfind("."), p.rfind("["))
        p = p[:cut] if cut > 0 else ""
    return lines.get("") if not path else None  # a key not in the file (a default, a command-line value): no line


def from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    source: str | None = None,
    path: str = "",
    lines: Mapping[str, int] | None = None,
) -> T:
    """Build dataclass ``cls`` from ``data`` strictly (see module docstring); ``lines``: path → line."""
    assert dataclasses.is_dataclass(cls), cls
    where = locator(source, lines)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where(path)}: expected a mapping for {cls.__name__}, got {short_repr(data)}")
    return _build(cls, data, where, path)


def check_fields(obj: Any) -> None:
    """Apply the loader's type rules to a dataclass built from Python (call first in ``__post_init__``).

    Values are converted in place as the loader converts them (int → float, a mapping → its dataclass,
    ``"inf"`` → inf); a wrong type is a ConfigError naming ``Class.field``."""
    cls = type(obj)
    name = cls.__name__
    hints = _hints(cls)
    errors: list[str] = []

    def where(path: str, line_path: str | None = None) -> str:
        return f"{name}.{path}"

    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        try:
            new = convert(hints[f.name], value, where, f.name)
        except ConfigError as e:
            errors.extend(e.errors)
            continue
        if new is not value:
            object.__setattr__(obj, f.name, new)  # frozen dataclasses too
    if errors:
        raise ConfigError(*errors)


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of YAML file ``path`` (strict: see :mod:`asd.config_yaml`)."""
    from asd.config_yaml import read_doc

    return read_doc(path).data


def load_yaml(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load dataclass ``cls`` from YAML file ``path`` (optionally one top-level ``section``)."""
    from asd.config_yaml import read_doc

    doc = read_doc(path)
    data: Any = doc.data
    if section is not None:
        if section not in data:
            raise ConfigError(f"{doc.source}: missing section {section!r}; present: {', '.join(map(str, data))}")
        data = data[section]
    return from_dict(cls, data, source=doc.source, path=section or "", lines=doc.lines)


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict/list (JSON/YAML-safe, inf kept as float)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj
