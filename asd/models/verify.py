"""``asd models verify DIR``: are a hierarchy's checkpoints complete and do its stages fit together?

For every stage folder (``DIR/<hub id>``, e.g. ``DIR/Qwen/Qwen2.5-7B-Instruct``; ``DIR/<stage>`` for
``testbed:<stage>``; a stage whose model is a local folder is checked where it is):

- ``config.json`` is there and names a shape; a Qwen2.5 hub id must have the published shape;
- every shard the index names exists, its header is valid and its size is what the header describes
  (a truncated or padded shard is caught without reading its data); the index and the shards list the
  same tensors; the index's ``total_size`` matches; the tensors hold exactly the parameter count the config
  implies (``asd.models.shapes.param_count``);
- the tokenizer (the stage's own ``tokenizer.json`` or ``hierarchy.tokenizer``) is found,

and across stages: one vocabulary size and one tokenizer (the same fingerprint as
``asd.models.loading.check_hierarchy`` uses). Only headers and small files are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from asd.models.checkpoint import INDEX_FILE, CheckpointError, numel, read_header, weight_files
from asd.models.config import HierarchyConfig, StageConfig
from asd.models.shapes import known_shape, param_count

SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)
TESTBED = "testbed:"


def stage_folder(root: str | Path | None, stage: StageConfig) -> Path:
    """Where a stage's checkpoint lives: ``root/<hub id>``, ``root/<stage>`` for ``testbed:<stage>``, or the
    stage's own folder when its model is a local path (``root`` None: the testbed's committed weights)."""
    m = stage.model
    if m.startswith(TESTBED):
        if root is None:
            from asd.testbed.weights import WEIGHTS_DIR

            root = WEIGHTS_DIR
        return Path(root) / m[len(TESTBED) :]
    if Path(m).is_dir():
        return Path(m)
    if root is None:
        raise ValueError(
            f"stage {stage.name!r}: model {m!r} is a hub id; give the storage folder (asd models verify DIR)"
        )
    return Path(root) / m


@dataclass
class StageReport:
    """What verify found for one stage (``problems`` empty: the stage is fine)."""

    name: str
    folder: str
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    tensors: int = 0
    params: int | None = None
    expected_params: int | None = None
    weight_bytes: int = 0
    dtypes: list[str] = field(default_factory=list)
    vocab_size: int | None = None
    tokenizer: str | None = None  # sha256 fingerprint (first 12 hex digits shown)
    tokenizer_source: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    stages: list[StageReport]
    problems: list[str] = field(default_factory=list)  # across stages (tokenizer, vocabulary)

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.stages)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "stages": [{**vars(s), "ok": s.ok} for s in self.stages],
        }


def verify_stage(folder: str | Path, stage: StageConfig, shared_tokenizer: str | None = None) -> StageReport:
    """Check one stage folder (see the module docstring); never raises on what it finds."""
    from asd.models.loading import _tokenizer_fingerprint

    folder = Path(folder)
    rep = StageReport(stage.name, str(folder))
    if not folder.is_dir():
        rep.problems.append(f"{folder}: folder missing (asd models download --storage-path ...)")
        return rep
    cfg_path = folder / "config.json"
    cfg = None
    try:
        cfg = json.loads(cfg_path.read_text())
        missing = [k for k in SHAPE_KEYS if k not in cfg]
        if missing:
            rep.problems.append(f"{cfg_path}: missing {missing}")
            cfg = None
    except FileNotFoundError:
        rep.problems.append(f"{cfg_path}: missing")
    except ValueError as e:
        rep.problems.append(f"{cfg_path}: not valid JSON ({e})")
    if cfg is not None:
        rep.vocab_size = int(cfg["vocab_size"])
        rep.expected_params = param_count(cfg)
        ref = known_shape(stage.model)
        if ref is not None:
            diff = {k: (cfg[k], ref[k]) for k in SHAPE_KEYS if cfg[k] != ref[k]}
            if diff:
                rep.problems.append(
                    f"{cfg_path}: not the shape of {stage.model}: "
                    + ", ".join(f"{k} {a} (expected {b})" for k, (a, b) in diff.items())
                )
    _check_weights(folder, rep)
    if rep.params is not None and rep.expected_params is not None and rep.params != rep.expected_params:
        rep.problems.append(
            f"{folder}: the shards hold {rep.params:,} parameters, config.json implies {rep.expected_params:,} "
            f"({rep.params - rep.expected_params:+,})"
        )
    own = _tokenizer_fingerprint(folder) if (folder / "tokenizer.json").is_file() else None
    if own is not None:
        rep.tokenizer, rep.tokenizer_source = own, str(folder / "tokenizer.json")
    elif shared_tokenizer is not None:
        rep.tokenizer, rep.tokenizer_source = shared_tokenizer, "hierarchy.tokenizer"
    else:
        rep.problems.append(f"{folder}: no tokenizer.json, and the hierarchy names no shared tokenizer")
    return rep


def _check_weights(folder: Path, rep: StageReport) -> None:
    try:
        weight_map, shards = weight_files(folder)
    except CheckpointError as e:
        rep.problems.append(str(e))
        return
    rep.shards = len(shards)
    params, nbytes, readable = 0, 0, True
    seen: dict[str, str] = {}
    dtypes: set[str] = set()
    for s in shards:
        p = folder / s
        if not p.is_file():
            rep.problems.append(f"{p}: shard missing (listed in {INDEX_FILE})")
            readable = False
            continue
        try:
            h = read_header(p)
        except CheckpointError as e:
            rep.problems.append(str(e))
            readable = False
            continue
        for name, t in h["tensors"].items():
            if name in seen:
                rep.problems.append(f"{p}: tensor {name!r} also in {seen[name]}")
            seen[name] = s
            params += numel(t)
            dtypes.add(t["dtype"])
        nbytes += h["data_bytes"]
    rep.tensors, rep.dtypes = len(seen), sorted(dtypes)
    if weight_map is not None:
        idx = folder / INDEX_FILE
        if readable:
            wrong = [n for n, f in weight_map.items() if seen.get(n) != f]
            extra = [n for n in seen if n not in weight_map]
            if wrong:
                rep.problems.append(f"{idx}: {len(wrong)} tensor(s) not in the shard it names, e.g. {wrong[:3]}")
            if extra:
                rep.problems.append(
                    f"{idx}: {len(extra)} tensor(s) in the shards but not in the index, e.g. {extra[:3]}"
                )
            total = (json.loads(idx.read_text()).get("metadata") or {}).get("total_size")
            if total is not None and int(total) != nbytes:
                rep.problems.append(f"{idx}: total_size {int(total):,} bytes, the shards hold {nbytes:,}")
        stray = sorted(p.name for p in folder.glob("*.safetensors") if p.name not in set(weight_map.values()))
        if stray:
            rep.problems.append(f"{folder}: safetensors file(s) not in the index: {stray}")
    if readable:
        rep.params, rep.weight_bytes = params, nbytes


def verify_hierarchy(hier: HierarchyConfig, root: str | Path | None) -> VerifyReport:
    """Verify every stage of ``hier`` under ``root``, then that they share one vocabulary and tokenizer."""
    from asd.models.loading import _tokenizer_fingerprint

    shared = None
    problems = []
    if hier.tokenizer:
        tdir = Path(hier.tokenizer)
        shared = _tokenizer_fingerprint(tdir) if tdir.is_dir() else None
        if shared is None:
            problems.append(f"hierarchy.tokenizer {hier.tokenizer}: no tokenizer.json there")
    reports = [verify_stage(stage_folder(root, st), st, shared) for st in hier.stages]
    vocab = {r.name: r.vocab_size for r in reports if r.vocab_size is not None}
    if len(set(vocab.values())) > 1:
        problems.append(f"stages have different vocabulary sizes {vocab}: a cascade needs one shared tokenizer")
    groups: dict[str, list[str]] = {}
    for r in reports:
        if r.tokenizer is not None:
            groups.setdefault(r.tokenizer[:12], []).append(r.name)
    if shared is not None:
        groups.setdefault(shared[:12], []).append("hierarchy.tokenizer")
    if len(groups) > 1:
        problems.append(
            "stages use different tokenizers "
            + "; ".join(f"{fp}: {', '.join(names)}" for fp, names in groups.items())
            + " — all stages must map text to the same ids"
        )
    return VerifyReport(reports, problems)


def format_report(rep: VerifyReport) -> str:
    lines = []
    for s in rep.stages:
        head = "ok  " if s.ok else "FAIL"
        params = f"{s.params:,}" if s.params is not None else "?"
        exp = (
            ""
            if s.expected_params is None
            else (" (= config)" if s.params == s.expected_params else f" (config: {s.expected_params:,})")
        )
        tok = f"tokenizer {s.tokenizer[:12]}" if s.tokenizer else "no tokenizer"
        lines.append(
            f"{head} {s.name:>6}  {s.folder}: {s.shards} shard(s), {s.tensors} tensors, {params} params{exp}, "
            f"{_size(s.weight_bytes)} {'/'.join(s.dtypes)}, {tok}"
        )
        lines.extend(f"       - {p}" for p in s.problems)
    for p in rep.problems:
        lines.append(f"FAIL hierarchy: {p}")
    lines.append(
        "verify: all stages ok"
        if rep.ok
        else f"verify: {sum(not s.ok for s in rep.stages)} stage(s) failed"
        + (f", {len(rep.problems)} hierarchy problem(s)" if rep.problems else "")
    )
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
