"""Cascade speed on the CPU testbed.

1. λ = ∞ cascade vs the final model alone vs transformers' assisted generation
   (``assistant_model=`` stage 0 → final, batch 1 as it requires), on the same prompts.
   Both speed-ups against the same baseline, the final model alone through transformers' ``generate``
   (batch 1): ``ratio_ours`` = baseline / our λ = ∞ cascade (batch 1; the best of γ ∈ {0, 4} × engine
   path {transformers modules, static-cache fast path}, all reported), ``ratio_assisted`` = baseline /
   assisted generation; ``ratio_ours_over_assisted`` = their quotient (goal ≥ 1.2). Beside them: the
   speed-up against our own engine's final-alone run, and batch 16 (which assisted generation lacks).
2. Per-decision overhead at batch 16 (features + predictor + costs + DP, timed through the cascade's own
   ``Cascade._features`` + ``Cascade._decide`` with their record keeping) against one stage-0
   decode step at batch 16 (goal < 1 %): ``ratio_overhead_pct`` for the decisions of the whole
   batch of 16, ``ratio_overhead_pct_per_sample`` for one sample's share, and
   ``ratio_overhead_pct_of_stage0_run`` against stage 0's whole 32-token run.

    .venv/bin/python -m pytest benchmarks/test_bench_cascade.py --benchmark-only \\
        --benchmark-json=results/benchmarks/cascade_cpu.json

All timings of one test are taken interleaved in the same minute (the machine is shared and noisy).
"""
import math
import os
import statistics
import time

import numpy as np
import pytest
import torch
from timing import median_seconds

from asd.cascade import BatchState, Cascade, CascadeConfig
from asd.core.dp import PolicyConfig
from asd.core.policies import decide
from asd.core.routing import proxy_costs, proxy_costs_ref
from asd.core.features import NUM_FEATURES, TokenTable, batch_features, batch_features_ref
from asd.models.base import GenerationParams
from asd.models.hf import HFEngine
from asd.core.predictor import PriorPredictor

MAX_NEW = 32


def _testbed():
    try:
        from asd.testbed.weights import resolve_model

        return [resolve_model(f"testbed:s{k}") for k in range(4)]
    except (ValueError, FileNotFoundError, ImportError) as e:
        pytest.skip(f"testbed weights not available ({e})")


@pytest.fixture(scope="module")
def setup():
    dirs = _testbed()
    from asd.testbed import tasks
    from asd.testbed import tokenizer as tk

    engines = [HFEngine(d, dtype="float32", device="cpu", name=f"s{k}") for k, d in enumerate(dirs)]
    exs = [e for t in tasks.TASKS for e in tasks.generate(t, 4, 2, seed=123)]
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in exs]
    return engines, prompts, tk


def test_bench_cascade_vs_assisted(benchmark, setup):
    engines, prompts, tk = setup
    prompts = prompts[:8]
    final, draft = engines[-1], engines[0]
    fast = [HFEngine(e.path, dtype="float32", device="cpu", fast=True) for e in engines]
    P = GenerationParams(MAX_NEW, eos_token_ids=(tk.EOS_ID,))

    def cascade(engs, gamma, bs):
        return Cascade(engs, CascadeConfig(max_new_tokens=MAX_NEW, batch_size=bs, gamma=gamma),
                       PolicyConfig(name="dp", lam=math.inf), eos_token_ids=(tk.EOS_ID,))

    casc = {(f, g): cascade(fast if f else engines, g, 1) for f in (0, 1) for g in (0, 4)}
    casc16 = cascade(fast, 4, 16)

    def hf(p, **kw):
        with torch.no_grad():
            return final.model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                        do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=tk.EOS_ID,
                                        pad_token_id=tk.PAD_ID, **kw)

    runs = {
        "hf_final_b1": lambda: [hf(p) for p in prompts],
        "hf_assisted_b1": lambda: [hf(p, assistant_model=draft.model) for p in prompts],
        "ours_final_b1": lambda: [final.generate([p], P) for p in prompts],
        "ours_final_fast_b1": lambda: [fast[-1].generate([p], P) for p in prompts],
        "ours_cascade_b1": lambda: casc[0, 0].run(prompts),
        "ours_cascade_gamma4_b1": lambda: casc[0, 4].run(prompts),
        "ours_cascade_fast_b1": lambda: casc[1, 0].run(prompts),
        "ours_cascade_fast_gamma4_b1": lambda: casc[1, 4].run(prompts),
        "ours_final_fast_b16": lambda: fast[-1].generate(prompts * 2, P),
        "ours_cascade_fast_gamma4_b16": lambda: casc16.run(prompts * 2),
    }
    # the same output first (lossless), then time interleaved
    own = [final.generate([p], P).tokens[0].tolist() for p in prompts]
    for c in casc.values():
        assert [t.tolist() for t in c.run(prompts)["tokens"]] == own
    times = {k: [] for k in runs}
    for _ in range(5):
        for k, fn in runs.items():
            times[k].append(median_seconds(fn, reps=1))
    med = {k: statistics.median(v) for k, v in times.items()}
    benchmark.pedantic(runs["ours_cascade_fast_gamma4_b1"], rounds=1, iterations=1)
    best = min(("ours_cascade_b1", "ours_cascade_gamma4_b1", "ours_cascade_fast_b1", "ours_cascade_fast_gamma4_b1"),
               key=med.get)
    # both speed-ups against the same baseline: the final model alone through transformers' generate
    ours = med["hf_final_b1"] / med[best]
    assisted = med["hf_final_b1"] / med["hf_assisted_b1"]
    rec = casc[0, 0].run(prompts)
    benchmark.extra_info.update({f"seconds_{k}": v for k, v in med.items()})
    benchmark.extra_info.update(
        best=best, accepted_fraction=float(rec["accepted_len"][:, -1].sum() / rec["draft_len"][:, 0].sum()),
        ratio_ours=ours, ratio_assisted=assisted, ratio_ours_over_assisted=ours / assisted,
        ratio_ours_vs_own_final=med["ours_final_b1"] / med["ours_cascade_gamma4_b1"],
        ratio_ours_b16_vs_own_final_b16=med["ours_final_fast_b16"] / med["ours_cascade_fast_gamma4_b16"])


def _overhead_engine():
    try:
        d = _testbed()[0]
        label = "testbed:s0"
    except pytest.skip.Exception:
        from asd.models.random_init import save_random_qwen2
        import tempfile

        d = save_random_qwen2(tempfile.mkdtemp() + "/s0", hidden_size=64, num_layers=2, num_heads=4,
                              num_kv_heads=2, intermediate_size=128, seed=0)
        label = "random 0.1M Qwen2 (testbed weights absent)"
    return HFEngine(d, dtype="float32", device="cpu"), label



def _per_call(fn, n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` back-to-back calls."""
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def _interleaved(eng, prompts, fns, rounds: int = 7) -> list[list[float]]:
    """[step seconds, then one list per (fn, n) of ``fns``], ``rounds`` values each: per round one decode step at
    the prompts' batch ((generate 33 tokens − generate 1 token) / 32), then each fn's ``_per_call``."""
    P1, P33 = GenerationParams(1), GenerationParams(33)
    out: list[list[float]] = [[] for _ in range(len(fns) + 1)]
    for _ in range(rounds):
        t = time.perf_counter()
        eng.generate(prompts, P1)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        eng.generate(prompts, P33)
        out[0].append((time.perf_counter() - t - t1) / 32)
        for i, (fn, n) in enumerate(fns, 1):
            out[i].append(_per_call(fn, n))
    return out

def test_bench_decision_overhead_b16(benchmark):
    eng, label = _overhead_engine()
    B, K = 16, 4
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, eng.vocab_size, size=rng.integers(20, 60)).tolist() for _ in range(B)]
    P = GenerationParams(MAX_NEW, hidden=True, prompt_nll=True)
    res = eng.generate(prompts, P)
    table = TokenTable.empty(eng.vocab_size)
    pred = PriorPredictor()
    policy = PolicyConfig(name="dp", lam=1.0)
    plen = np.array([len(p) for p in prompts])
    cur = np.zeros(B, np.int64)
    sizes = np.array([1.0, 4.0, 20.0, 100.0])

    # A K-stage cascade (stage 0's engine in every slot: only its decision path runs here) in the state
    # Cascade._run_batch holds right after stage 0 generated: responses, statistics, the record.
    casc = Cascade([eng] * K, CascadeConfig(max_new_tokens=MAX_NEW, batch_size=B), policy, predictor=pred)
    casc.decider.sizes = sizes
    state = BatchState.start(prompts, np.arange(B), K, 0)
    for i in range(B):
        state.set_response(i, res.tokens[i], res.stats[i], None)
    assert casc.table.matrix.shape == table.matrix.shape and not casc.table.matrix.any()   # = TokenTable.empty

    def decision():
        """One decision, by the cascade's own code as _run_batch calls it: record stage 0's features
        (Cascade._features), then predictor + proxy costs + DP (Cascade._decide) for the live samples."""
        casc._features(state, np.arange(B), 0, res.prompt_nll, res.hidden, None)
        return casc._decide(state, np.arange(B), None)

    def previous(features=batch_features, costs=proxy_costs):
        """The decision path before the fused kernels (features, predictor, costs, decide as separate calls;
        without the cascade's record keeping, as this benchmark timed it until 2026-11-27)."""
        f = features(0, plen, res.prompt_nll, res.stats, res.tokens, np.zeros(B, bool), np.full(B, np.nan),
                     res.hidden, table)
        r, acc = pred.predict(f, cur, K)
        cost = costs(plen, np.array([len(t) for t in res.tokens]), acc, sizes)
        return decide(policy, cur, K, r=r, cost=cost)

    def twin():  # the same with the numpy twins of the kernels (the pre-kernel path)
        return previous(batch_features_ref, proxy_costs_ref)

    a, b, c = decision(), previous(), twin()
    for p in (b, c):   # the same plan, bit for bit
        for name in ("action", "next", "value"):
            np.testing.assert_array_equal(getattr(a, name), getattr(p, name))
    # and the same record: features (numpy twin) and the predictions' mean over draws
    np.testing.assert_array_equal(state.record["features"][:, 0], batch_features_ref(
        0, plen, res.prompt_nll, res.stats, res.tokens, np.zeros(B, bool), np.full(B, np.nan), res.hidden, table))
    r_prior = pred.predict(np.zeros((B, NUM_FEATURES)), cur, K)[0]
    np.testing.assert_array_equal(state.record["predictions"][:, 0], r_prior.mean(1))

    # one decode step at batch 16 interleaved with the decision timings, 7 rounds, medians
    steps, decs, prevs, twins = _interleaved(eng, prompts, [(decision, 2000), (previous, 2000), (twin, 500)])
    step, over, over_twin = statistics.median(steps), statistics.median(decs), statistics.median(twins)
    over_prev = statistics.median(prevs)
    benchmark.pedantic(decision, rounds=2000, iterations=1, warmup_rounds=100)
    benchmark.extra_info.update(stage0=label, load_average=list(os.getloadavg()),
                                seconds_decode_step_b16=step, seconds_decision_b16=over,
                                seconds_decision_b16_previous_path=over_prev,
                                ratio_previous_over_now=over_prev / over,
                                seconds_decision_b16_numpy_twins=over_twin,
                                ratio_twins_over_compiled=over_twin / over,
                                ratio_overhead_pct=100 * over / step,
                                ratio_overhead_pct_numpy_twins=100 * over_twin / step,
                                ratio_overhead_pct_per_sample=100 * over / B / step,
                                ratio_overhead_pct_of_stage0_run=100 * over / (step * MAX_NEW))


def _mlp_predictor():
    """The committed testbed predictor (asd/testbed/predictor), or random weights of the same shape when absent."""
    from asd.core.features import FEATURE_NAMES
    from asd.core.mlp import MLPPredictor, random_weights
    from asd.predictor.checkpoint import load_checkpoint

    try:
        w, meta = load_checkpoint("testbed:predictor")
        return MLPPredictor(w), f"testbed:predictor (hidden {meta['hidden']}, {meta['members']} members)"
    except FileNotFoundError:
        w = random_weights(np.random.default_rng(0), FEATURE_NAMES, 4, 5, (16,))
        return MLPPredictor(w), "random weights, hidden [16], 5 members (testbed:predictor absent)"


def test_bench_decision_overhead_mlp_b16(benchmark):
    """Test 2 with the learned predictor: the same cascade state and decision code, ``predictor=MLPPredictor``
    (features → MLP ensemble forward pass → proxy costs → DP), beside the prior, the forward pass alone and the
    numpy twin of the forward pass, interleaved with the s0 decode step."""
    from asd.core.mlp import mlp_forward_ref

    eng, label = _overhead_engine()
    pred, pred_label = _mlp_predictor()
    B, K = 16, 4
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, eng.vocab_size, size=rng.integers(20, 60)).tolist() for _ in range(B)]
    res = eng.generate(prompts, GenerationParams(MAX_NEW, hidden=True, prompt_nll=True))
    plen = np.array([len(p) for p in prompts])
    cur = np.zeros(B, np.int64)
    live = np.arange(B)

    def cascade(p):
        """A K-stage cascade (stage 0's engine in every slot) in the state right after stage 0 generated, and its
        decision as Cascade._run_batch makes it: record stage 0's features, then predictor + costs + DP."""
        casc = Cascade([eng] * K, CascadeConfig(max_new_tokens=MAX_NEW, batch_size=B), PolicyConfig(name="dp", lam=1.0),
                       predictor=p)
        casc.decider.sizes = np.array([1.0, 4.0, 20.0, 100.0])
        state = BatchState.start(prompts, np.arange(B), K, 0)
        for i in range(B):
            state.set_response(i, res.tokens[i], res.stats[i], None)

        def decision():
            casc._features(state, live, 0, res.prompt_nll, res.hidden, None)
            return casc._decide(state, live, None)
        return casc, state, decision

    casc, state, decision = cascade(pred)
    _, _, decision_prior = cascade(PriorPredictor())
    plan = decision()
    rec = state.record["features"]
    feats = rec[:, 0].copy()
    assert np.array_equal(state.record["prompt_len"], plen) and np.array_equal(state.stage, cur)
    r, acc = pred.predict(feats, cur, K)
    r0, acc0 = mlp_forward_ref(pred.weights, feats, cur)   # the kernel equals its twin here too
    np.testing.assert_allclose(r, r0, atol=1e-6)
    np.testing.assert_allclose(acc, acc0, atol=1e-6)
    np.testing.assert_allclose(state.record["predictions"][:, 0], r.mean(1).astype(np.float32))
    cost = proxy_costs(plen, np.array([len(t) for t in res.tokens]), acc, casc.decider.sizes)
    ref = decide(casc.policy, cur, K, r=r, cost=cost)
    for name in ("action", "next", "value"):   # the same plan as the separate calls, bit for bit
        np.testing.assert_array_equal(getattr(plan, name), getattr(ref, name))

    def forward():
        return pred.predict_rows(rec, live, cur, K)

    def twin():
        return mlp_forward_ref(pred.weights, np.nan_to_num(rec[live, cur]), cur)

    load_start = list(os.getloadavg())
    t_step, t_mlp, t_prior, t_fwd, t_twin = _interleaved(
        eng, prompts, [(decision, 2000), (decision_prior, 2000), (forward, 2000), (twin, 200)]
    )
    step, over, over_prior = (statistics.median(v) for v in (t_step, t_mlp, t_prior))
    fwd, tw = statistics.median(t_fwd), statistics.median(t_twin)
    benchmark.pedantic(decision, rounds=2000, iterations=1, warmup_rounds=100)
    bench_median, bench_min = benchmark.stats.stats.median, benchmark.stats.stats.min
    benchmark.extra_info.update(stage0=label, predictor=pred_label, load_average_start=load_start,
                                load_average=list(os.getloadavg()),
                                seconds_decode_step_b16=step, seconds_decode_step_b16_min=min(t_step),
                                seconds_decision_mlp_b16=over, seconds_decision_mlp_b16_min=min(t_mlp),
                                seconds_decision_prior_b16=over_prior, seconds_decision_prior_b16_min=min(t_prior),
                                seconds_mlp_forward_b16=fwd, seconds_mlp_forward_b16_min=min(t_fwd),
                                seconds_mlp_forward_numpy_twin_b16=tw,
                                ratio_overhead_pct=100 * over / step,
                                ratio_overhead_pct_prior=100 * over_prior / step,
                                ratio_overhead_pct_per_sample=100 * over / B / step,
                                # pytest-benchmark's own median (2,000 back-to-back decisions) over the step
                                ratio_overhead_pct_benchmark_median=100 * bench_median / step,
                                ratio_overhead_pct_benchmark_min_over_min_step=100 * bench_min / min(t_step),
                                ratio_mlp_twin_over_compiled=tw / fwd)
