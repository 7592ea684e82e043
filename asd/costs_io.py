"""Cost model files (JSON): the I/O adapter of ``asd.core.costs``.

A file holds ``CostModel.to_dict()`` (``schema_version``, ``stages``, ``batch_size``, ``provenance``).
``save_cost_model`` fills the provenance (git revision, environment, time; the caller adds the
hardware it measured on and its config) and writes atomically (temporary name, then rename), so a
reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from asd.core.costs import CostModel
from asd.provenance import provenance


def save_cost_model(model: CostModel, path: str | Path, **extra_provenance) -> Path:
    """Write ``model`` to ``path`` as JSON; its provenance is updated with the current run's record."""
    path = Path(path)
    rec = {**model.provenance, **provenance(), **extra_provenance}
    data = dataclasses.replace(model, provenance=rec).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_json(path: str | Path, what: str, error: type[Exception] = ValueError) -> Any:
    """The JSON content of ``path``; FileNotFoundError "<path>: <what> not found", ``error`` naming the line of
    invalid JSON. The one reader of the project's JSON files (cost models, route files, layout records, grids)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e


def load_cost_model(path: str | Path) -> CostModel:
    """Read a cost model file; errors name the file (missing, not JSON, wrong schema or keys)."""
    return CostModel.from_dict(read_json(path, "cost model file"), source=str(path))
