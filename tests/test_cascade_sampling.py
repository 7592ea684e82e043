"""Lossless sampling: the cascade's output distribution equals the final model's own (χ² over ≥ 20,000 draws).

A vocabulary of 12 tokens and at most 3 new tokens make the final model's distribution over
responses enumerable exactly (≤ 12³ sequences, computed from the model); the same test must
detect deliberately broken acceptance rules.
"""
import copy
import math

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="torch is not installed (the engines need it)")
chisquare = pytest.importorskip("scipy.stats", reason="scipy is not installed (the chi-square tests need it)").chisquare

from asd.cascade import Cascade, CascadeConfig
from asd.core.dp import PolicyConfig
from asd.core.verify import SpeculativeSampler
from asd.models.hf import HFEngine
from asd.models.random_init import save_random_qwen2

V, EOS, MAX_NEW, DRAWS = 12, 0, 3, 20000
PROMPT = [3, 4, 5]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("sv")
    shape = dict(vocab_size=V, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                 init_std=0.6, max_position_embeddings=32)
    return [HFEngine(save_random_qwen2(root / f"s{k}", seed=40 + k, **shape), dtype="float32", device="cpu")
            for k in range(3)]


def exact_distribution(engine) -> dict[tuple, float]:
    """P(response) of the final model sampled alone at temperature 1, EOS stops, at most MAX_NEW tokens."""
    out = {}
    model = copy.deepcopy(engine.model).double()   # exact maths in float64; the engine stays as it is

    def probs(prefix):
        with torch.no_grad():
            lg = model(torch.tensor([PROMPT + list(prefix)])).logits[0, -1].double()
        return torch.softmax(lg, -1).numpy()

    def walk(prefix, p):
        if len(prefix) == MAX_NEW or (prefix and prefix[-1] == EOS):
            out[tuple(prefix)] = p
            return
        pr = probs(prefix)
        for t in range(V):
            walk(prefix + [t], p * pr[t])

    walk([], 1.0)
    assert math.isclose(sum(out.values()), 1.0, rel_tol=1e-9)
    return out


def chi2_pvalue(counts: dict[tuple, int], exact: dict[tuple, float]) -> float:
    n = sum(counts.values())
    assert set(counts) <= set(exact)
    keys = sorted(exact, key=lambda k: -exact[k])
    big = [k for k in keys if exact[k] * n >= 5]
    small = [k for k in keys if exact[k] * n < 5]
    obs = [counts.get(k, 0) for k in big] + [sum(counts.get(k, 0) for k in small)]
    exp = [exact[k] * n for k in big] + [sum(exact[k] for k in small) * n]
    return float(chisquare(obs, exp).pvalue)


def cascade_counts(engines, policy, gamma=0, sampler=None, seed=0):
    c = Cascade(engines, CascadeConfig(max_new_tokens=MAX_NEW, temperature=1.0, gamma=gamma, batch_size=10000,
                                       seed=seed), policy, eos_token_ids=(EOS,), sampler=sampler)
    rec = c.run([PROMPT] * DRAWS)
    counts: dict[tuple, int] = {}
    for t in rec["tokens"]:
        counts[tuple(t.tolist())] = counts.get(tuple(t.tolist()), 0) + 1
    return counts, rec


class ResampleFromP(SpeculativeSampler):
    def residual(self, p, q):      # broken: ignores what the draft already covered
        return p.astype(np.float64)


class NoMin(SpeculativeSampler):
    def accept_prob(self, p_x, q_x):  # broken: accepts with q/p instead of p/q
        return min(1.0, q_x / max(p_x, 1e-300))


@pytest.fixture(scope="module")
def exact(engines):
    return exact_distribution(engines[-1])


@pytest.mark.slow
def test_final_model_alone_matches_exact(engines, exact):
    """Sanity of the harness: the engine's own sampling passes the same test."""
    counts, rec = cascade_counts(engines, PolicyConfig(name="single", stage=-1))
    assert chi2_pvalue(counts, exact) > 0.01


@pytest.mark.parametrize("policy,gamma", [
    (PolicyConfig(name="fixed_depth", stage=-1), 0),     # 0 → 1 → 2: kept distributions chain over two hops
    pytest.param(PolicyConfig(name="dp", lam=math.inf), 2, marks=pytest.mark.slow),  # regeneration drafted, γ = 2
    pytest.param(PolicyConfig(name="speculative"), 2, marks=pytest.mark.slow),       # two-model speculative
])
def test_cascade_sampling_is_lossless(engines, exact, policy, gamma):
    counts, rec = cascade_counts(engines, policy, gamma=gamma, seed=1)
    assert (rec["final_stage"] == 2).all()
    # rejections really happened, and so did acceptances
    acc, dl = rec["accepted_len"][:, 2], rec["draft_len"][:, 0]
    assert 0.05 < acc.sum() / max(dl.sum(), 1) < 0.95
    assert chi2_pvalue(counts, exact) > 0.01


@pytest.mark.parametrize("sampler", [ResampleFromP(), pytest.param(NoMin(), marks=pytest.mark.slow)],
                         ids=["resample-from-p", "accept-q-over-p"])
def test_broken_acceptance_rule_is_detected(engines, exact, sampler):
    counts, _ = cascade_counts(engines, PolicyConfig(name="fixed_depth", stage=-1), sampler=sampler, seed=2)
    assert chi2_pvalue(counts, exact) < 0.01
