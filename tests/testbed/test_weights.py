"""Weight resolution: sha256 check, clear errors on missing/corrupt files, offline loading."""

import pytest

from asd.testbed import weights as W
from asd.testbed.config import ModelShape
from asd.testbed.train import make_model

TINY = ModelShape(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32, lr=1e-3
)


@pytest.fixture()
def root(tmp_path):
    import torch

    for s in ("s0", "s1"):
        make_model(TINY, seed=0).to(torch.bfloat16).save_pretrained(tmp_path / s)
    W.write_sums(tmp_path)
    return tmp_path


def test_resolve_verifies_and_loads_offline(root):
    from transformers import Qwen2ForCausalLM

    folder = W.resolve_model("testbed:s1", root)
    assert folder == root / "s1"
    m = Qwen2ForCausalLM.from_pretrained(folder, local_files_only=True)
    assert m.config.hidden_size == 16
    assert W.stages(root) == ["s0", "s1"]


def test_other_specs_pass_through(root):
    assert W.resolve_model("Qwen/Qwen2.5-7B-Instruct", root) == "Qwen/Qwen2.5-7B-Instruct"


def _flip_last_byte(p):
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))


def test_corrupt_file_is_a_clear_error(root):
    _flip_last_byte(root / "s0" / "model.safetensors")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        W.resolve_model("testbed:s0", root)


def test_file_changed_after_a_check_is_hashed_again(root):
    assert W.resolve_model("testbed:s0", root) == root / "s0"  # checked (and remembered) once
    _flip_last_byte(root / "s0" / "model.safetensors")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        W.resolve_model("testbed:s0", root)


def test_missing_file_is_a_clear_error(root):
    (root / "s1" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        W.resolve_model("testbed:s1", root)


def test_unknown_stage_lists_valid(root):
    with pytest.raises(ValueError, match="valid: s0, s1"):
        W.resolve_model("testbed:s9", root)


def test_missing_checksums(tmp_path):
    with pytest.raises(FileNotFoundError, match="SHA256SUMS"):
        W.resolve_model("testbed:s0", tmp_path)


def test_committed_weights_verify_and_fit_budget():
    names = W.stages()
    assert names == ["s0", "s1", "s2", "s3"]
    total = sum(p.stat().st_size for p in W.WEIGHTS_DIR.glob("*/model.safetensors"))
    assert total <= 80e6
    for s in names:
        W.verify(s)
