"""A small JSON Schema validator for the subset the repository's schemas use (``asd/schemas/*.json``).

Supported keywords: ``type`` (a name or a list of names), ``enum``, ``const``, ``minimum``, ``properties``,
``required``, ``additionalProperties`` (bool or schema), ``items``, ``minItems``, ``anyOf``, ``$ref`` to
``#/$defs/<name>``; ``$schema``, ``$id``, ``title``, ``description`` are ignored. Any other keyword is an
error (so a schema never silently asks for more than is checked).

    errors = validate(record, load_schema("tracking"))     # [] when valid; else "path: message" strings
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
KNOWN = {
    "type",
    "enum",
    "const",
    "minimum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "anyOf",
    "$ref",
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
}
TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


@cache
def load_schema(name: str) -> dict:
    """``asd/schemas/<name>.schema.json``."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    if not path.is_file():
        known = sorted(p.name.split(".")[0] for p in SCHEMA_DIR.glob("*.schema.json"))
        raise ValueError(f"unknown schema {name!r}; valid: {', '.join(known)}")
    schema = json.loads(path.read_text())
    check_keywords(schema)
    return schema


def check_keywords(s: dict, where: str = "#") -> None:
    """ValueError if any sub-schema of ``s`` uses a keyword this checker does not implement."""
    unknown = set(s) - KNOWN
    if unknown:
        raise ValueError(f"schema at {where} uses unsupported keyword(s) {sorted(unknown)}; supported: {sorted(KNOWN)}")
    for k, sub in s.get("properties", {}).items():
        check_keywords(sub, f"{where}/properties/{k}")
    for k, sub in s.get("$defs", {}).items():
        check_keywords(sub, f"{where}/$defs/{k}")
    for i, sub in enumerate(s.get("anyOf", [])):
        check_keywords(sub, f"{where}/anyOf/{i}")
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            check_keywords(s[key], f"{where}/{key}")


def validate(instance: Any, schema: dict) -> list[str]:
    """All violations of ``schema`` by ``instance`` as ``"<json path>: <message>"`` (empty list: valid)."""
    errors: list[str] = []
    _check(instance, schema, schema, "$", errors)
    return errors


def _check(x: Any, s: dict, root: dict, path: str, errors: list[str]) -> None:
    unknown = set(s) - KNOWN
    if unknown:
        raise ValueError(f"schema at {path} uses unsupported keyword(s) {sorted(unknown)}; supported: {sorted(KNOWN)}")
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"schema at {path}: only local '#/$defs/<name>' references are supported, got {ref!r}")
        _check(x, root["$defs"][ref[len("#/$defs/") :]], root, path, errors)
    if "anyOf" in s:
        branches = []
        for sub in s["anyOf"]:
            e: list[str] = []
            _check(x, sub, root, path, e)
            if not e:
                break
            branches.append(e)
        else:
            errors.append(f"{path}: matches none of anyOf ({'; '.join(b[0] for b in branches if b)})")
    if "type" in s:
        names = [s["type"]] if isinstance(s["type"], str) else s["type"]
        if not any(TYPES[t](x) for t in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {type(x).__name__} {_short(x)}")
            return
    if "enum" in s and x not in s["enum"]:
        errors.append(f"{path}: {_short(x)} not one of {s['enum']}")
    if "const" in s and x != s["const"]:
        errors.append(f"{path}: expected {s['const']!r}, got {_short(x)}")
    if "minimum" in s and TYPES["number"](x) and x < s["minimum"]:
        errors.append(f"{path}: {x} < minimum {s['minimum']}")
    if isinstance(x, dict):
        props = s.get("properties", {})
        for k in s.get("required", []):
            if k not in x:
                errors.append(f"{path}: missing required key {k!r}")
        extra = s.get("additionalProperties", True)
        for k, v in x.items():
            if k in props:
                _check(v, props[k], root, f"{path}.{k}", errors)
            elif extra is False:
                errors.append(f"{path}: unexpected key {k!r} (allowed: {sorted(props)})")
            elif isinstance(extra, dict):
                _check(v, extra, root, f"{path}.{k}", errors)
    if isinstance(x, list):
        if "minItems" in s and len(x) < s["minItems"]:
            errors.append(f"{path}: {len(x)} item(s), at least {s['minItems']} required")
        if "items" in s:
            for i, v in enumerate(x):
                _check(v, s["items"], root, f"{path}[{i}]", errors)


def _short(x: Any) -> str:
    t = repr(x)
    return t if len(t) <= 60 else t[:57] + "..."
