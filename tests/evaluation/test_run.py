"""`asd evaluate` end to end on the testbed through the jobs layer (submitit's local executor; SLURM below).

One small grid (one dataset, one seed, every policy, two ablations) runs online; the tests read its run
folder: grid.json (the evaluation contract), paired sample ids, per-batch wall clock, the lossless cell
equal to the final stage alone, random's histogram, the oracle's outcomes, resume, a folder of another
config refused; then the same grid replayed from full per-stage traces agrees with the online cells.
"""
import json
import math

import numpy as np
import pytest
import yaml
from slurm_cluster import require_cluster

from asd.cli import main as cli
from asd.traces import SCHEMA_VERSION, read_traces

from .helpers import write_config

CONTRACT = ("cell", "dataset", "policy", "lam", "kappa", "stage", "tau", "seed", "ablation", "batch_size",
            "temperature", "traces", "upper_bound")
SAMPLES = 6


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = write_config(tmp / "grid.yaml", tmp / "run", samples=SAMPLES,
                       ablations=["no_skips", "uniform_costs", "kappa", "sampling"], ablation_kappa=1.0)
    assert cli(["evaluate", "--config", str(cfg), "--no-progress"]) == 0
    return cfg, tmp / "run"


def _grid(run):
    return json.loads((run / "grid.json").read_text())


def _cell(run, cid, fields=None):
    return read_traces(run / "cells" / cid / "traces.h5", fields=fields)


def test_grid_json_follows_the_contract(online):
    _, run = online
    g = _grid(run)
    assert g["schema"] == "asd-eval-grid" and g["schema_version"] == 1 and g["mode"] == "online"
    assert g["complete"] and not g["failures"] and g["git_revision"] and g["config"]["evaluation"]["samples"] == 6
    assert g["wall_time_s"] > 0 and g["cpu_hours"] > 0 and g["gpu_hours"] is None
    policies = {c["policy"] for c in g["cells"]}
    assert policies == {"dp", "lossless", "single", "fixed_depth", "threshold", "confidence", "speculative",
                        "random", "oracle"}
    for c in g["cells"]:
        assert all(k in c for k in CONTRACT)
        assert (run / c["traces"]).is_file() and c["batch_size"] == 3 and c["seed"] == 0
        assert c["upper_bound"] == (c["policy"] == "oracle")
        assert c["lam"] in (1.0, "inf", None)
    assert {c["ablation"] for c in g["cells"]} == {None, "no_skips", "uniform_costs", "kappa1", "sampling_t0.7"}
    sampled = [c for c in g["cells"] if c["ablation"] == "sampling_t0.7"]
    assert sorted(c["policy"] for c in sampled) == ["dp", "lossless", "single"]
    assert all(c["temperature"] == 0.7 for c in sampled)
    lossless = [c for c in g["cells"] if c["policy"] == "lossless" and c["ablation"] is None]
    assert lossless[0]["lam"] == "inf"


def test_a_pooled_grid_runs_each_cell_as_one_window(online, tmp_path):
    """``cascade.pool_size`` 6 over the 6 prompts in calls of 3: one step call and one window per cell (one
    batch id, one window wall clock), stage calls of at most 3, the same decisions and outputs as the grid's
    batch-per-call cells; grid.json records the pool."""
    _, run = online
    cfg = write_config(tmp_path / "pooled.yaml", tmp_path / "run", samples=SAMPLES, cascade={"pool_size": 6},
                       policies=["dp", "oracle", "single"], lambdas=[1.0])
    assert cli(["evaluate", "--config", str(cfg), "--no-progress"]) == 0
    g = _grid(tmp_path / "run")
    assert {c["policy"] for c in g["cells"]} == {"dp", "oracle", "single"}
    fields = ["sample_id", "batch_id", "batch_latency_s", "ran", "decision", "latency_s", "tokens"]
    for c in g["cells"]:
        assert c["batch_size"] == 3 and c["pool_size"] == 6
        t = _cell(tmp_path / "run", c["cell"], fields).data
        assert set(t["batch_id"].tolist()) == {0} and len(set(t["batch_latency_s"].tolist())) == 1
        for k in range(t["ran"].shape[1]):
            members = np.flatnonzero(t["ran"][:, k])
            assert len(set(t["latency_s"][members, k].tolist())) == -(-members.size // 3)
        ref = _cell(run, c["cell"], fields).data
        assert np.array_equal(t["decision"], ref["decision"]) and np.array_equal(t["ran"], ref["ran"])
        assert all(np.array_equal(a, b) for a, b in zip(t["tokens"], ref["tokens"]))
        assert set(ref["batch_id"].tolist()) == {0, 3}
    # the analysis charges each sample its calls (a window's batch shares would all be equal)
    assert cli(["analyze", str(tmp_path / "run"), "--resamples", "100"]) == 0
    rec = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert rec["latency_method"] == ["call_share"]


def test_every_cell_sees_the_same_prompts_and_records_batches(online):
    _, run = online
    ref = None
    for c in _grid(run)["cells"]:
        t = _cell(run, c["cell"])
        assert t.attrs["mode"] == "online" and t.attrs["cell"] == c["cell"] and t.attrs["schema_version"] == SCHEMA_VERSION
        assert t.data["sample_id"].tolist() == list(range(SAMPLES))
        pl = t.data["prompt_len"]
        ref = pl if ref is None else ref
        np.testing.assert_array_equal(pl, ref)  # paired: the same prompts in every cell of the seed
        assert set(t.data["dataset"]) == {"testbed/gsm8k"} and np.isfinite(t.data["score"]).all()
        bid, bl = t.data["batch_id"], t.data["batch_latency_s"]
        assert bid.tolist() == [0, 0, 0, 3, 3, 3]  # batches of cascade.batch_size = 3, named by their first id
        for b in (0, 3):
            rows = bid == b
            assert len(set(bl[rows])) == 1 and bl[rows][0] > 0
            # a sample's stages ran one after the other inside its batch's wall clock
            per_sample = np.where(t.data["ran"][rows], t.data["latency_s"][rows], 0).sum(1)
            assert per_sample.max() <= bl[rows][0] * (1 + 1e-9)
        if c["policy"] in ("dp", "lossless", "oracle", "threshold", "random"):
            stages = t.attrs["cost_model"]["stages"]  # the measured table priced the decisions
            assert [st["name"] for st in stages] == ["s0", "s1", "s2", "s3"]
            uniform = all(st["decode"] == stages[3]["decode"] for st in stages)
            assert uniform == (c["ablation"] == "uniform_costs")  # uniform: every stage priced as the final


def test_lossless_cell_returns_the_final_stage_alone(online):
    _, run = online
    lossless = _cell(run, "testbed-gsm8k--lossless--seed0")
    final = _cell(run, "testbed-gsm8k--single-s3--seed0")
    assert (lossless.data["final_stage"] == 3).all()
    for a, b in zip(lossless.data["tokens"], final.data["tokens"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lossless.data["score"], final.data["score"])


def test_random_draws_from_the_dp_histogram_and_oracle_reads_outcomes(online):
    cfg, run = online
    dp = _cell(run, "testbed-gsm8k--dp-lam1--seed0", ["final_stage"])
    want = np.bincount(dp.data["final_stage"], minlength=4) / SAMPLES
    rnd = yaml.safe_load((run / "configs" / "testbed-gsm8k--random-lam1--seed0.yaml").read_text())
    np.testing.assert_allclose(rnd["policy"]["histogram"], want)
    assert rnd["policy"]["name"] == "random" and rnd["cell"]["policy"] == "random"
    orc = _cell(run, "testbed-gsm8k--oracle-laminf--seed0")
    assert orc.attrs["upper_bound"] is True or orc.attrs["upper_bound"] == 1
    # at λ = ∞ the oracle ends at the final stage: the same output as the final stage alone
    final = _cell(run, "testbed-gsm8k--single-s3--seed0")
    assert (orc.data["final_stage"] == 3).all()
    for a, b in zip(orc.data["tokens"], final.data["tokens"]):
        np.testing.assert_array_equal(a, b)
    nsk = _cell(run, "testbed-gsm8k--dp-lam1--seed0--no_skips", ["decision"])
    d = nsk.data["decision"]
    for k in range(4):
        assert np.all((d[:, k] < 0) | (d[:, k] == k + 1))  # adjacent moves only


def test_same_cell_twice_gives_identical_traces(online):
    """The step is a function of (sample id, config): rerun in this process with the task's thread count
    (jobs.cpus_per_task = 1; another count changes float reductions), every field but the clocks agrees."""
    import torch

    from asd.evaluation.step import online as step
    from asd.run_config import load_config

    _, run = online
    torch.set_num_threads(1)
    for cid in ("testbed-gsm8k--dp-lam1--seed0", "testbed-gsm8k--confidence-tau0.8--seed0"):
        config = load_config(run / "configs" / f"{cid}.yaml")
        rec = step(np.arange(3, dtype=np.int64), config)
        t = _cell(run, cid)
        for name in ("decision", "ran", "draft_len", "accepted_len", "final_stage", "score", "batch_id"):
            np.testing.assert_array_equal(rec[name], t.data[name][:3], err_msg=name)
        np.testing.assert_array_equal(rec["features"], t.data["features"][:3])
        np.testing.assert_array_equal(rec["predictions"], t.data["predictions"][:3])
        assert [x.tolist() for x in rec["tokens"]] == [x.tolist() for x in t.data["tokens"][:3]]


def test_cells_merged_in_worker_processes_equal_the_serial_merge(online, monkeypatch):
    """Wave 1's cells merged again by a pool of worker processes: same cells merged, every field equal."""
    from asd.evaluation import run as runmod

    cfg, run = online
    plan = runmod.load_plan(cfg)
    facts = runmod.validate(plan)
    cells = [c for c in plan.cells if c.wave == 1]
    before = {c.id: _cell(run, c.id) for c in cells}
    for c in cells:
        (run / "cells" / c.id / "traces.h5").unlink()
    monkeypatch.setattr(runmod, "MERGES_PER_WORKER", 1)
    monkeypatch.setattr(runmod.os, "cpu_count", lambda: 2)
    assert runmod.merge_cells(plan, cells, facts, "merge", progress=False) == {c.id for c in cells}
    for c in cells:
        t = _cell(run, c.id)
        assert t.attrs["cell"] == c.id and t.attrs["complete"]
        for name, col in before[c.id].data.items():
            if name == "tokens":
                assert [x.tolist() for x in t.data[name]] == [x.tolist() for x in col]
            else:
                np.testing.assert_array_equal(t.data[name], col, err_msg=f"{c.id} {name}")


def test_rerun_resumes_and_another_config_is_refused(online, tmp_path, capsys):
    cfg, run = online
    before = {p: p.stat().st_mtime_ns for p in run.glob("cells/*/traces.h5")}
    assert cli(["evaluate", "--config", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wave 1: 16 cells, 16 shards (16 done before), 0 samples to run" in out
    assert "wave 2: 4 cells, 4 shards (4 done before), 0 samples to run" in out
    assert {p: p.stat().st_mtime_ns for p in run.glob("cells/*/traces.h5")} == before
    # the run's wall time sums both invocations; the rerun ran no samples
    g = _grid(run)
    first, again = g["invocations"][-2:]
    assert first["samples_run"] == 20 * SAMPLES and again["samples_run"] == 0
    assert g["wall_time_s"] == pytest.approx(sum(i["wall_time_s"] for i in g["invocations"]))
    assert g["wall_time_s"] > again["wall_time_s"] > 0
    assert f"over {len(g['invocations'])} invocations (this one {again['wall_time_s']:.1f} s)" in out
    other = write_config(tmp_path / "other.yaml", run, samples=SAMPLES, lambdas=[2.0])
    listing = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert cli(["evaluate", "--config", str(other), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds another evaluation" in err and "nothing was overwritten" in err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == listing


def test_replay_mode_agrees_with_the_online_cells(online, tmp_path):
    """Full traces of the online prompts (every stage run here), replayed by `asd evaluate --mode replay`."""
    import torch

    from asd.evaluation import fulltrace
    from asd.evaluation.prompts import draw_testbed
    from asd.evaluation.replay import cell_rows
    from asd.models.loading import load_engines, load_tokenizer
    from asd.run_config import load_section
    from asd.testbed import scoring
    from asd.testbed import tokenizer as tk

    cfg, run = online
    torch.set_num_threads(1)
    hier = load_section(cfg, "hierarchy")
    ids = np.arange(SAMPLES, dtype=np.int64)
    exs = draw_testbed("gsm8k", 0, ids)
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in exs]
    data, attrs = fulltrace.build(load_engines(hier), load_tokenizer(hier), prompts, ids, ["gsm8k"] * SAMPLES,
                                  lambda k, texts: np.asarray(scoring.score(exs, texts), np.float32), 24,
                                  (tk.EOS_ID,), [s.model for s in hier.stages], batch_size=3)
    full = fulltrace.write(tmp_path / "full.h5", data, attrs)
    rep_dir = tmp_path / "replay"
    assert cli(["evaluate", "--config", str(cfg), "--mode", "replay", "--replay-data", str(full),
                "--output-dir", str(rep_dir), "--no-progress"]) == 0
    g = _grid(rep_dir)
    assert g["mode"] == "replay" and g["complete"] and any("sampling" in n for n in g["notes"])
    perm = cell_rows(fulltrace.read(full), "gsm8k", "testbed/gsm8k", 0, SAMPLES)  # replay sample j = online perm[j]
    for c in g["cells"]:
        if c["policy"] == "random":
            continue  # same histogram, but its draws follow the batch a sample is in
        assert c["temperature"] == 0.0  # the sampling ablation is left out of a replay (the note says so)
        r, o = _cell(rep_dir, c["cell"]), _cell(run, c["cell"])
        assert r.attrs["mode"] == "replay"
        for field in ("final_stage", "ran", "decision", "score"):
            np.testing.assert_array_equal(r.data[field], o.data[field][perm], err_msg=f"{c['cell']}: {field}")
        for a, b in zip(r.data["tokens"], o.data["tokens"][perm]):
            np.testing.assert_array_equal(a, b, err_msg=c["cell"])
        assert r.data["text"].tolist() == o.data["text"][perm].tolist()


def test_dp_cells_read_the_committed_predictor(tmp_path):
    """predictor kind mlp (testbed:predictor): each cell's config carries the section, the decisions read it."""
    import torch

    from asd.evaluation.step import online as step
    from asd.run_config import load_config

    cfg = write_config(tmp_path / "mlp.yaml", tmp_path / "run", samples=3, policies=["dp"], lambdas=[1.0],
                       predictor={"kind": "mlp", "checkpoint": "testbed:predictor"})
    assert cli(["evaluate", "--config", str(cfg), "--no-progress"]) == 0
    g = _grid(tmp_path / "run")
    assert g["predictor"] == {"kind": "mlp", "checkpoint": "testbed:predictor", "used": ["MLPPredictor"]}
    config = load_config(tmp_path / "run/configs/testbed-gsm8k--dp-lam1--seed0.yaml")
    assert config["predictor"].kind == "mlp" and config["predictor"].checkpoint == "testbed:predictor"
    t = _cell(tmp_path / "run", "testbed-gsm8k--dp-lam1--seed0")
    first = t.data["predictions"][:, 0, :3]  # r̂ of stages 0..2 at stage 0: the MLP's, one per prompt
    assert np.isfinite(first).all() and len({tuple(r) for r in first.tolist()}) == 3  # inputs differ, so do they
    torch.set_num_threads(1)
    rec = step(np.arange(3, dtype=np.int64), config)
    np.testing.assert_array_equal(rec["predictions"], t.data["predictions"])
    np.testing.assert_array_equal(rec["decision"], t.data["decision"])


@pytest.mark.slurm
@pytest.mark.slow
def test_the_same_grid_on_slurm_gives_the_same_data(online, tmp_path):
    """One array task per (cell, shard) on the real cluster; every field but the clocks equals the local run.

    The cluster runs a part of the module's grid (the same config but for the policies and ablations: dp,
    lossless, random, which waits for dp's histogram, and the sampling ablation's seeded draws), and its cells
    are compared with the cells of the same ids run locally."""
    require_cluster()
    _, run = online
    out = tmp_path / "slurm"
    cfg = write_config(tmp_path / "part.yaml", out, samples=SAMPLES, policies=["dp", "lossless", "random"],
                       ablations=["sampling"])
    assert cli(["evaluate", "--config", str(cfg), "--no-progress", "--executor", "slurm"]) == 0
    g, local = _grid(out), {c["cell"] for c in _grid(run)["cells"]}
    assert g["complete"] and g["task_attempts"] == len(g["cells"])  # one task per cell (one shard each)
    assert {c["policy"] for c in g["cells"]} == {"dp", "lossless", "random", "single"} and len(g["cells"]) >= 6
    for c in g["cells"]:
        assert c["cell"] in local, c["cell"]
        a, b = _cell(run, c["cell"]), _cell(out, c["cell"])
        for name in ("sample_id", "decision", "ran", "final_stage", "score", "batch_id", "draft_len"):
            np.testing.assert_array_equal(a.data[name], b.data[name], err_msg=f"{c['cell']}: {name}")
        assert [x.tolist() for x in a.data["tokens"]] == [x.tolist() for x in b.data["tokens"]]
    assert not math.isnan(g["cpu_hours"])


def test_pooled_speedups_sum_the_seconds_of_a_seed_over_its_datasets():
    from asd.evaluation.run import pooled_speedups

    def row(label, ds, seed, secs, final=False, t=0.0):
        return {"label": label, "dataset": ds, "seed": seed, "temperature": t, "seconds": secs, "final": final}

    rows = [row("s3", "a", 0, 10.0, True), row("s3", "b", 0, 30.0, True), row("s3", "a", 1, 10.0, True),
            row("s3", "b", 1, 10.0, True), row("dp", "a", 0, 5.0), row("dp", "b", 0, 5.0), row("dp", "a", 1, 10.0),
            row("dp", "b", 1, 2.0), row("s3 T", "a", 0, 8.0, True, 0.7), row("dp T", "a", 0, 2.0, t=0.7),
            row("dp T", "b", 0, 1.0, t=0.7), row("lonely", "c", 0, 1.0)]
    sp = pooled_speedups(rows)
    # seed 0: (10 + 30) / (5 + 5) = 4; seed 1: (10 + 10) / (10 + 2) = 5/3 (the mean of per-cell ratios would be 3.5)
    assert sp["dp"] == pytest.approx((4 + 5 / 3) / 2)
    assert sp["s3"] == pytest.approx(1.0)
    assert sp["dp T"] == pytest.approx(4.0)  # against the sampled final stage; dataset b has no sampled reference
    assert sp["lonely"] is None


def test_the_quick_summary_gives_the_speedup_asd_analyze_gives(tmp_path):
    from asd.analysis.analyze import analyze
    from asd.analysis.run import load_run
    from asd.evaluation.run import pooled_speedups
    from tests.analysis.synth import write_run

    root = write_run(tmp_path / "r", seeds=(0, 1, 2), n=24, lambdas=(1.0,), taus=(), ablations=())
    run = load_run(root)
    rows = []
    for c in run.cells:
        tr = read_traces(root / "cells" / c.id / "traces.h5", fields=["batch_id", "batch_latency_s"])
        _, first = np.unique(tr.data["batch_id"], return_index=True)
        final = c.policy == "single" and c.stage == run.K - 1
        rows.append({"label": c.id.split("--")[1], "dataset": c.dataset, "seed": c.seed, "temperature": 0.0,
                     "seconds": float(np.nansum(tr.data["batch_latency_s"][first])), "final": final})
    quick = pooled_speedups(rows)
    rec = analyze(run)
    dp = next(r for r in rec["groups"]["all"]["rows"] if r["label"] == "dp λ=1")
    assert len({r["dataset"] for r in rows}) > 1 and quick["dp-lam1"] != pytest.approx(1.0)
    assert quick["dp-lam1"] == pytest.approx(dp["speedup"][rec["stage_names"][-1]]["mean"], rel=1e-9)


def test_previous_invocations_read_from_grid_json(tmp_path):
    """A resumed run adds its time to the invocations grid.json holds; an older grid.json counts as one."""
    from types import SimpleNamespace

    from asd.evaluation.run import GRID_FILE, previous_invocations

    plan = SimpleNamespace(root=tmp_path)
    assert previous_invocations(plan) == []
    (tmp_path / GRID_FILE).write_text(json.dumps({"wall_time_s": 12.5}))
    assert previous_invocations(plan) == [{"started_utc": None, "wall_time_s": 12.5, "samples_run": None}]
    inv = [{"started_utc": "2026-12-04T13:53:58+00:00", "wall_time_s": 392.5, "samples_run": 109440},
           {"started_utc": "2026-12-04T14:01:00+00:00", "wall_time_s": 27.7, "samples_run": 0}]
    (tmp_path / GRID_FILE).write_text(json.dumps({"wall_time_s": 420.2, "invocations": inv}))
    assert previous_invocations(plan) == inv
    (tmp_path / GRID_FILE).write_text("{not json")
    assert previous_invocations(plan) == []
