"""Plain data over a pipe between the judge and the candidate's sandboxed process (stdlib only).

Standalone on purpose: the sandboxed child and the judge load this file by path (they run
``python -I -S`` and never import ``asd``); ``asd.eval.sandbox`` imports it normally.

Values are the builtins ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, ``list``, ``tuple``, ``set``, ``frozenset`` and ``dict`` (nested up to
``MAX_DEPTH``), written as a JSON tree: ``None``/``bool``/``str``/``list`` and ints of
magnitude below 2**53 and finite floats as themselves; everything else as a JSON object with
exactly one key: ``{"t": [..]}`` tuple, ``{"s": [..]}`` set, ``{"f": [..]}`` frozenset,
``{"d": [[k, v], ..]}`` dict, ``{"i": "-0x1f"}`` big int, ``{"x": "nan" | "inf" | "-inf"}``,
``{"c": [re, im]}`` complex, ``{"b": "00ff"}`` bytes. ``decode`` accepts exactly this and
nothing else, so what arrives is a value of a builtin type whose ``==`` is the builtin's:
never an object of the sender's classes.

``encode`` runs on the candidate's side and is lenient about *how* a value is built:
instances of subclasses of those builtins (``collections.Counter``, ``OrderedDict``, a
namedtuple, an ``int`` subclass with its own ``__eq__``) travel as the builtin value their
base type holds (read with the base type's own methods), and numpy scalars as ``.item()``.
Anything else (generators, functions, custom objects, numpy arrays) raises ``NotPlain``.

Messages: a header of ten ASCII digits and a newline (the length), then that many bytes of JSON
(ASCII), at most ``max_bytes``.
"""

import json
import os
import re

MAX_DEPTH = 100
_SAFE_INT = 1 << 53
HEADER = 11  # b"%010d\n"
_HEX = re.compile(r"-?0x[0-9a-f]+")
_HEXBYTES = re.compile(r"(?:[0-9a-f]{2})*")


class NotPlain(TypeError):
    """A value that is not plain data (the candidate's side)."""


class Malformed(ValueError):
    """A message or value that does not follow the format (the receiving side)."""


def _type_name(x):
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def encode(x, depth=0):
    """JSON tree of the plain value ``x`` (see the module docstring); ``NotPlain`` otherwise."""
    if depth > MAX_DEPTH:
        raise NotPlain(f"nested deeper than {MAX_DEPTH} levels")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -_SAFE_INT < x < _SAFE_INT else {"i": hex(x)}
    if t is float:
        return x if x - x == 0 else {"x": repr(x)}  # nan and ±inf are tagged
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "f": [encode(v, depth + 1) for v in x]}
    if t is complex:
        return {"c": [encode(x.real, depth + 1), encode(x.imag, depth + 1)]}
    if t is bytes:
        return {"b": x.hex()}
    return encode(_as_builtin(x), depth + 1)


def _as_builtin(x):
    """The builtin value held by an instance of a builtin's subclass (its own methods never run)."""
    if isinstance(x, int):
        return int.__int__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, bytes):
        return bytes(memoryview(x))
    if isinstance(x, complex):
        return complex(float.__float__(complex.real.__get__(x)), float.__float__(complex.imag.__get__(x)))
    if isinstance(x, list):
        return list(list.__iter__(x))
    if isinstance(x, tuple):
        return tuple(tuple.__iter__(x))
    if isinstance(x, dict):
        return {k: dict.__getitem__(x, k) for k in dict.__iter__(x)}
    if isinstance(x, frozenset):
        return frozenset(frozenset.__iter__(x))
    if isinstance(x, set):
        return set(set.__iter__(x))
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "shape", None) == ():
        v = x.item()
        if type(v) in (bool, int, float, complex, str, bytes) or v is None:
            return v
    raise NotPlain(f"a {_type_name(x)} object is not plain data")


def decode(v, depth=0):
    """The value a JSON tree from ``encode`` stands for; ``Malformed`` for anything else."""
    if depth > MAX_DEPTH:
        raise Malformed(f"nested deeper than {MAX_DEPTH} levels")
    t = type(v)
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is list:
        return [decode(e, depth + 1) for e in v]
    if t is not dict or len(v) != 1:
        raise Malformed(f"unexpected {t.__name__} in a value")
    ((tag, p),) = v.items()
    try:
        if tag in ("t", "s", "f") and type(p) is list:
            items = [decode(e, depth + 1) for e in p]
            return tuple(items) if tag == "t" else set(items) if tag == "s" else frozenset(items)
        if tag == "d" and type(p) is list:
            if not all(type(kv) is list and len(kv) == 2 for kv in p):
                raise Malformed("a dict is a list of [key, value] pairs")
            return {decode(k, depth + 1): decode(val, depth + 1) for k, val in p}
        if tag == "i" and type(p) is str and _HEX.fullmatch(p):
            return int(p, 16)
        if tag == "x" and p in ("nan", "inf", "-inf"):
            return float(p)
        if tag == "c" and type(p) is list and len(p) == 2 and all(type(e) in (int, float) for e in p):
            return complex(p[0], p[1])
        if tag == "c" and type(p) is list and len(p) == 2:
            return complex(decode(p[0], depth + 1), decode(p[1], depth + 1))
        if tag == "b" and type(p) is str and _HEXBYTES.fullmatch(p):
            return bytes.fromhex(p)
    except TypeError as e:  # unhashable set element or dict key, complex of non-numbers
        raise Malformed(str(e)) from None
    raise Malformed(f"unknown tag {tag!r}" if tag not in "tsfdixcb" else f"bad payload for tag {tag!r}")


def _no_constant(name):
    raise Malformed(f"{name} is not allowed")


def dumps(msg):
    """Bytes of one message: header and JSON payload."""
    payload = json.dumps(msg, allow_nan=False, separators=(",", ":")).encode("ascii")
    return b"%010d\n" % len(payload) + payload


def write(fd, msg):
    data = dumps(msg)
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd, n):
    """``n`` bytes; ``b""`` at EOF before the first byte, ``None`` at EOF after it."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return b"" if left == n else None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read(fd, max_bytes):
    """The next message as parsed JSON (not yet decoded), ``None`` at EOF; ``Malformed`` otherwise."""
    header = _read_exact(fd, HEADER)
    if header is None:
        raise Malformed("message cut short")
    if not header:
        return None
    if not (header[:-1].isdigit() and header.endswith(b"\n")):
        raise Malformed("bad message header")
    n = int(header[:-1])
    if n > max_bytes:
        raise Malformed(f"message of {n} bytes, more than the limit of {max_bytes}")
    payload = _read_exact(fd, n)
    if payload is None:
        raise Malformed("message cut short")
    try:
        return json.loads(payload.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Malformed(f"not JSON: {str(e)[:100]}") from None
