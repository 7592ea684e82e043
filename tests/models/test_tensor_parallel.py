"""The tensor-parallel decoder (asd/models/tensor_parallel.py): one rank equals StaticDecoder, two ranks under
torchrun (gloo) equal one device, weight and KV accounting, user errors. ``gpu`` tests add CUDA graphs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from asd.models.cuda_graph import StaticDecoder  # noqa: E402
from asd.models.tensor_parallel import SHAPE_KEYS, TPDecoder, kv_bytes, shard_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()


def tiny(seed: int, heads: int = 4, kv: int = 2, layers: int = 2, vocab: int = 96):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv)
    return transformers.Qwen2ForCausalLM(cfg).eval()


def shape_of(model) -> dict:
    return {k: getattr(model.config, k) for k in SHAPE_KEYS if hasattr(model.config, k)}


def test_one_rank_equals_static_decoder():
    """World 1 (no collectives) over the model's own weights: prefill logits, argmax and greedy tokens."""
    seed = int(torch.randint(0, 10_000, ()).item())
    model = tiny(seed)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, 96, (3, 7), generator=g)
    ref = StaticDecoder(model, max_batch=3, max_len=40, use_graphs=False)
    want_logits = ref.prefill(prompt, [7, 7, 7], all_logits=True)
    want = ref.generate_greedy(prompt.tolist(), 10)
    tp = TPDecoder(shape_of(model), 0, 1, 3, 40, torch.float32, "cpu", full=model)
    with torch.no_grad():
        got_logits = tp.prefill(prompt, [7, 7, 7], keep=7, out="logits")
        torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5, msg=f"seed {seed}")
        assert torch.equal(tp.prefill(prompt, [7, 7, 7], keep=7), got_logits.argmax(-1)), f"seed {seed}"
        tok = tp.prefill(prompt, [7, 7, 7])
        out = [tok[:, -1]]
        for _ in range(9):
            tok = tp.step(tok)
            out.append(tok[:, -1])
    assert torch.stack(out, 1).tolist() == want, f"seed {seed}"
    assert tp.lengths.tolist() == [16, 16, 16]


def test_random_weights_are_counted_as_shard_bytes_says():
    model = tiny(1, heads=4, kv=2, layers=3)
    shape = shape_of(model)
    for world, rank in ((1, 0), (2, 1)):
        for layers in (None, 2):
            tp = TPDecoder(shape, rank, world, 2, 64, torch.float32, "cpu", layers=layers, seed=5)
            assert tp.weight_bytes() == shard_bytes(shape, world, layers, dtype_bytes=4)
            assert tp._kv_flat.numel() * 4 == kv_bytes(shape, world, tp.kv_tokens, layers, dtype_bytes=4)
    # one rank of two holds half of every sharded matrix: the whole model's parameters = 2 shards - 1 embedding
    whole = sum(p.numel() for p in model.parameters()) * 4
    emb = shape["vocab_size"] * shape["hidden_size"] * 4
    norm = shape["hidden_size"] * 4 * (2 * shape["num_hidden_layers"] + 1)
    assert 2 * shard_bytes(shape, 2, dtype_bytes=4) - emb - norm == whole


def test_run_layers_runs_fewer_layers_and_seeds_repeat():
    shape = shape_of(tiny(2, layers=4))
    a = TPDecoder(shape, 0, 1, 1, 16, torch.float32, "cpu", seed=3)
    b = TPDecoder(shape, 0, 1, 1, 16, torch.float32, "cpu", seed=3)
    ids = torch.arange(5)[None]
    with torch.no_grad():
        full = a.prefill(ids, [5], keep=5, out="logits").clone()
        assert torch.equal(b.prefill(ids, [5], keep=5, out="logits"), full)
        a.run_layers = 1
        assert not torch.allclose(a.prefill(ids, [5], keep=5, out="logits"), full)


def test_resize_recuts_the_buffer_and_refuses_more():
    shape = shape_of(tiny(3))
    tp = TPDecoder(shape, 0, 1, 4, 64, torch.float32, "cpu", kv_tokens=4 * 128)
    tp.resize(1, 512)
    assert tp.kv.shape[1] == 1 and tp.kv.shape[4] == 512 and tp.kv.data_ptr() == tp._kv_flat.data_ptr()
    tp.resize(8, 60)
    assert tp.max_len == 64 and tp.lengths.shape == (8,)
    with pytest.raises(ValueError, match="kv_tokens=512"):
        tp.resize(9, 64)


def test_user_errors_are_value_errors():
    shape = shape_of(tiny(4, heads=4, kv=2))
    with pytest.raises(ValueError, match="divisible by 4.*num_key_value_heads=2"):
        TPDecoder(shape, 0, 4, 1, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        TPDecoder(shape, 2, 2, 1, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="layers must be in 1..2"):
        TPDecoder(shape, 0, 1, 1, 16, torch.float32, "cpu", layers=3)
    tp = TPDecoder(shape, 0, 1, 2, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="out must be one of argmax, logits"):
        tp.step(torch.zeros(1, 1, dtype=torch.long), out="probs")
    with pytest.raises(ValueError, match="batch 3 outside 1..2"):
        tp.step(torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="exceed the cache's 64 slots"):
        tp.prefill(torch.zeros(1, 65, dtype=torch.long), [65])


def _torchrun() -> list[str] | None:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [exe] if Path(exe).exists() else None


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo not available")
def test_two_ranks_under_torchrun_equal_one_device(tmp_path):
    """The CLI check: a tiny fp32 model sharded over 2 gloo ranks == StaticDecoder on the whole model."""
    run = _torchrun()
    if run is None:
        pytest.skip("torchrun not found next to this Python")
    out = tmp_path / "check.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run(run + ["--standalone", "--nproc_per_node", "2", "-m", "asd.models.tensor_parallel",
                                "--check", "--device", "cpu", "--size", "", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["world"] == 2 and rec["device"] == "cpu"
    assert rec["check"]["equal"] and rec["check"]["argmax_equal"]
    assert rec["check"]["prefill_logits_max_abs_err"] < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (CUDA-graph capture)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replay_equals_eager_on_one_gpu(dtype):
    model = tiny(6).to("cuda", dtype)
    shape = shape_of(model)
    eager = TPDecoder(shape, 0, 1, 2, 64, dtype, "cuda", full=model)
    graph = TPDecoder(shape, 0, 1, 2, 64, dtype, "cuda", full=model)
    ids = torch.randint(0, 96, (2, 9), device="cuda")
    with torch.no_grad():
        a = eager.prefill(ids, [9, 9], use_graph=False, keep=9, out="logits").clone()
        b = graph.prefill(ids, [9, 9], use_graph=True, keep=9, out="logits").clone()
        torch.testing.assert_close(a, b)
        x, y = eager.prefill(ids, [9, 9], use_graph=False), graph.prefill(ids, [9, 9], use_graph=True)
        for _ in range(6):
            x, y = eager.step(x, use_graph=False), graph.step(y, use_graph=True)
            assert torch.equal(x, y)
    assert len(graph.graphs) == 3
