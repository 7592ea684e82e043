"""asd analyze RUN and asd report RUN end to end on a synthetic run folder (real HDF5 traces)."""

import json

import pytest

from asd.cli import main

FIGURES = {"pareto_all", "pareto_testbed-gsm8k", "pareto_testbed-mmlu", "utilisation", "decision_boundary",
           "calibration", "cost_model", "projection"}


def test_analyze_writes_analysis_and_record(run_copy, tmp_path, capsys):
    rec_path = tmp_path / "experiments.json"
    rc = main(["analyze", str(run_copy), "--resamples", "300", "--record", str(rec_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "all (2 datasets mixed)" in out and "dp λ=1" in out and "lossless (λ=∞)" in out
    a = json.loads((run_copy / "analysis.json").read_text())
    assert a["schema"] == "asd-analysis" and a["schema_version"] == 1 and a["grid_sha256"]
    assert a["git_revision"] and a["config"]["evaluation"]["seeds"] == [0, 1, 2]
    r = json.loads(rec_path.read_text())
    assert r["group"] == "all" and r["seeds"] == [0, 1, 2]
    dp = next(x for x in r["rows"] if x["label"] == "dp λ=1")
    assert dp["speedup_ci_samples"][0] <= dp["speedup_vs_final"] <= dp["speedup_ci_samples"][1]


def test_report_writes_markdown_json_and_every_figure(run_copy, capsys):
    rc = main(["report", str(run_copy), "--resamples", "300"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((run_copy / "report.json").read_text())
    names = {f["name"] for f in rep["figures"]}
    assert names == FIGURES, rep["figure_notes"]
    for f in rep["figures"]:
        png, js = run_copy / f["png"], run_copy / f["json"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        data = json.loads(js.read_text())
        assert data["figure"] == f["name"] and data["data"]
    md = (run_copy / "report.md").read_text()
    for heading in ("## Headline: the datasets mixed", "## testbed/gsm8k", "## Ablations", "## Paired tests",
                    "## Stage utilisation", "## Regret against the oracle", "## Pareto frontier and baselines",
                    "## Figures", "## Cost model vs measured latencies", "## PROJECTION at Qwen2.5 scale",
                    "## Environment, config, seeds"):
        assert heading in md, heading
    assert "dp at λ = 1 is **" in md and "figures/pareto_all.png" in md
    assert "**This is a projection, not a measurement.**" in md
    assert rep["headline"] and rep["analysis"]["grid_sha256"] and rep["seeds"] == [0, 1, 2]
    assert rep["environment_of_run"]["environment"]["python"]
    assert rep["analysis_recomputed"] is True


def test_report_reuses_a_current_analysis_and_redoes_a_stale_one(run_copy, capsys):
    assert main(["analyze", str(run_copy), "--resamples", "300"]) == 0
    assert main(["report", str(run_copy), "--resamples", "300"]) == 0
    assert json.loads((run_copy / "report.json").read_text())["analysis_recomputed"] is False
    g = json.loads((run_copy / "grid.json").read_text())
    g["wall_time_s"] = 99.0  # another grid.json: the analysis no longer belongs to it
    (run_copy / "grid.json").write_text(json.dumps(g))
    assert main(["report", str(run_copy), "--resamples", "300"]) == 0
    assert json.loads((run_copy / "report.json").read_text())["analysis_recomputed"] is True
    assert json.loads((run_copy / "analysis.json").read_text())["wall_time_s"] == 99.0
    capsys.readouterr()


def test_replay_run_is_labelled_in_the_report(tmp_path, capsys):
    from tests.analysis.synth import write_run

    root = write_run(tmp_path / "rp", datasets=("testbed/mmlu",), seeds=(0, 1), n=16, lambdas=(1.0,), ablations=(),
                     mode="replay")
    assert main(["report", str(root), "--resamples", "200"]) == 0
    md = (root / "report.md").read_text()
    assert md.splitlines()[0].endswith("REPLAY (counterfactual, from full per-stage traces)")
    assert "[REPLAY]" in json.loads((root / "figures" / "pareto_testbed-mmlu.json").read_text())["caption"]
    capsys.readouterr()


def test_trace_file_report_still_works(small_run, tmp_path, capsys):
    p = next((small_run / "cells").glob("*gsm8k--dp-lam1--seed0/traces.h5"))
    rc = main(["report", str(p), "--plot", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "24 samples" in out
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["n"] == 24
    rc = main(["report", str(small_run), "--plot", str(tmp_path / "x.png")])
    assert rc == 2 and "--plot and --json apply to a trace file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze"])  # RUN is required


def test_report_renders_an_attached_replay_and_says_whose_calls_it_timed(run_copy, capsys):
    rev = json.loads((run_copy / "grid.json").read_text())["git_revision"]
    stage = {"stage": 0, "model": "Qwen/Qwen2.5-7B", "replayed_calls": 4, "measured_s": 1.8, "estimated_s": 2.0,
             "ratio_total": 0.9, "ratio_median": 0.91, "ratio_q1": 0.88, "ratio_q3": 0.95}
    summary = {"replayed_calls": 4, "measured_s": 1.8, "estimated_s": 2.0, "measured_over_estimated": 0.9,
               "within_15_percent": True, "not_replayed_calls": 3, "not_replayed_estimated_s": 1.25}
    (run_copy / "replay").mkdir()
    for name, calls_rev in (("a_this.json", rev), ("b_other.json", "0000000"), ("c_unknown.json", None)):
        doc = {"schema": "asd-gpu-replay", "device": "NVIDIA H200", "git_revision": "abc1234", "summary": summary,
               "by_stage": [stage, {"stage": 3, "replayed_calls": 0, "skipped_calls": 3}]}
        if calls_rev is not None:
            doc["calls_run_git_revision"] = calls_rev
        (run_copy / "replay" / name).write_text(json.dumps(doc))
    (run_copy / "replay" / "d_not_a_replay.json").write_text(json.dumps({"schema": "asd-analysis"}))
    assert main(["report", str(run_copy), "--resamples", "200"]) == 0
    md = (run_copy / "report.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("- `replay/")]
    assert len(lines) == 3, lines
    assert f"the calls of this run (revision `{rev}`)" in lines[0]
    assert "**another run** (revision `0000000`" in lines[1]
    assert "not recorded" in lines[2]
    assert "4 calls replayed, measured 1.80 s vs 2.00 s estimated, ratio **0.900** (within 15%: yes)" in lines[0]
    assert "3 calls not replayed (1.25 s estimated: stage 3)" in lines[0]
    assert md.count("| 0 | Qwen/Qwen2.5-7B | 4 | 1.80 s | 2.00 s | 0.900 | 0.910 [0.880, 0.950] |") == 3
    assert "| 3 |" not in md.split("### One-GPU replay")[1].split("##")[0]  # stages with no replayed call
    assert len(json.loads((run_copy / "report.json").read_text())["replay"]) == 3
    capsys.readouterr()


def _bound_row(label, policy, mean, lo, speed, ablation=None):
    return {"label": label, "policy": policy, "ablation": ablation,
            "speedup": {"s3": {"mean": speed, "ci_samples": [speed - 0.01, speed + 0.01]}},
            "accuracy_diff_vs_final": {"mean": mean, "ci_samples": [lo, mean + 0.002]}}


def test_report_names_the_fastest_dp_row_within_the_accuracy_bound():
    from asd.analysis.report import _best_within_bound

    rows = [
        _bound_row("dp λ=1", "dp", -0.02, -0.025, 2.1),  # too lossy
        _bound_row("dp λ=2", "dp", -0.003, -0.005, 1.5),
        _bound_row("dp λ=3 from s2", "dp", -0.0065, -0.0105, 1.88),  # within, fastest
        _bound_row("dp λ=1.5 from s2", "dp", -0.011, -0.016, 1.79),  # point estimate over 1
        _bound_row("dp λ=2 from s2", "dp", -0.0095, -0.0155, 1.95),  # upper bound over 1.5
        _bound_row("single s2", "single", 0.0, 0.0, 9.0),  # not dp
        _bound_row("dp λ=1 [kappa0]", "dp", 0.0, 0.0, 9.0, ablation="kappa0"),  # an ablation
    ]
    rec = {"stage_names": ["s0", "s1", "s2", "s3"], "groups": {"all": {"rows": rows}}}
    s = _best_within_bound(rec, "all")
    assert "**dp λ=3 from s2: 1.88×**" in s and "0.7 points (upper bound 1.1)" in s
    rec["groups"]["all"]["rows"] = rows[:1] + rows[3:5]
    assert _best_within_bound(rec, "all").startswith("No dp row stays within the accuracy bound")


def test_report_names_a_slice_of_the_testbed_levels():
    """A run drawn from some of the testbed's levels says so in its header and headline; the study's mix, an
    earlier run without the field and the benchmarks say nothing."""
    from asd.analysis.report import _level_slice

    def rec(**ev):
        return {"config": {"evaluation": ev}}

    assert _level_slice(rec(source="testbed", levels=[1, 2, 3])) == " (testbed levels 1, 2, 3 only)"
    assert _level_slice(rec(source="testbed", levels=[5, 4, 3, 2, 1])) == ""
    assert _level_slice(rec(source="testbed")) == "" and _level_slice({}) == ""
    assert _level_slice(rec(source="benchmarks", levels=[1])) == ""


def test_report_of_a_level_slice_says_it(run_copy, capsys):
    grid = json.loads((run_copy / "grid.json").read_text())
    grid["config"]["evaluation"]["levels"] = [1, 2, 3]
    (run_copy / "grid.json").write_text(json.dumps(grid))
    assert main(["report", str(run_copy), "--resamples", "100"]) == 0, capsys.readouterr().err
    md = (run_copy / "report.md").read_text()
    assert "## Headline: the datasets mixed (testbed levels 1, 2, 3 only)" in md
    assert "(testbed levels 1, 2, 3 only); seeds:" in md
