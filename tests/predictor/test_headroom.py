"""The label-informed predictor of the headroom analysis (asd.predictor.headroom): calibrated, sharper with μ."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asd.core.predictor import PriorPredictor
from asd.predictor import metrics
from asd.predictor.headroom import (
    InformedPredictor,
    evidence,
    fit_logistic,
    root_oracle_pick,
    sharpen,
    start_stage_routes,
)

ROOT = Path(__file__).resolve().parents[2]


def test_evidence_shape_and_checks():
    y = np.random.default_rng(1).random((50, 4)) < 0.5
    llr = evidence(y, 2.0, seed=3)
    assert llr.shape == (50, 4) and (llr[:, -1] == 0).all() and (llr[:, :-1] != 0).all()
    np.testing.assert_array_equal(evidence(y, 2.0, seed=3), llr)  # seeded
    assert not np.array_equal(evidence(y, 2.0, seed=4), llr)
    assert (evidence(y, 0.0, seed=3) == 0).all()  # μ = 0: the served predictor
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="mu"):
            evidence(y, bad, seed=0)
    with pytest.raises(ValueError, match="outcome"):
        evidence(y[:, 0], 1.0, seed=0)


def test_sharpened_predictions_stay_calibrated_and_discriminate_more():
    """A calibrated constant prior p on labels ~ Bernoulli(p): after the evidence, each bin of r̂' holds the
    label rate r̂' predicts (Bayes' rule with the true likelihood ratio), and the AUC is that of the evidence
    alone, Φ(μ/√2), rising with μ."""
    rng = np.random.default_rng(0)
    n, p = 200_000, 0.4
    y = np.zeros((n, 2), bool)
    y[:, 0] = rng.random(n) < p
    y[:, 1] = True
    r = np.broadcast_to(np.array([p, 1.0]), (n, 1, 2))
    aucs = []
    for mu in (0.5, 1.5, 3.0):
        q = sharpen(r, evidence(y, mu, seed=7))[:, 0, 0]
        assert metrics.ece(q, y[:, 0]) < 0.01
        a = metrics.auc(q, y[:, 0])
        assert abs(a - 0.5 * math.erfc(-mu / 2)) < 0.005  # Φ(μ/√2) = ½ erfc(−μ/2)
        aucs.append(a)
    assert aucs[0] < aucs[1] < aucs[2]


def test_sharpen_identity_and_shapes():
    r = np.random.default_rng(2).uniform(0.01, 0.99, (6, 3, 4))
    r[:, :, -1] = 1.0
    np.testing.assert_allclose(sharpen(r, np.zeros((6, 4))), r, rtol=1e-9)
    with pytest.raises(ValueError, match=r"\[B, S, K\]"):
        sharpen(r, np.zeros((6, 3)))


def test_informed_predictor_adds_each_rows_own_evidence():
    K = 3
    base = PriorPredictor(r_prior=(0.5, 0.5, 1.0))
    llr = np.array([[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pred = InformedPredictor(base, llr)
    record = np.zeros((3, K, 5), np.float32)
    r, acc = pred.predict_rows(record, np.array([2, 0]), np.array([0, 1]), K)
    assert r.shape == (2, 1, K) and acc.shape == (2, K, K)
    np.testing.assert_allclose(r[:, 0], [[0.5, 0.5, 1.0], [1 / (1 + math.exp(-2)), 0.5, 1.0]])
    with pytest.raises(ValueError, match="predict_rows"):
        pred.predict(record[:, 0], np.zeros(3, np.int64), K)
    with pytest.raises(ValueError, match="llr has shape"):
        pred.predict_rows(np.zeros((4, K, 5), np.float32), np.array([0]), np.array([0]), K)


def test_script_refuses_bad_arguments(tmp_path):
    """A negative μ or λ is refused before any file is read or written."""
    out = tmp_path / "r.json"
    for extra in (["--mus", "-1"], ["--lams", "nan"], ["--figure", str(tmp_path / "r.png")]):
        p = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts/predictor_headroom.py"),
                "sweep",
                "--data",
                "missing.h5",
                "--out",
                str(out),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2 and (extra[0] in p.stderr or "--out" in p.stderr), p.stderr
        assert not out.exists()


def test_start_stage_routes_price_the_start_stage_and_the_final_stages_check():
    K = 3
    gen = np.array([[1.0, 2.0, 10.0], [1.0, 4.0, 10.0], [1.0, 3.0, 10.0]])  # [N, K] s
    ver = np.zeros((3, K, K))
    ver[:, 1, 2] = [5.0, 6.0, 7.0]
    dl = np.full((3, K), 8)
    acc = np.full((3, K, K), -1.0)
    acc[:, 1, 2] = [8, 4, 0]  # all, half, none of y_1 accepted by the final stage
    r = np.array([0.9, 0.5, 0.2])
    fin, cost = start_stage_routes(r, 0.6, gen, ver, dl, acc, m=1)
    np.testing.assert_array_equal(fin, [1, 2, 2])
    np.testing.assert_allclose(cost, [2.0, 4.0 + 6.0 + 0.5 * 10.0, 3.0 + 7.0 + 10.0])
    fin, cost = start_stage_routes(r, 0.0, gen, ver, dl, acc, m=1)  # τ = 0: stop at the start stage
    np.testing.assert_array_equal(fin, [1, 1, 1])
    np.testing.assert_allclose(cost, gen[:, 1])
    for bad, match in (({"m": 2}, "start stage"), ({"tau": 1.5}, "tau"), ({"r_start": r[:2]}, "r_start")):
        kw = {"r_start": r, "tau": 0.5, "gen_s": gen, "verify_s": ver, "draft_len": dl, "accepted_len": acc, "m": 1}
        with pytest.raises(ValueError, match=match):
            start_stage_routes(**{**kw, **bad})


def _full_traces(path: Path, N: int = 40, K: int = 4, samples: int | None = None, rows=None) -> dict:
    """A small synthetic full-trace file: stage m agrees with the final stage on a random subset, and an
    agreeing stage scores what the final stage scores. ``samples``: written as a ``build`` file of that many
    samples per (seed, dataset), so row n has level LEVELS[(n % samples) % 5]; ``rows``: keep only those rows."""
    from asd.core.features import FEATURE_NAMES
    from asd.evaluation import fulltrace

    rng = np.random.default_rng(5)
    agree = rng.random((N, K)) < np.array([0.4, 0.6, 0.8, 1.0])
    final = (rng.random(N) < 0.9).astype(np.float64)
    score = np.where(agree, final[:, None], 1.0 - final[:, None])
    draft = rng.integers(4, 12, (N, K))
    accepted = np.full((N, K, K), -1)
    for j in range(K):
        for m in range(j + 1, K):
            accepted[:, j, m] = rng.integers(0, draft[:, j] + 1)
    data = {
        "sample_id": np.arange(N), "task": np.array(["t"] * N, dtype=object), "prompt_len": np.full(N, 9),
        "features": rng.random((N, K, len(FEATURE_NAMES))).astype(np.float32), "draft_len": draft,
        "accepted_len": accepted, "agree_final": agree, "score": score,
        "gen_latency_s": np.tile([0.01, 0.02, 0.05, 0.2], (N, 1)) * rng.uniform(0.8, 1.2, (N, K)),
        "verify_latency_s": rng.uniform(0.01, 0.05, (N, K, K)),
        **{f"tokens_{k}": [np.arange(draft[i, k]) for i in range(N)] for k in range(K)},
    }
    if rows is not None:
        data = {k: [v[i] for i in rows] if isinstance(v, list) else v[rows] for k, v in data.items()}
        data["sample_id"] = np.arange(len(rows))
    names = [f"testbed:s{k}" for k in range(K)]  # the committed predictor's stages
    attrs = {"feature_names": list(FEATURE_NAMES), "stage_names": names}
    if samples is not None:
        attrs["eval_prompts"] = {"samples": samples}
    fulltrace.write(path, data, attrs)
    return data


def test_start_script_end_to_end(tmp_path):
    data = _full_traces(tmp_path / "full.h5")
    out, fig = tmp_path / "start.json", tmp_path / "where.png"
    cmd = [sys.executable, str(ROOT / "scripts/predictor_headroom.py"), "start", "--data", str(tmp_path / "full.h5"),
           "--starts", "1", "2", "--taus", "0", "1", "--resamples", "50", "--out", str(out), "--figure", str(fig)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert rec["schema_version"] == 1 and rec["provenance"]["git_revision"] and rec["data"]["prompts"] == 40
    gen, score = data["gen_latency_s"], data["score"]
    by = {(r["start"], r["tau"]): r for r in rec["rows"]}
    for m in (1, 2):
        stop = by[(m, 0.0)]  # nothing escalates: stage m alone
        assert stop["final_stage_hist"][m] == 40 and stop["accuracy"] == pytest.approx(score[:, m].mean())
        assert stop["speedup"] == pytest.approx(gen[:, 3].sum() / gen[:, m].sum())
        assert by[(m, 1.0)]["accuracy"] == pytest.approx(score[:, 3].mean())  # everything checked by the final
        oracle = next(o for o in rec["oracles"] if o["start"] == m)
        assert oracle["accuracy"] == pytest.approx(score[:, 3].mean()) and oracle["loss_points"] == pytest.approx(0)
        assert oracle["final_stage_hist"][3] == int((~data["agree_final"][:, m]).sum())
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(fig.with_suffix(".json").read_text())["rows"]
    root = rec["root_oracle"]["rows"]
    assert {(r["lam"], r["tau"]) for r in root} == {(lam, tau) for lam in (0.3, 0.5, 1.0) for tau in (0.85, 0.93)}
    for r in root:  # the oracle takes the better route per prompt: never below the start stage's own accuracy
        alone = start_stage_routes(np.ones(40), 0.0, gen, data["verify_latency_s"], data["draft_len"],
                                   data["accepted_len"].astype(float), 2)[0]
        assert r["accuracy"] >= score[np.arange(40), alone].mean() - 1e-12 and 0 <= r["picks_start"] <= 1
    assert 0.0 <= rec["prompt_only_stage0_auc"]["auc"] <= 1.0


def test_start_script_refuses_bad_arguments(tmp_path):
    """A τ outside [0, 1], no sweep record, no trace file, a start stage past K − 2: one line, exit 2, nothing
    written."""
    out = tmp_path / "r.json"
    _full_traces(tmp_path / "full.h5")
    for extra in (["--taus", "1.5"], ["--root-taus", "-0.1"], ["--root-lams", "-1"],
                  ["--compare", str(tmp_path / "nothing.json")], ["--data", "missing.h5"],
                  ["--data", str(tmp_path / "full.h5"), "--starts", "3"], ["--figure", str(tmp_path / "r.png")]):
        cmd = [sys.executable, str(ROOT / "scripts/predictor_headroom.py"), "start", "--data", "missing.h5",
               "--out", str(out), *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        said = extra[-2] if extra[-2].startswith("--") else extra[-1]
        assert p.returncode == 2 and (said in p.stderr or "missing.h5" in p.stderr or "--out" in p.stderr), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()


def test_root_oracle_takes_the_better_route_and_the_cheaper_of_equals():
    sa, ca = np.array([1.0, 0.0, 1.0, 0.0, 0.5]), np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    sb, cb = np.array([0.0, 1.0, 1.0, 0.0, 0.5]), np.array([0.5, 3.0, 0.5, 2.0, 1.0])
    np.testing.assert_array_equal(root_oracle_pick(sa, ca, sb, cb), [False, True, True, False, False])


def test_fit_logistic_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    X = np.concatenate([np.ones((40_000, 1)), rng.normal(size=(40_000, 2))], 1)
    beta = np.array([0.3, 1.5, -2.0])
    y = (rng.random(40_000) < 1 / (1 + np.exp(-(X @ beta)))).astype(np.float64)
    np.testing.assert_allclose(fit_logistic(X, y), beta, atol=0.06)


def test_labels_script_compares_the_two_targets(tmp_path):
    """``labels``: the per-stage rates of agree_final and no_worse, and each oracle replayed; an oracle that knows
    no_worse never loses accuracy against the final stage and reaches it no more often than the agreement one."""
    data = _full_traces(tmp_path / "full.h5")
    out = tmp_path / "labels.json"
    cmd = [sys.executable, str(ROOT / "scripts/predictor_headroom.py"), "labels", "--data", str(tmp_path / "full.h5"),
           "--lams", "1", "50", "--resamples", "50", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    agree, score = data["agree_final"], data["score"]
    no_worse = score >= score[:, [3]]
    assert (no_worse != agree).any()  # the synthetic final stage is wrong on some prompts
    np.testing.assert_allclose(rec["rates"]["agree_final"]["all"], agree.mean(0))
    np.testing.assert_allclose(rec["rates"]["no_worse"]["all"], no_worse.mean(0))
    rows = {(r["oracle_on"], r["lam"]): r for r in rec["rows"]}
    assert set(rows) == {(n, lam) for n in ("agree_final", "no_worse") for lam in (1.0, 50.0)}
    final_acc = score[:, 3].mean()
    assert rows[("agree_final", 50.0)]["accuracy"] == pytest.approx(final_acc)
    assert rows[("no_worse", 50.0)]["accuracy"] >= final_acc
    assert rows[("no_worse", 50.0)]["final_stage_hist"][3] <= rows[("agree_final", 50.0)]["final_stage_hist"][3]
    assert rec["schema_version"] == 1 and rec["provenance"]["git_revision"] and rec["data"]["prompts"] == 40
    bad = subprocess.run([*cmd[:-2], "--lams", "-1", "--out", str(tmp_path / "bad.json")], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--lams" in bad.stderr and not (tmp_path / "bad.json").exists()
    # the ranking: the served r̂_m's AUC on each target, per stage m < K - 1
    from asd.predictor.checkpoint import build_predictor
    from asd.predictor.config import PredictorConfig

    stages = [f"testbed:s{k}" for k in range(4)]
    served = build_predictor(PredictorConfig(kind="mlp", checkpoint="testbed:predictor"), stages)
    ranking = {(r["predictor"], r["stage"]): r for r in rec["ranking"]}
    assert set(ranking) == {("served", m) for m in range(3)}
    for m in range(3):
        r = served.predict(data["features"][:, m].astype(np.float64), np.full(40, m), 4)[0].mean(1)[:, m]
        assert ranking[("served", m)]["auc"]["agree_final"] == pytest.approx(metrics.auc(r, agree[:, m]))
        assert ranking[("served", m)]["auc"]["no_worse"] == pytest.approx(metrics.auc(r, no_worse[:, m]))
        assert ranking[("served", m)]["mean_r"] == pytest.approx(r.mean())
    # a second predictor: its rows and the logit mean's (the same checkpoint twice: all three rank alike)
    two = subprocess.run([*cmd[:-2], "--other", "testbed:predictor", "--out", str(tmp_path / "two.json")],
                         capture_output=True, text=True, cwd=ROOT)
    assert two.returncode == 0, two.stderr
    rec2 = json.loads((tmp_path / "two.json").read_text())
    assert rec2["other_checkpoint"] == "testbed:predictor" and rec["other_checkpoint"] is None
    rows2 = {(r["predictor"], r["stage"]): r for r in rec2["ranking"]}
    assert set(rows2) == {(n, m) for n in ("served", "other", "logit mean") for m in range(3)}
    for m in range(3):
        assert rows2[("other", m)]["auc"] == rows2[("served", m)]["auc"] == ranking[("served", m)]["auc"]
        assert rows2[("logit mean", m)]["mean_r"] == pytest.approx(rows2[("served", m)]["mean_r"])
    gone = subprocess.run([*cmd[:-2], "--other", str(tmp_path / "nope"), "--out", str(tmp_path / "gone.json")],
                          capture_output=True, text=True, cwd=ROOT)
    assert gone.returncode == 2 and "--other" in gone.stderr and not (tmp_path / "gone.json").exists()


def test_levels_script_prices_each_set_of_levels(tmp_path):
    """``levels``: each set of difficulty levels priced on its own prompts — the rates, λ = 0 (everything stops at
    stage 0) and the lossless cascade (the final stage's output) by hand, and the replay of a set equal to the
    replay of a file holding only that set's prompts; bad sets and files without levels are refused."""
    data = _full_traces(tmp_path / "full.h5", samples=10)
    level = np.array([(n % 10) % 5 + 1 for n in range(40)])  # asd.evaluation.prompts.testbed_level
    out, fig = tmp_path / "levels.json", tmp_path / "frontier.png"
    cmd = [sys.executable, str(ROOT / "scripts/predictor_headroom.py"), "levels", "--data", str(tmp_path / "full.h5"),
           "--level-sets", "1-5", "1,2", "--lams", "0", "1", "--resamples", "50", "--out", str(out),
           "--figure", str(fig)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert rec["schema_version"] == 1 and rec["provenance"]["git_revision"] and rec["target"]["speedup"] == 3.0
    gen, score, agree = data["gen_latency_s"], data["score"], data["agree_final"]
    assert [e["levels"] for e in rec["sets"]] == [[1, 2, 3, 4, 5], [1, 2]]
    for e in rec["sets"]:
        sel = np.isin(level, e["levels"])
        assert e["prompts"] == sel.sum()
        np.testing.assert_allclose(e["agree_with_final"], agree[sel].mean(0))
        np.testing.assert_allclose(e["accuracy"], score[sel].mean(0))
        dp = {r["lam"]: r for r in e["dp"]}
        assert set(dp) == {0.0, 1.0}
        assert dp[0.0]["final_stage_hist"][0] == sel.sum() and dp[0.0]["accuracy"] == pytest.approx(score[sel, 0].mean())
        assert dp[0.0]["speedup"] == pytest.approx(gen[sel, 3].sum() / gen[sel, 0].sum())
        assert e["lossless"]["accuracy"] == pytest.approx(score[sel, 3].mean()) and e["lossless"]["loss_points"] == 0
        assert set(e["target_at_lam1"]) == {"speedup", "over_lossless", "loss", "met"}
        best = e["fastest_dp_within_bound"]
        assert best is None or (best["loss_points"] <= 1.0 and best["loss_ci95"][1] <= 1.5)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(fig.with_suffix(".json").read_text())["sets"]
    # the set "1,2" replayed from the whole file = the file of only its prompts replayed whole (level 1 each)
    only = np.flatnonzero(np.isin(level, [1, 2]))
    _full_traces(tmp_path / "only.h5", samples=1, rows=only)
    one = subprocess.run([*cmd[:4], str(tmp_path / "only.h5"), "--level-sets", "1", "--lams", "0", "1",
                          "--resamples", "50", "--out", str(tmp_path / "only.json")], capture_output=True, text=True,
                         cwd=ROOT)
    assert one.returncode == 0, one.stderr
    whole = json.loads((tmp_path / "only.json").read_text())["sets"][0]
    for key in ("dp", "lossless", "oracle"):
        assert whole[key] == rec["sets"][1][key]
    # refused before anything is written: a level outside 1–5, a negative λ, a file whose levels are unknown
    _full_traces(tmp_path / "plain.h5")
    for extra, said in ((["--level-sets", "0-2"], "--level-sets"), (["--level-sets", "a"], "--level-sets"),
                        (["--lams", "-1"], "--lams"), (["--data", str(tmp_path / "plain.h5")], "eval_prompts")):
        bad = tmp_path / "bad.json"
        q = subprocess.run([*cmd[:-4], *extra, "--out", str(bad)], capture_output=True, text=True, cwd=ROOT)
        assert q.returncode == 2 and said in q.stderr and len(q.stderr.strip().splitlines()) == 1, q.stderr
        assert not bad.exists()
