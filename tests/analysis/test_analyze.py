"""asd.analysis.analyze on synthetic run folders: every number checked against the traces read directly."""

import json
import math

import numpy as np
import pytest

from asd.analysis.analyze import ALL, AnalysisConfig, analyze, format_table, headline
from asd.analysis.run import load_run
from asd.analysis.stats import holm, mcnemar_exact
from asd.traces import read_traces
from tests.analysis.synth import TRUE_COSTS, write_run

R = 600  # resamples: enough for the checks, cheap on a loaded machine


@pytest.fixture(scope="module")
def rec(small_run):
    return analyze(load_run(small_run), AnalysisConfig(resamples=R))


def _cell(root, ds, policy_part, seed):
    return read_traces(root / "cells" / f"{ds.replace('/', '-')}--{policy_part}--seed{seed}" / "traces.h5")


def _row(rec, group, label):
    return next(r for r in rec["groups"][group]["rows"] if r["label"] == label)


def _wall(tr):
    """Wall-clock of a cell: every batch counted once."""
    _, first = np.unique(tr.data["batch_id"], return_index=True)
    return tr.data["batch_latency_s"][first].sum()


def test_record_shape_and_valid_json(rec):
    assert set(rec["groups"]) == {"testbed/gsm8k", "testbed/mmlu", ALL}
    assert rec["seeds"] == [0, 1, 2] and rec["K"] == 4 and rec["mode"] == "online"
    assert rec["latency_method"] == ["batch_share"]
    json.dumps(rec, allow_nan=False)  # inf as "inf", NaN as null
    labels = [r["label"] for r in rec["groups"][ALL]["rows"]]
    for want in ("dp λ=1", "lossless (λ=∞)", "single s3", "fixed depth 2", "threshold τ=0.7", "confidence τ=0.7",
                 "speculative s0→s3", "random λ=1", "oracle λ=1 (upper bound)", "dp λ=1 [no_skips]"):
        assert want in labels, want


def test_accuracy_is_the_mean_over_seeds_of_the_traces_scores(rec, small_run):
    r = _row(rec, "testbed/gsm8k", "dp λ=1")
    per_seed = [float(_cell(small_run, "testbed/gsm8k", "dp-lam1", s).data["score"].mean()) for s in range(3)]
    assert r["accuracy"]["per_seed"] == pytest.approx(dict(zip("012", per_seed)))
    assert r["accuracy"]["mean"] == pytest.approx(np.mean(per_seed))
    lo, hi = r["accuracy"]["ci_samples"]
    assert lo <= r["accuracy"]["mean"] <= hi and 0 < hi - lo < 0.5
    slo, shi = r["accuracy"]["ci_seeds"]
    assert min(per_seed) <= slo <= shi <= max(per_seed)
    # the mixed group pools both datasets' samples, per seed
    m = _row(rec, ALL, "dp λ=1")
    pooled = [
        np.concatenate([_cell(small_run, d, "dp-lam1", s).data["score"] for d in ("testbed/gsm8k", "testbed/mmlu")])
        for s in range(3)
    ]
    assert m["accuracy"]["mean"] == pytest.approx(np.mean([p.mean() for p in pooled]))
    assert m["samples_per_seed"] == 48


def test_speedup_is_a_ratio_of_wall_clock_on_the_same_prompts(rec, small_run):
    r = _row(rec, "testbed/mmlu", "single s0")
    want = [_wall(_cell(small_run, "testbed/mmlu", "single-s3", s)) / _wall(_cell(small_run, "testbed/mmlu",
                                                                                  "single-s0", s)) for s in range(3)]
    assert r["speedup"]["s3"]["mean"] == pytest.approx(np.mean(want))
    lo, hi = r["speedup"]["s3"]["ci_samples"]
    assert lo <= np.mean(want) <= hi
    f = _row(rec, "testbed/mmlu", "single s3")
    assert f["speedup"]["s3"]["mean"] == pytest.approx(1.0) and f["speedup"]["s3"]["ci_samples"] == pytest.approx([1, 1])
    assert "vs_final" not in f["tests"]  # no test of a row against itself
    d = _row(rec, "testbed/mmlu", "dp λ=1")
    ll = [_wall(_cell(small_run, "testbed/mmlu", "lossless", s)) / _wall(_cell(small_run, "testbed/mmlu", "dp-lam1", s))
          for s in range(3)]
    assert d["speedup"]["lossless"]["mean"] == pytest.approx(np.mean(ll))


def test_accuracy_difference_vs_final(rec):
    r = _row(rec, ALL, "single s0")
    diff = r["accuracy_diff_vs_final"]
    assert diff["mean"] == pytest.approx(r["accuracy"]["mean"] - _row(rec, ALL, "single s3")["accuracy"]["mean"])
    assert diff["ci_samples"][1] < 0  # stage 0 alone is clearly worse in the synthetic hierarchy


def test_paired_tests_and_holm(rec, small_run):
    r = _row(rec, ALL, "single s1")
    a = np.concatenate([_cell(small_run, d, "single-s1", s).data["score"] for s in range(3)
                        for d in ("testbed/gsm8k", "testbed/mmlu")])
    b = np.concatenate([_cell(small_run, d, "single-s3", s).data["score"] for s in range(3)
                        for d in ("testbed/gsm8k", "testbed/mmlu")])
    t = r["tests"]["vs_final"]["accuracy"]
    assert t["test"] == "mcnemar_exact" and t["pvalue"] == pytest.approx(mcnemar_exact(a, b)["pvalue"])
    lat = r["tests"]["vs_final"]["latency"]
    assert lat["unit"] == "batch" and lat["n"] == 2 * 3 * 3  # 2 datasets × 3 seeds × 3 batches of 8
    fam = [x["tests"]["vs_final"]["accuracy"] for x in rec["groups"][ALL]["rows"] if "vs_final" in x["tests"]]
    assert [x["p_holm"] for x in fam] == pytest.approx(holm([x["pvalue"] for x in fam]).tolist())
    assert all(x["p_holm"] >= x["pvalue"] and x["family"] == len(fam) for x in fam)


def test_utilisation_regret_pareto(rec):
    for g, body in rec["groups"].items():
        for r in body["rows"]:
            assert sum(r["utilisation"]["ended"]) == pytest.approx(1.0), (g, r["label"])
            assert r["utilisation"]["ran"][r["utilisation"]["ended"].index(max(r["utilisation"]["ended"]))] > 0
    s1 = _row(rec, ALL, "single s1")
    assert s1["utilisation"]["ran"] == pytest.approx([0, 1, 0, 0]) and s1["utilisation"]["ended"][1] == 1
    dp = _row(rec, ALL, "dp λ=1")
    assert dp["regret"]["oracle_lam"] == 1.0
    assert dp["regret"]["accuracy"]["mean"] == pytest.approx(
        _row(rec, ALL, "oracle λ=1 (upper bound)")["accuracy"]["mean"] - dp["accuracy"]["mean"])
    assert _row(rec, ALL, "oracle λ=1 (upper bound)")["regret"] is None
    assert _row(rec, ALL, "lossless (λ=∞)")["regret"] is None
    pts = rec["groups"][ALL]["pareto"]["points"]
    front = set(rec["groups"][ALL]["pareto"]["frontier"])
    for a, (x, y) in pts.items():
        dominated = any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for b, (x2, y2) in pts.items() if b != a)
        assert (a in front) == (not dominated), a
    assert not any("oracle" in a or "[" in a for a in pts)  # no oracle, no ablation on the frontier
    cov = {c["baseline"]: c for c in rec["groups"][ALL]["coverage"]}
    assert "single s3" in cov and "dp λ=1" not in cov


def test_projection_and_drift(rec):
    final = _row(rec, ALL, "single s3")["projection"]
    for t in ("h200-qwen2.5-tp4", "h100-qwen2.5"):
        assert final[t]["wall_speedup"]["mean"] == pytest.approx(1.0)
    dp = _row(rec, ALL, "dp λ=1")["projection"]
    # 72B runs on 4 GPUs in the H200 table: GPU-seconds favour stopping early more than wall-clock does
    assert dp["h200-qwen2.5-tp4"]["gpu_speedup"]["mean"] > dp["h200-qwen2.5-tp4"]["wall_speedup"]["mean"]
    # the H100 table records no devices: GPU-seconds = seconds
    assert dp["h100-qwen2.5"]["gpu_speedup"]["mean"] == pytest.approx(dp["h100-qwen2.5"]["wall_speedup"]["mean"])
    assert rec["projection"]["label"] == "projection"
    assert rec["projection"]["tables"]["h200-qwen2.5-tp4"]["devices"] == [1, 1, 1, 4]
    # the synthetic cells were timed by the table they record (3% noise): drift ≈ 1
    (tab,) = rec["drift"]["tables"].values()
    for s in tab["stages"]:
        assert s["calls"] > 0 and s["ratio_median"] == pytest.approx(1.0, abs=0.03), s
    assert tab["batches"]["ratio_median"] == pytest.approx(1.0, abs=0.05)


def test_same_seed_same_intervals_and_the_table(small_run, rec):
    again = analyze(load_run(small_run), AnalysisConfig(resamples=R))
    strip = lambda r: {k: v for k, v in r.items() if k not in ("created_utc", "environment")}  # noqa: E731
    assert json.dumps(strip(again), sort_keys=True) == json.dumps(strip(rec), sort_keys=True)
    txt = format_table(rec)
    assert "dp λ=1" in txt and "2 datasets mixed" in txt and "[no_skips]" not in txt
    assert "[no_skips]" in format_table(rec, ablations=True)
    h = {r["label"]: r for r in headline(rec)}
    assert h["dp λ=1"]["speedup_vs_final"] == pytest.approx(_row(rec, ALL, "dp λ=1")["speedup"]["s3"]["mean"])


def test_four_datasets_five_seeds_mixed(tmp_path):
    root = write_run(tmp_path / "full", n=16, lambdas=(1.0,), ablations=(), taus=(0.7,))
    rec = analyze(load_run(root), AnalysisConfig(resamples=200))
    m = _row(rec, ALL, "dp λ=1")
    assert m["seeds"] == [0, 1, 2, 3, 4] and m["samples_per_seed"] == 4 * 16
    assert len(rec["groups"][ALL]["datasets"]) == 4
    assert len(m["accuracy"]["per_seed"]) == 5 and m["accuracy"]["ci_seeds"] is not None


def test_one_seed_has_no_seed_interval_and_replay_is_labelled(tmp_path):
    root = write_run(tmp_path / "one", datasets=("testbed/gsm8k",), seeds=(4,), n=16, lambdas=(1.0,), ablations=(),
                     mode="replay", cost_model=None)
    rec = analyze(load_run(root), AnalysisConfig(resamples=200))
    assert set(rec["groups"]) == {"testbed/gsm8k"}  # one dataset: no mixed group
    r = _row(rec, "testbed/gsm8k", "dp λ=1")
    assert r["accuracy"]["ci_seeds"] is None and r["accuracy"]["ci_samples"][0] is not None
    assert rec["mode"] == "replay" and rec["label"] == "replay"
    assert rec["drift"]["applicable"] is False and "proxy costs" in rec["drift"]["reason"]


def test_drift_table_option_prices_proxy_runs(tmp_path):
    root = write_run(tmp_path / "proxy", datasets=("testbed/gsm8k",), seeds=(0,), n=16, lambdas=(1.0,), ablations=(),
                     cost_model=None)
    from asd.costs_io import save_cost_model

    save_cost_model(TRUE_COSTS, tmp_path / "true.json")
    rec = analyze(load_run(root), AnalysisConfig(resamples=200, drift_table=str(tmp_path / "true.json")))
    assert rec["drift"]["applicable"]
    (tab,) = rec["drift"]["tables"].values()
    assert all(math.isclose(s["ratio_median"], 1.0, abs_tol=0.05) for s in tab["stages"] if s["calls"])


def test_dp_from_a_later_stage_is_its_own_row(tmp_path):
    root = write_run(tmp_path / "start", datasets=("testbed/gsm8k", "testbed/mmlu"), seeds=(0, 1), n=16,
                     lambdas=(1.0, 5.0), ablations=(), starts=(2,))
    run = load_run(root)
    assert {c.start for c in run.cells} == {0, 2}
    rec = analyze(run, AnalysisConfig(resamples=200))
    s0, s2 = _row(rec, ALL, "dp λ=1"), _row(rec, ALL, "dp λ=1 from s2")
    assert s0["start"] == 0 and s2["start"] == 2 and s2["cells"] != s0["cells"]
    assert all("start2" in c for c in s2["cells"]) and not any("start" in c for c in s0["cells"])
    ran = s2["utilisation"]["ran"]  # stages below the start never run; the start runs for every sample
    assert ran[0] == ran[1] == 0 and ran[2] == pytest.approx(1.0)
    # its speedup is the final stage's wall-clock over its own, on the same prompts (per dataset: a mean over seeds)
    r = _row(rec, "testbed/mmlu", "dp λ=1 from s2")
    want = [_wall(_cell(root, "testbed/mmlu", "single-s3", s)) / _wall(_cell(root, "testbed/mmlu", "dp-lam1-start2", s))
            for s in (0, 1)]
    assert r["speedup"]["s3"]["mean"] == pytest.approx(np.mean(want))
    assert s2["regret"] is None and s0["regret"] is not None  # the oracle's routes start at stage 0
    assert "dp λ=1 from s2" in rec["groups"][ALL]["pareto"]["points"]
    assert s2["tests"]["vs_final"]  # paired against the final stage alone like every row
    h = {r["label"] for r in headline(rec)}
    assert "dp λ=1" in h
