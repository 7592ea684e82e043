"""Build the engines of a hierarchy, after checking — before any model loads — that the stages fit together.

``check_hierarchy`` reads only small files (``config.json``, ``tokenizer.json``)
of every stage that is a local folder (or ``testbed:<stage>``): all stages must
have the same vocabulary size and, where a stage folder carries its own
tokenizer, the same tokenizer (vocabulary, merges and special tokens). A
mismatch is a ValueError naming the stages, raised before any weights load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from asd.models import get_backend
from asd.models.config import HierarchyConfig


def _local_dir(model: str) -> Path | None:
    if model.startswith("testbed:"):
        from asd.testbed.weights import resolve_model

        return Path(resolve_model(model))
    p = Path(model)
    return p if p.is_dir() else None


def _tokenizer_fingerprint(folder: Path) -> str | None:
    """sha256 of the tokenizer's model + added tokens (not of formatting), or None if the folder has none."""
    f = folder / "tokenizer.json"
    if not f.is_file():
        return None
    data = json.loads(f.read_text())
    key = json.dumps({"model": data.get("model"), "added": data.get("added_tokens")}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def check_hierarchy(hier: HierarchyConfig) -> None:
    """ValueError when the stages cannot form a cascade (different vocabularies or tokenizers)."""
    vocab: dict[str, int] = {}
    toks: dict[str, str] = {}
    shared = None
    if hier.tokenizer:
        d = Path(hier.tokenizer)
        shared = _tokenizer_fingerprint(d) if d.is_dir() else None
    for st in hier.stages:
        local = _local_dir(st.model)
        if local is None:
            continue  # a hub id: checked by the engine when it loads (no files to read here)
        d = local
        cfg = d / "config.json"
        if not cfg.is_file():
            raise ValueError(f"stage {st.name!r}: {cfg} not found (model folder without config.json)")
        vocab[st.name] = int(json.loads(cfg.read_text())["vocab_size"])
        fp = _tokenizer_fingerprint(d)
        if fp is not None:
            toks[st.name] = fp
    if len(set(vocab.values())) > 1:
        raise ValueError(f"stages have different vocabulary sizes {vocab}: a cascade needs one shared tokenizer")
    fps = set(toks.values()) | ({shared} if shared and toks else set())
    if len(fps) > 1:
        groups: dict[str, list[str]] = {}
        for name, fp in toks.items():
            groups.setdefault(fp[:12], []).append(name)
        if shared:
            groups.setdefault(shared[:12], []).append(f"hierarchy.tokenizer={hier.tokenizer}")
        raise ValueError(
            f"stages use different tokenizers {list(groups.values())}: a cascade needs one "
            "shared tokenizer (all stages must map text to the same ids)"
        )


def load_engines(hier: HierarchyConfig, device: str | None = None, dtype: str | None = None) -> list:
    """Check the hierarchy, then build one engine per stage (backend from the config)."""
    check_hierarchy(hier)
    cls = get_backend(hier.backend)
    return [cls.from_stage(st, device=device or hier.device, dtype=dtype) for st in hier.stages]


def load_tokenizer(hier: HierarchyConfig):
    """The shared tokenizer (``hierarchy.tokenizer``, else the first stage's folder) via AutoTokenizer."""
    from transformers import AutoTokenizer

    src = hier.tokenizer or str(_local_dir(hier.stages[0].model) or hier.stages[0].model)
    return AutoTokenizer.from_pretrained(src)
