"""asd models verify: the testbed folders, Qwen2.5-shaped checkpoints with empty (sparse) weights, and a
transformers-written sharded checkpoint; each failure verify must catch."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asd.models.checkpoint import (
    INDEX_FILE,
    CheckpointError,
    qwen2_tensor_shapes,
    read_header,
    write_empty_checkpoint,
)
from asd.models.config import HierarchyConfig, StageConfig
from asd.models.shapes import QWEN25, param_count
from asd.models.verify import format_report, verify_hierarchy
from asd.run_config import load_section
from asd.testbed.weights import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "added_tokens": [{"id": 2, "content": "<|endoftext|>"}]}


def _qwen_hier(*stages: tuple[str, str]) -> HierarchyConfig:
    return HierarchyConfig("q", [StageConfig(n, m) for n, m in stages])


def _qwen_dir(root: Path, model: str, size: str, shards: int, tokenizer: dict = TOKENIZER) -> Path:
    folder = write_empty_checkpoint(root / model, QWEN25[size], shards=shards)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


def test_testbed_folders_verify(tmp_path):
    rep = verify_hierarchy(load_section(REPO / "configs/testbed.yaml", "hierarchy"), WEIGHTS_DIR)
    assert rep.ok, format_report(rep)
    assert [s.params for s in rep.stages] == [308_736, 1_185_536, 3_471_360, 19_722_240]
    assert len({s.tokenizer for s in rep.stages}) == 1
    r = subprocess.run([sys.executable, "-m", "asd", "models", "verify", "asd/testbed/weights", "--config",
                        "configs/testbed.yaml"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "verify: all stages ok" in r.stdout, r.stdout + r.stderr


def _testbed_copy(tmp_path: Path) -> Path:
    root = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, root)
    return root


def test_testbed_failures(tmp_path):
    hier = load_section(REPO / "configs/testbed.yaml", "hierarchy")
    hier.tokenizer = str(REPO / hier.tokenizer)
    root = _testbed_copy(tmp_path)
    f = root / "s1" / "model.safetensors"
    with open(f, "r+b") as fh:  # truncated shard: the last 1000 bytes are gone
        fh.truncate(f.stat().st_size - 1000)
    tok = json.loads((REPO / hier.tokenizer / "tokenizer.json").read_text())
    tok["added_tokens"].append({"id": 999, "content": "<extra>", "special": True})
    (root / "s2" / "tokenizer.json").write_text(json.dumps(tok))  # stage s2 brings a tokenizer of its own
    cfg = json.loads((root / "s3" / "config.json").read_text())
    cfg["intermediate_size"] += 8  # 3 · 512 · 8 · 5 layers = 61,440 more; the shards no longer hold what the config implies
    (root / "s3" / "config.json").write_text(json.dumps(cfg))
    rep = verify_hierarchy(hier, root)
    text = format_report(rep)
    by = {s.name: s for s in rep.stages}
    assert by["s0"].ok
    assert "truncated: 2,375,352 bytes on disk, its header describes 2,376,352" in by["s1"].problems[0]
    assert by["s3"].problems == [
        f"{root / 's3'}: the shards hold 19,722,240 parameters, config.json implies 19,783,680 (-61,440)"
    ]
    assert any("stages use different tokenizers" in p and "s2" in p for p in rep.problems)
    assert not rep.ok and "FAIL" in text


def test_qwen25_7b_shaped_sharded_checkpoint(tmp_path):
    """A full Qwen2.5-7B layout (4 shards + index), weights empty: sparse, a few kB on disk."""
    folder = _qwen_dir(tmp_path, "Qwen/Qwen2.5-7B-Instruct", "7b", shards=4)
    assert sum(p.stat().st_blocks for p in folder.iterdir()) * 512 < 10 * 2**20  # sparse on disk
    hier = _qwen_hier(("7b", "Qwen/Qwen2.5-7B-Instruct"), ("7b-base", "Qwen/Qwen2.5-7B-Instruct"))
    rep = verify_hierarchy(hier, tmp_path)
    assert rep.ok, format_report(rep)
    s = rep.stages[0]
    assert s.params == s.expected_params == 7_615_616_512 and s.shards == 4 and s.tensors == 339
    assert s.weight_bytes == 2 * 7_615_616_512 and s.dtypes == ["BF16"]


@pytest.mark.parametrize("fault", ["missing shard", "truncated shard", "wrong config", "stray shard", "index total"])
def test_qwen25_7b_faults(tmp_path, fault):
    folder = _qwen_dir(tmp_path, "Qwen/Qwen2.5-7B-Instruct", "7b", shards=4)
    shard = folder / "model-00003-of-00004.safetensors"
    if fault == "missing shard":
        shard.unlink()
        want = f"{shard}: shard missing (listed in {INDEX_FILE})"
    elif fault == "truncated shard":
        size = shard.stat().st_size
        with open(shard, "r+b") as fh:
            fh.truncate(size - 2**20)
        want = f"{shard}: truncated: {size - 2**20:,} bytes on disk, its header describes {size:,}"
    elif fault == "wrong config":
        cfg = json.loads((folder / "config.json").read_text())
        cfg["num_hidden_layers"] = 27
        (folder / "config.json").write_text(json.dumps(cfg))
        want = "not the shape of Qwen/Qwen2.5-7B-Instruct: num_hidden_layers 27 (expected 28)"
    elif fault == "stray shard":
        shutil.copy(shard, folder / "model-00005-of-00004.safetensors")
        want = "safetensors file(s) not in the index: ['model-00005-of-00004.safetensors']"
    else:
        idx = json.loads((folder / INDEX_FILE).read_text())
        idx["metadata"]["total_size"] += 2
        (folder / INDEX_FILE).write_text(json.dumps(idx))
        want = f"total_size {2 * 7_615_616_512 + 2:,} bytes, the shards hold {2 * 7_615_616_512:,}"
    rep = verify_hierarchy(_qwen_hier(("7b", "Qwen/Qwen2.5-7B-Instruct"), ("b", "Qwen/Qwen2.5-7B-Instruct")), tmp_path)
    assert not rep.ok
    assert any(want in p for p in rep.stages[0].problems), rep.stages[0].problems
    if fault == "wrong config":  # 27 layers in the config, 28 in the shards: the count differs too
        assert any("config.json implies" in p for p in rep.stages[0].problems)


def test_qwen25_tokenizer_differs_between_stages(tmp_path):
    _qwen_dir(tmp_path, "Qwen/Qwen2.5-7B-Instruct", "7b", shards=2)
    other = {**TOKENIZER, "added_tokens": [{"id": 2, "content": "</s>"}]}
    _qwen_dir(tmp_path, "Qwen/Qwen2.5-7B", "7b", shards=2, tokenizer=other)
    rep = verify_hierarchy(_qwen_hier(("instruct", "Qwen/Qwen2.5-7B-Instruct"), ("base", "Qwen/Qwen2.5-7B")), tmp_path)
    assert all(s.ok for s in rep.stages)
    assert len(rep.problems) == 1 and "stages use different tokenizers" in rep.problems[0]
    assert "instruct" in rep.problems[0] and "base" in rep.problems[0]
    # the CLI: exit 1 and the reason
    cfg = tmp_path / "h.yaml"
    cfg.write_text(yaml.safe_dump({"hierarchy": {"name": "q", "stages": [
        {"name": "instruct", "model": "Qwen/Qwen2.5-7B-Instruct"}, {"name": "base", "model": "Qwen/Qwen2.5-7B"}]}}))
    r = subprocess.run([sys.executable, "-m", "asd", "models", "verify", str(tmp_path), "--config", str(cfg)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "FAIL hierarchy: stages use different tokenizers" in r.stdout


def test_every_qwen25_shape_has_the_published_parameter_count():
    """qwen2_tensor_shapes (the layout write_empty_checkpoint writes) against shapes.param_count and the
    published sizes: 7.62B, 14.77B, 32.76B, 72.71B."""
    for size, billions in {"7b": 7.62, "14b": 14.77, "32b": 32.76, "72b": 72.71}.items():
        n = sum(math.prod(s) for s in qwen2_tensor_shapes(QWEN25[size]).values())
        assert n == param_count(QWEN25[size]) and round(n / 1e9, 2) == billions


def test_header_reader_against_safetensors_and_transformers(tmp_path):
    """Our writer's files open in the safetensors library; transformers' sharded save verifies, and its
    tensor names and shapes are exactly qwen2_tensor_shapes."""
    pytest.importorskip("torch")
    from safetensors import safe_open

    from asd.models.random_init import save_random_qwen2

    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=99, tie_word_embeddings=False)
    folder = write_empty_checkpoint(tmp_path / "empty", tiny, shards=1)
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        got = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert got == qwen2_tensor_shapes(tiny)
    with pytest.raises(CheckpointError, match="not even the 8-byte header length"):
        (tmp_path / "x.safetensors").write_bytes(b"abc")
        read_header(tmp_path / "x.safetensors")

    src = save_random_qwen2(tmp_path / "rand", vocab_size=99, hidden_size=32, num_layers=2, num_heads=4,
                            num_kv_heads=2, intermediate_size=64)
    from transformers import Qwen2ForCausalLM

    model = Qwen2ForCausalLM.from_pretrained(src)
    sharded = tmp_path / "models" / "sharded"
    model.save_pretrained(sharded, max_shard_size="20KB")
    (sharded / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    assert (sharded / INDEX_FILE).is_file()
    cfg = json.loads((sharded / "config.json").read_text())
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == qwen2_tensor_shapes(cfg)
    hier = HierarchyConfig("t", [StageConfig("a", str(sharded)), StageConfig("b", str(sharded))])
    rep = verify_hierarchy(hier, None)
    assert rep.ok, format_report(rep)
    assert rep.stages[0].shards > 1 and rep.stages[0].params == param_count(cfg)
