"""Hierarchy checks run before any weights load: vocabulary sizes and tokenizers must agree."""
import json
import shutil

import pytest

from asd.models.config import HierarchyConfig, StageConfig
from asd.models.loading import check_hierarchy, load_engines
from asd.models.random_init import save_random_qwen2
from asd.testbed.tokenizer import TOKENIZER_DIR


def _stage_dir(root, name, vocab=99, tokenizer="same"):
    d = save_random_qwen2(root / name, vocab_size=vocab, hidden_size=16, num_layers=1, num_heads=2,
                          num_kv_heads=1, intermediate_size=32)
    for f in TOKENIZER_DIR.iterdir():
        shutil.copy(f, d / f.name)
    if tokenizer == "swapped":  # same size, two ids exchanged: a different tokenizer
        tj = json.loads((d / "tokenizer.json").read_text())
        v = tj["model"]["vocab"]
        a, b = list(v)[10], list(v)[11]
        v[a], v[b] = v[b], v[a]
        (d / "tokenizer.json").write_text(json.dumps(tj))
    return d


def _hier(*dirs):
    return HierarchyConfig(name="t", stages=[StageConfig(name=f"s{k}", model=str(d), dtype="float32")
                                             for k, d in enumerate(dirs)], device="cpu")


def test_matching_stages_load(tmp_path):
    h = _hier(_stage_dir(tmp_path, "a"), _stage_dir(tmp_path, "b"))
    engines = load_engines(h)
    assert [e.name for e in engines] == ["s0", "s1"] and engines[0].vocab_size == 99


def test_mismatched_tokenizers_fail_before_loading(tmp_path, monkeypatch):
    h = _hier(_stage_dir(tmp_path, "a"), _stage_dir(tmp_path, "b", tokenizer="swapped"))
    import asd.models.hf as hf

    def boom(*a, **k):  # any model load would be a failure of "before any model runs"
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(hf.HFEngine, "from_stage", classmethod(boom))
    with pytest.raises(ValueError, match="different tokenizers"):
        load_engines(h)
    with pytest.raises(ValueError, match="different vocabulary sizes"):
        check_hierarchy(_hier(_stage_dir(tmp_path, "c"), _stage_dir(tmp_path, "d", vocab=120)))


def test_missing_config_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        check_hierarchy(_hier(_stage_dir(tmp_path, "a"), tmp_path / "empty"))
