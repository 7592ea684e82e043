"""Replay against online: the same prompts give the same decisions and outputs (greedy, the testbed).

The full per-stage traces are built here by running every stage through the same engines
(asd.evaluation.fulltrace.build); the cascade then runs online under each policy, and the replay of the
same policy on the file must take the same decisions, run the same stages and return the same tokens.
"""
import math

import numpy as np
import pytest

from asd.cascade import Cascade, CascadeConfig
from asd.core.decision import Decider
from asd.core.dp import PolicyConfig
from asd.core.features import FEATURE_NAMES
from asd.costs_io import load_cost_model
from asd.core.predictor import PriorPredictor
from asd.evaluation import fulltrace
from asd.evaluation.prompts import draw_testbed
from asd.evaluation.replay import simulate, stage_params

from .helpers import ROOT

N, BATCH, MAX_NEW = 6, 3, 24
AP = FEATURE_NAMES.index("accept_ratio_prev")
HIDDEN = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("hidden_")]
MAXPROB = FEATURE_NAMES.index("maxprob_mean")
ALL = list(range(len(FEATURE_NAMES)))
STABLE = [c for c in ALL if c not in HIDDEN and FEATURE_NAMES[c] != "mean_logprob"]


class ConfidencePredictor:
    """Reads the features: r̂_m = stage k's mean top-1 probability, raised by 0.08 per stage above k."""

    num_draws = 1

    def predict(self, features, stage, K):
        B = features.shape[0]
        base = np.asarray(features)[:, MAXPROB].astype(np.float64)
        r = np.clip(base[:, None] + 0.08 * (np.arange(K)[None, :] - stage[:, None]), 0, 1)
        r[:, -1] = 1.0
        return r[:, None, :], np.full((B, K, K), 0.6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from asd.models.loading import load_engines, load_tokenizer
    from asd.run_config import load_section
    from asd.testbed import scoring
    from asd.testbed import tokenizer as tk

    import torch

    torch.set_num_threads(1)  # a loaded 2-core machine: no OpenMP spinning
    hier = load_section(ROOT / "configs/testbed.yaml", "hierarchy")
    engines, tok = load_engines(hier), load_tokenizer(hier)
    ids = np.arange(N, dtype=np.int64)
    exs = draw_testbed("gsm8k", 0, ids[:3]) + draw_testbed("mmlu", 0, ids[3:])
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in exs]
    data, attrs = fulltrace.build(
        engines, tok, prompts, ids, [e.task for e in exs],
        lambda k, texts: np.asarray(scoring.score(exs, texts), np.float32),
        MAX_NEW, (tk.EOS_ID,), [s.model for s in hier.stages], batch_size=BATCH,
    )
    path = fulltrace.write(tmp_path_factory.mktemp("full") / "full.h5", data, attrs)
    ft = fulltrace.read(path)
    return dict(hier=hier, engines=engines, tok=tok, ids=ids, prompts=prompts, ft=ft, eos=(tk.EOS_ID,), exs=exs)


def test_full_traces_are_consistent(world):
    ft = world["ft"]
    K = ft.K
    assert ft.attrs["route_length_mismatches"] == 0  # |y_k| alone == |y_k| on the adjacent route
    d = ft.data
    assert (d["agree_final"][:, K - 1] == 1).all()
    for m in range(1, K):
        for j in range(m):  # a_{j,m} ≤ |y_j|, and a_{k-1,k} is what the route's features saw
            assert (d["accepted_len"][:, j, m] <= d["draft_len"][:, j]).all()
        np.testing.assert_allclose(d["features"][:, m, AP], d["accept_frac"][:, m - 1, m], rtol=1e-6)
    assert (d["accepted_len"][:, 1, 0] == -1).all() and np.isnan(d["verify_latency_s"][:, 2, 1]).all()
    agree = [np.array_equal(a, b) for a, b in zip(ft.tokens(0), ft.tokens(K - 1))]
    assert d["agree_final"][:, 0].astype(bool).tolist() == agree
    assert len(ft) == N and ft.data["task"].tolist() == [e.task for e in world["exs"]]


CASES = [
    ("dp λ=0.3", PolicyConfig(lam=0.3), "prior", False),
    ("dp λ=1", PolicyConfig(lam=1.0), "prior", False),
    ("dp λ=5 measured costs", PolicyConfig(lam=5.0), "prior", True),
    ("lossless", PolicyConfig(lam=math.inf), "prior", False),
    ("dp λ=2 no skips", PolicyConfig(lam=2.0, skips=False), "prior", False),
    ("dp λ=2 reads features", PolicyConfig(lam=2.0, kappa=0.5), "features", True),
    ("threshold", PolicyConfig(name="threshold", tau=0.75), "features", False),
    ("confidence", PolicyConfig(name="confidence", tau=0.8), "prior", False),
    ("single s1", PolicyConfig(name="single", stage=1), "prior", False),
    ("fixed depth 2", PolicyConfig(name="fixed_depth", stage=2), "prior", False),
    ("speculative", PolicyConfig(name="speculative"), "prior", False),
    ("oracle λ=1", PolicyConfig(name="oracle", lam=1.0), "prior", True),
    ("dp λ=1 from s2", PolicyConfig(lam=1.0, start=2), "features", True),
    ("dp λ=0.3 from s1", PolicyConfig(lam=0.3, start=1), "prior", False),
]


@pytest.mark.parametrize("name, policy, pred, measured", CASES, ids=[c[0] for c in CASES])
def test_replay_agrees_with_online(world, name, policy, pred, measured):
    ft, K = world["ft"], world["ft"].K
    predictor = ConfidencePredictor() if pred == "features" else PriorPredictor(r_prior=(0.6, 0.75, 0.9, 1.0))
    cost = load_cost_model(ROOT / "configs/costs/testbed-cpu.json") if measured else None
    outcome = ft.data["agree_final"].astype(bool) if policy.name == "oracle" else None
    cfg = CascadeConfig(max_new_tokens=MAX_NEW, batch_size=BATCH, gamma=4 if policy.name == "speculative" else 0)
    casc = Cascade(world["engines"], cfg, policy, predictor=predictor, cost_model=cost, tokenizer=world["tok"],
                   eos_token_ids=world["eos"])
    online = casc.run(world["prompts"], sample_ids=world["ids"], outcome=outcome)
    sizes = stage_params(world["hier"], ft)
    np.testing.assert_array_equal(sizes, casc.sizes)  # the proxy costs price the same stages
    decider = Decider(policy, K, sizes, predictor, cost)
    for s in range(0, N, BATCH):
        rows = np.arange(s, s + BATCH)
        rep = simulate(ft, rows, world["ids"][rows], decider, None if outcome is None else outcome[rows])
        # speculative: draft_len[0] / accepted_len count token-level drafts online; replay has |y_0| and a_{0,K-1}
        same = ("decision", "ran", "final_stage") + (() if policy.name == "speculative" else ("draft_len", "accepted_len"))
        for field in same:
            np.testing.assert_array_equal(rep[field], online[field][rows], err_msg=f"{name}: {field}")
        for a, b in zip(rep["tokens"], online["tokens"][rows]):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: tokens")
        # features: equal where the route into the stage was adjacent (as in the file); after a skip, or at a
        # first stage above 0, the route-dependent columns (pooled hidden state over prompt + the verified
        # draft, mean log-probability with the rejected draft token's) are the adjacent route's
        dec = online["decision"][rows]
        # (speculative: the final stage's statistics come from the token-level drafting loop: not compared)
        for b in range(BATCH if policy.name != "speculative" else 0):
            for m in np.flatnonzero(online["ran"][rows][b]):
                came = np.flatnonzero(dec[b, :m] == m)  # the stage it came from (none: it generated first)
                adjacent = m == 0 or (came.size > 0 and came[0] == m - 1)
                cols = ALL if adjacent else STABLE
                np.testing.assert_allclose(rep["features"][b, m, cols], online["features"][rows][b, m, cols],
                                           rtol=1e-4, atol=1e-4, err_msg=f"{name}: features of stage {m}")
        np.testing.assert_allclose(rep["predictions"], online["predictions"][rows], rtol=1e-4, atol=1e-5,
                                   err_msg=f"{name}: predictions")
        assert (rep["batch_id"] == s).all() and (rep["batch_latency_s"] > 0).all()
    if name == "lossless":  # every sample ends at the final stage with its own output
        assert (online["final_stage"] == K - 1).all()
    if policy.start:  # no stage below the start runs; the start stage drafts for every sample
        assert not online["ran"][:, : policy.start].any() and online["ran"][:, policy.start].all()


def test_replay_of_a_pooled_window_agrees_with_online(world):
    """One window of the N prompts in calls of 2 (``cascade.pool_size``): the replay makes the online run's
    decisions and outputs, cuts each stage's members into calls of 2 in the same order, and its estimated
    window time is the same sum as with one call per stage."""
    ft, K = world["ft"], world["ft"].K
    policy, predictor = PolicyConfig(lam=1.0), ConfidencePredictor()
    cost = load_cost_model(ROOT / "configs/costs/testbed-cpu.json")
    casc = Cascade(world["engines"], CascadeConfig(max_new_tokens=MAX_NEW, batch_size=2, pool_size=N), policy,
                   predictor=predictor, cost_model=cost, tokenizer=world["tok"], eos_token_ids=world["eos"])
    online = casc.run(world["prompts"], sample_ids=world["ids"])
    decider = Decider(policy, K, stage_params(world["hier"], ft), predictor, cost)
    rows = np.arange(N)
    rep = simulate(ft, rows, world["ids"], decider, None, batch_size=2)
    whole = simulate(ft, rows, world["ids"], decider, None)
    for field in ("decision", "ran", "final_stage", "draft_len", "accepted_len"):
        np.testing.assert_array_equal(rep[field], online[field], err_msg=field)
    for k in range(K):
        members = np.flatnonzero(online["ran"][:, k])
        if members.size == 0:
            continue
        for got in (rep, online):   # calls: runs of members sharing one latency value, 2 at a time in order
            lat = got["latency_s"][members, k]
            starts = [0] + [j for j in range(1, members.size) if lat[j] != lat[j - 1]]
            assert starts == list(range(0, members.size, 2)), (k, starts)
    np.testing.assert_allclose(rep["batch_latency_s"], whole["batch_latency_s"], rtol=1e-12)


def test_replay_refuses_files_that_do_not_fit(world, tmp_path):
    from asd.evaluation.replay import cell_rows, check_file
    from asd.models.config import HierarchyConfig, StageConfig
    from asd.traces import TraceWriter

    ft = world["ft"]
    three = HierarchyConfig(name="t", stages=[StageConfig(name=f"s{k}", model=f"testbed:s{k}") for k in range(3)])
    with pytest.raises(ValueError, match="4 stages; the hierarchy has K=3"):
        check_file(ft, three)
    other = HierarchyConfig(name="t", stages=[StageConfig(name=f"s{k}", model=f"other:s{k}") for k in range(4)])
    with pytest.raises(ValueError, match="traces of stages .*the hierarchy's stages are"):
        check_file(ft, other)
    with pytest.raises(ValueError, match="3 rows of task 'gsm8k'; the grid asks for 5 samples"):
        cell_rows(ft, "gsm8k", "testbed/gsm8k", 0, 5)
    with TraceWriter(tmp_path / "cascade.h5", 4, FEATURE_NAMES) as w:  # a cascade trace file is not full traces
        w.append({"sample_id": np.arange(2)})
    with pytest.raises(ValueError, match="replay reads full per-stage traces"):
        fulltrace.read(tmp_path / "cascade.h5")
