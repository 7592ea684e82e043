"""Predictor checkpoints on disk, and the predictor a config asks for (docs/predictor.md, "Checkpoint").

A checkpoint is a directory with two files:

- ``weights.safetensors``: the arrays of ``asd.core.mlp.MLPWeights`` (float32 network weights as trained,
  float64 normalisation and calibration, int64 ``calibration.iso_n``), readable without torch;
- ``predictor.json``: the metadata (schema ``asd-predictor-checkpoint`` v1): feature names and feature schema
  version, stage names, K, members, trunk widths, normalisation, calibration per (k, m), the training config,
  the training data's path, sha256 and split rule, the git revision, ``weights_sha256`` and ``checksum``
  (sha256 of the canonical JSON of everything else, weights hash included).

``load_checkpoint`` verifies both hashes before returning anything. Nothing here runs the network: the forward
pass is ``asd.core.mlp.MLPPredictor``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from asd.core.mlp import MLPPredictor, MLPWeights

SCHEMA = "asd-predictor-checkpoint"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "predictor.json"
TESTBED_PREFIX = "testbed:"


class CheckpointError(ValueError):
    """A checkpoint that cannot serve this run: corrupt, of another schema, or for other stages/features."""


def resolve_path(spec: str | Path) -> Path:
    """The checkpoint directory of ``spec``: a directory, its predictor.json, or ``testbed:<name>``
    (``asd/testbed/<name>``, committed with the package)."""
    s = str(spec)
    if s.startswith(TESTBED_PREFIX):
        import asd.testbed

        p = Path(asd.testbed.__file__).resolve().parent / s[len(TESTBED_PREFIX) :]
    else:
        p = Path(s)
    if p.name == META_FILE:
        p = p.parent
    return p


def canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _tensors(w: MLPWeights) -> dict[str, np.ndarray]:
    t: dict[str, np.ndarray] = {"mean": w.mean, "scale": w.scale}
    for i, (W, b) in enumerate(w.layers):
        t[f"layer{i}.weight"] = W.astype(np.float32)
        t[f"layer{i}.bias"] = b.astype(np.float32)
    t["head.weight"] = w.head_w.astype(np.float32)
    t["head.bias"] = w.head_b.astype(np.float32)
    t["calibration.temperature"] = w.temperature
    t["calibration.iso_x"] = w.iso_x
    t["calibration.iso_y"] = w.iso_y
    t["calibration.iso_n"] = w.iso_n
    return {k: np.ascontiguousarray(v) for k, v in t.items()}


def save_checkpoint(directory: str | Path, w: MLPWeights, meta: dict[str, Any]) -> Path:
    """Write ``directory`` (created; files written as .partial then renamed). Returns the directory.

    ``meta`` holds the descriptive metadata; this adds schema, K, feature names, hashes and the checksum.
    The same weights and metadata give the same bytes (no time stamps).
    """
    from safetensors.numpy import save

    w.validate()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    blob = save(_tensors(w))
    full = dict(meta)
    full.update(
        schema=SCHEMA,
        schema_version=SCHEMA_VERSION,
        K=w.K,
        feature_names=list(w.feature_names),
        members=w.num_members,
        hidden=[int(W.shape[2]) for W, _ in w.layers],
        weights_file=WEIGHTS_FILE,
        weights_sha256=hashlib.sha256(blob).hexdigest(),
    )
    full.pop("checksum", None)
    full["checksum"] = hashlib.sha256(canonical(full)).hexdigest()
    text = json.dumps(full, sort_keys=True, indent=1) + "\n"
    for name, data in ((WEIGHTS_FILE, blob), (META_FILE, text.encode())):
        tmp = d / (name + ".partial")
        tmp.write_bytes(data)
        os.replace(tmp, d / name)
    return d


def load_checkpoint(spec: str | Path) -> tuple[MLPWeights, dict]:
    """(weights, metadata) of a checkpoint, after checking its schema and both hashes (CheckpointError)."""
    from safetensors.numpy import load

    d = resolve_path(spec)
    mp = d / META_FILE
    if not mp.is_file():
        raise FileNotFoundError(f"{spec}: no predictor checkpoint ({mp} does not exist)")
    try:
        meta = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{mp}: not JSON ({e})") from e
    if meta.get("schema") != SCHEMA or meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{mp}: schema {meta.get('schema')!r} v{meta.get('schema_version')!r}; "
            f"expected {SCHEMA!r} v{SCHEMA_VERSION}"
        )
    body = {k: v for k, v in meta.items() if k != "checksum"}
    if hashlib.sha256(canonical(body)).hexdigest() != meta.get("checksum"):
        raise CheckpointError(f"{mp}: checksum mismatch (the metadata was changed or is corrupt)")
    wp = d / meta["weights_file"]
    if not wp.is_file():
        raise FileNotFoundError(f"{wp}: the checkpoint's weights file is missing")
    blob = wp.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"{wp}: sha256 does not match predictor.json (corrupt or replaced weights)")
    t = load(blob)
    layers = []
    i = 0
    while f"layer{i}.weight" in t:
        layers.append((t[f"layer{i}.weight"].astype(np.float64), t[f"layer{i}.bias"].astype(np.float64)))
        i += 1
    w = MLPWeights(
        feature_names=tuple(meta["feature_names"]),
        K=int(meta["K"]),
        mean=t["mean"].astype(np.float64),
        scale=t["scale"].astype(np.float64),
        layers=tuple(layers),
        head_w=t["head.weight"].astype(np.float64),
        head_b=t["head.bias"].astype(np.float64),
        temperature=t["calibration.temperature"].astype(np.float64),
        iso_x=t["calibration.iso_x"].astype(np.float64),
        iso_y=t["calibration.iso_y"].astype(np.float64),
        iso_n=t["calibration.iso_n"].astype(np.int64),
    )
    try:
        w.validate()
    except ValueError as e:
        raise CheckpointError(f"{wp}: {e}") from e
    return w, meta


def check_compatible(meta: dict, stage_names: list[str] | None, where: str = "checkpoint") -> None:
    """CheckpointError unless the checkpoint fits this code's features and the run's hierarchy.

    Checked: the feature schema version and names (asd.core.features), then K and the stage names (the
    hierarchy's stage models, in order) when ``stage_names`` is given.
    """
    fsv = meta.get("feature_schema_version")
    if fsv != FEATURE_SCHEMA_VERSION or list(meta.get("feature_names", [])) != FEATURE_NAMES:
        raise CheckpointError(
            f"{where}: trained on feature schema v{fsv} ({len(meta.get('feature_names', []))} columns); this code "
            f"computes v{FEATURE_SCHEMA_VERSION} ({len(FEATURE_NAMES)} columns): retrain the predictor"
        )
    if stage_names is None:
        return
    K = int(meta["K"])
    if len(stage_names) != K:
        raise CheckpointError(
            f"{where}: trained for K={K} stages {meta.get('stage_names')}; the hierarchy has "
            f"K={len(stage_names)} stages {list(stage_names)}"
        )
    if list(meta.get("stage_names", [])) != list(stage_names):
        raise CheckpointError(
            f"{where}: trained for stages {meta.get('stage_names')}; the hierarchy's stages are {list(stage_names)}"
        )


def build_predictor(cfg, stage_names: list[str] | None):
    """The predictor of a ``predictor`` config section (None → the prior), checked against the hierarchy.

    stage_names: the hierarchy's stage models in order (e.g. ["testbed:s0", …]); None skips the stage check.
    """
    from asd.core.predictor import PriorPredictor

    if cfg is None or cfg.kind == "prior":
        return PriorPredictor()
    w, meta = load_checkpoint(cfg.checkpoint)
    check_compatible(meta, stage_names, where=f"predictor checkpoint {cfg.checkpoint}")
    return MLPPredictor(w, stage_names=meta.get("stage_names"))


def stage_names_of(hierarchy) -> list[str]:
    """The names a checkpoint's ``stage_names`` must equal: the hierarchy's stage models in order."""
    return [s.model for s in hierarchy.stages]


_CACHE: dict[tuple, Any] = {}


def predictor_for(sections: dict) -> Any:
    """The predictor of a loaded run config (sections ``predictor`` and ``hierarchy``), cached per process.

    No ``predictor`` section: the prior. A checkpoint that does not fit the hierarchy: CheckpointError.
    """
    cfg = sections.get("predictor")
    hier = sections.get("hierarchy")
    names = stage_names_of(hier) if hier is not None else None
    key = (None if cfg is None else (cfg.kind, cfg.checkpoint), None if names is None else tuple(names))
    if key not in _CACHE:
        _CACHE[key] = build_predictor(cfg, names)
    return _CACHE[key]
