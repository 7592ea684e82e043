"""asd models plan: memory per stage and tensor-parallel placement (the reference 8 × 80 GiB layout, the
tightest one on 4 GPUs, optimality against a plain enumeration)."""
from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asd.models.placement import GiB, StageMemory, place, plan
from asd.run_config import load_section

REPO = Path(__file__).resolve().parents[2]
QWEN = load_section(REPO / "configs/qwen2.5_models.yaml", "hierarchy")


def test_reference_layout_on_8x80():
    p = plan(QWEN, 8, 80)
    assert p.placement is not None
    tp = {n: t for n, (t, _) in p.placement.assign.items()}
    assert tp == {"7b": 1, "14b": 1, "32b": 2, "72b": 4}  # as configs/qwen2.5_models.yaml, one stage per group
    assert p.placement.shared_stages() == 0 and sorted(g for _, g in p.placement.assign.values()) == [0, 4, 6, 7]
    s7 = p.stages[0]
    assert s7.weight_bytes == 2 * 7_615_616_512  # bf16
    assert s7.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2  # K and V, layers, KV heads, head dim, bytes
    assert s7.kv_bytes == 8 * 8192 * s7.kv_bytes_per_token
    assert max(p.placement.load) <= p.capacity == (0.9 * 80 - 2) * GiB
    # why TP 2 and 4: 32B at TP 1 and 72B at TP 2 need more than the 70 GiB a card offers
    s32, s72 = p.stages[2], p.stages[3]
    assert s32.per_gpu(1) > p.capacity >= s32.per_gpu(2)
    assert s72.per_gpu(2) > p.capacity >= s72.per_gpu(4)


def test_4x80_says_why_not_and_what_fits():
    p = plan(QWEN, 4, 80)
    assert p.placement is None
    assert p.why_not == [
        "the stages need 289.6 GiB together (weights 238.1 GiB + KV cache 51.5 GiB at batch 8 × max_model_len), "
        "4 GPU(s) offer 4 × 70.0 = 280.0 GiB"
    ]
    assert p.alternatives[0].startswith("batch 6 (instead of 8) fits: 72b TP 4 on GPU 0-3")
    assert p.alternatives[1].startswith("max_model_len 6656 (instead of 8192) at batch 8 fits")
    # the tightest layout at the batch it names: all four stages share the four GPUs
    q = plan(QWEN, 4, 80, batch=6)
    assert q.placement is not None and q.placement.shared_stages() == 4
    assert max(q.placement.load) <= q.capacity
    assert plan(QWEN, 4, 80, batch=7).placement is None


def test_stages_pack_onto_fewer_gpus_when_they_must():
    p = plan(QWEN, 6, 80)  # 1+1+2+4 = 8 dedicated GPUs are not there: two stages share
    assert p.placement is not None and 0 < p.placement.shared_stages() < 4
    assert max(p.placement.load) <= p.capacity


def test_a_stage_that_fits_nowhere():
    p = plan(QWEN, 2, 80)
    assert p.placement is None
    assert any(w.startswith("stage 72b alone needs 77.7 GiB per GPU even at TP 2") for w in p.why_not)


@pytest.mark.parametrize("bad, msg", [
    (dict(gpus=0), "--gpus must be >= 1"), (dict(gpu_mem_gib=0), "--gpu-mem must be > 0"),
    (dict(utilization=1.5), "--utilization must be in"), (dict(batch=0), "--batch must be >= 1"),
])
def test_bad_input(bad, msg):
    kw = dict(gpus=8, gpu_mem_gib=80.0) | bad
    with pytest.raises(ValueError, match=msg):
        plan(QWEN, kw.pop("gpus"), kw.pop("gpu_mem_gib"), **kw)


def _naive(stages: list[StageMemory], gpus: int, cap: float):
    """Every (TP, aligned block) per stage, no pruning, no symmetry breaking: the reference for place()."""
    options = [[(t, g0) for t in s.valid_tp(gpus) for g0 in range(0, gpus - t + 1, t)] for s in stages]
    best = None
    for combo in itertools.product(*options):
        load = [0.0] * gpus
        for s, (t, g0) in zip(stages, combo):
            for g in range(g0, g0 + t):
                load[g] += s.per_gpu(t)
        if max(load) > cap:
            continue
        owners = {}
        for s, (t, g0) in zip(stages, combo):
            for g in range(g0, g0 + t):
                owners.setdefault(g, []).append(s.name)
        key = (len({n for v in owners.values() if len(v) > 1 for n in v}), sum(t for t, _ in combo), max(load))
        best = key if best is None or key < best else best
    return best


def _random_instance(seed: int) -> tuple[list[StageMemory], int, float]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    gpus = int(rng.choice([2, 4, 6, 8]))
    stages = [
        StageMemory(f"s{i}", "m", "bfloat16", 0, int(rng.choice([8, 16, 28, 40])), int(rng.choice([2, 4, 8])),
                    int(rng.uniform(1, 120) * GiB), int(rng.integers(1, 64)) * 1024, 8, 8192, 1)
        for i in range(n)
    ]
    return stages, gpus, float(rng.uniform(20, 80)) * GiB


def _same_best(seed: int) -> None:
    stages, gpus, cap = _random_instance(seed)
    got = place(stages, gpus, cap)
    want = _naive(stages, gpus, cap)
    assert (got is None) == (want is None), f"instance seed {seed}"
    if got is not None:
        assert got.key()[:2] == want[:2] and abs(got.key()[2] - want[2]) < 1.0, f"instance seed {seed}"
        assert max(got.load) <= cap


def test_place_is_optimal_on_random_instances():
    for seed in np.random.SeedSequence().generate_state(60):  # fresh instances each run; a failure names its seed
        _same_best(int(seed))


@pytest.mark.parametrize("seed", [45, 1543, 1587])
def test_place_is_optimal_on_six_gpus(seed):
    # on 6 GPUs two empty blocks of 2 are not interchangeable (GPUs 4-5 lie in no block of 4, GPUs 0-1 do):
    # an earlier pruning tried only the first and missed the best layout (1587) or every layout (1543)
    assert _random_instance(seed)[1] == 6
    _same_best(seed)


def test_cli_plan(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asd", "models", "plan", "--gpus", "8", "--gpu-mem", "80", "--json",
                        str(tmp_path / "p.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tensor-parallel sizes 1/1/2/4 (matches the config's 1/1/2/4)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "asd", "models", "plan", "--gpus", "4", "--gpu-mem", "80"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no placement fits 4 × 80 GiB" in r.stdout and "batch 6 (instead of 8)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "asd", "models", "plan", "--gpus", "0", "--gpu-mem", "80"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--gpus must be >= 1" in r.stderr
