"""Names that resolve to code on first use: ``"module:attr"`` strings, so that reading a table imports nothing heavy.

Every table of the package that maps a user-facing name (a config section, a backend, a job, a dataset
loader, a shard step) to code uses ``resolve``; a name outside the table, or a spec that does not import,
is a ``ValueError`` (or the caller's subclass of it) naming what was asked and the valid choices.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def import_spec(spec: str, what: str = "object", error: type[ValueError] = ValueError) -> Any:
    """The object ``"package.module:attr"`` names; ``error`` naming the spec if it does not resolve."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr or ":" in attr:
        raise error(f"{what} {spec!r} is not of the form module:attr")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise error(f"{what} {spec!r} does not resolve ({e})") from e


def resolve(table: Mapping[Any, str], name: Any, what: str, error: type[ValueError] = ValueError) -> Any:
    """The object ``table[name]`` names; ``error`` listing the valid names if ``name`` is not in the table."""
    if name not in table:
        valid = ", ".join(sorted(":".join(k) if isinstance(k, tuple) else str(k) for k in table))
        shown = ":".join(name) if isinstance(name, tuple) else name
        raise error(f"unknown {what} {shown!r}; valid: {valid}")
    return import_spec(table[name], what, error)
