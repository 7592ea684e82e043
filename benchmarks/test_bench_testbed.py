"""CPU cost of the testbed stages: a batch-16 decode step (KV cache of 128 tokens) and a 256-token
prefill, float32, on the committed weights.

Goal: the final stage's batch-16 decode step costs >= 8x stage 0's. Run:
    .venv/bin/python -m pytest benchmarks/test_bench_testbed.py --benchmark-only \
        --benchmark-json=results/benchmarks/testbed_cpu.json
Each final-stage benchmark also times stage 0 right after itself (same minute of a shared, noisy
machine) and stores the ratio in extra_info["ratio_vs_s0"].
"""
import pytest
import torch

from asd.testbed import speed
from asd.testbed.quality import load_model
from asd.testbed.weights import resolve_model

STAGES = ["s0", "s1", "s2", "s3"]


@pytest.fixture(scope="module")
def models():
    return {s: load_model(resolve_model(f"testbed:{s}")) for s in STAGES}


def _decode(m):
    return speed.decode_step(m, batch=16, context=128, warmup=2, repeats=15, stat=min)


@pytest.mark.parametrize("stage", STAGES)
def test_bench_decode_step_b16(benchmark, models, stage):
    m = models[stage]
    x = speed._inputs(16, 128)  # [16, 128] token ids

    def setup():  # untimed: a fresh KV cache of 128 tokens per round
        with torch.no_grad():
            out = m(x, use_cache=True)
        return (out.logits[:, -1:].argmax(-1), out.past_key_values), {}

    def step(nxt, cache):
        with torch.no_grad():
            m(nxt, past_key_values=cache, use_cache=True)

    benchmark.group = "testbed decode step, batch 16, KV 128, fp32"
    benchmark.extra_info.update(stage=stage, params=sum(p.numel() for p in m.parameters()),
                                threads=torch.get_num_threads())
    benchmark.pedantic(step, setup=setup, rounds=20, warmup_rounds=2, iterations=1)
    if stage != "s0":
        benchmark.extra_info["ratio_vs_s0"] = _decode(m) / _decode(models["s0"])


@pytest.mark.parametrize("stage", STAGES)
def test_bench_prefill_256(benchmark, models, stage):
    m = models[stage]
    x = speed._inputs(1, 256, seed=1)

    def run():
        with torch.no_grad():
            m(x)

    benchmark.group = "testbed prefill, 256 tokens, batch 1, fp32"
    benchmark.extra_info.update(stage=stage, threads=torch.get_num_threads())
    benchmark.pedantic(run, rounds=10, warmup_rounds=2)
