"""The one-GPU replay (asd.analysis.replay, scripts/gpu_replay.py) on CPU with tiny Qwen2 shapes."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (requirements/base.txt)")
pytest.importorskip("h5py", reason="h5py is not installed (requirements/base.txt)")

from asd.analysis import calls as C
from asd.analysis import replay as R
from asd.analysis.run import load_run
from asd.models.cuda_graph import StaticDecoder
from asd.provenance import REPO_ROOT
from tests.analysis.synth import TRUE_COSTS, write_run

TINY = [{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 64, "max_position_embeddings": 1024}] * 3


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    root = write_run(tmp_path_factory.mktemp("rp") / "run", datasets=("testbed/gsm8k",), seeds=(0,), n=12,
                     lambdas=(1.0,), ablations=(), batch_size=4)
    run = load_run(root)
    cells = R.select_cells(run, ["*--dp-lam1--seed0", "*--single-s0--seed0", "*--speculative--seed0"])
    return run, cells, R.extract_calls(run, cells, max_batches=2)


def test_extract_keeps_the_recovered_calls_of_the_first_batches(doc):
    run, cells, d = doc
    assert d["schema"] == R.CALLS_SCHEMA and len(d["cells"]) == 3
    for c, e in zip(cells, d["cells"]):
        full = C.recover_calls(run.read(c), speculative=c.policy == "speculative")
        keep = np.isin(full.batch, np.unique(full.batch)[:2])
        got = R.calls_of(e)
        assert len(got) == int(keep.sum()) and set(got.batch.tolist()) == set(np.unique(full.batch)[:2].tolist())
        for f in ("stage", "kind", "size", "in_tokens", "steps"):
            assert sorted(getattr(got, f).tolist()) == sorted(getattr(full, f)[keep].tolist()), f
    json.dumps(d)
    with pytest.raises(ValueError, match="no cell"):
        R.select_cells(run, ["*nothing*"])


def test_replay_runs_each_call_with_its_recorded_shape(doc, monkeypatch):
    _, _, d = doc
    seen = []  # (kind of StaticDecoder work, B, T) of every prefill and decode step, real methods underneath
    real_prefill, real_step = StaticDecoder.prefill, StaticDecoder.step

    def prefill(self, ids, lengths, all_logits=False):
        seen.append(("prefill", *ids.shape))
        return real_prefill(self, ids, lengths, all_logits)

    def step(self, ids, valid=None):
        seen.append(("step", *ids.shape))
        return real_step(self, ids, valid)

    monkeypatch.setattr(StaticDecoder, "prefill", prefill)
    monkeypatch.setattr(StaticDecoder, "step", step)
    rec = R.replay(d, TINY, TRUE_COSTS, device="cpu", dtype="float32", warmup_calls=0, progress=False, repeats=1)
    calls = [(R.calls_of(e), e) for e in d["cells"]]
    todo = [(c, j) for c, _ in calls for j in range(len(c)) if c.stage[j] < 3 and c.kind[j] != C.SPECULATIVE]
    s = rec["summary"]
    assert s["replayed_calls"] == len(todo) and s["not_replayed_calls"] == sum(len(c) for c, _ in calls) - len(todo)
    # after the warm-up (one prefill [B, 8] + one step per decode batch size), the timed calls in order
    timed = seen[-(len(todo) + sum(int(c.steps[j]) for c, j in todo)):]
    want = []
    for c, j in todo:
        want.append(("prefill", int(c.size[j]), int(c.in_tokens[j])))
        want += [("step", int(c.size[j]), 1)] * int(c.steps[j])
    assert timed == want
    est = np.concatenate([C.price_calls(c, TRUE_COSTS, e["gamma"])[0] for c, e in calls])
    assert s["estimated_s"] == pytest.approx(sum(x["estimated_s"] for x in rec["calls"] if x["measured_s"] is not None))
    assert [x["estimated_s"] for x in rec["calls"]] == pytest.approx(est.tolist())
    assert all(x["measured_s"] > 0 for x in rec["calls"] if x["measured_s"] is not None)
    by = {b["stage"]: b for b in rec["by_stage"]}
    assert by[3]["replayed_calls"] == 0 and by[3]["skipped_calls"] > 0 and by[3]["skipped_estimated_s"] > 0
    assert by[0]["replayed_calls"] > 0 and by[0]["ratio_total"] > 0
    assert rec["schema"] == R.REPLAY_SCHEMA and "random-weight" in rec["label"]
    assert rec["calls_from"] == d["run"] and rec["calls_run_git_revision"] == d["run_git_revision"]


def test_repeats_time_each_call_again_and_reprice_keeps_the_measurements(doc, monkeypatch):
    _, _, d = doc
    prefills = []
    real_prefill = StaticDecoder.prefill

    def prefill(self, ids, lengths, all_logits=False):
        prefills.append(tuple(ids.shape))
        return real_prefill(self, ids, lengths, all_logits)

    monkeypatch.setattr(StaticDecoder, "prefill", prefill)
    rec = R.replay(d, TINY, TRUE_COSTS, device="cpu", dtype="float32", warmup_calls=0, progress=False, repeats=3)
    n = rec["summary"]["replayed_calls"]
    timed = prefills[-3 * n:]
    assert [timed[i] for i in range(0, 3 * n, 3)] == [timed[i + 2] for i in range(0, 3 * n, 3)]  # 3 runs per call
    assert rec["repeats"] == 3
    ran = [x for x in rec["calls"] if x["measured_s"] is not None]
    assert all(0 < x["measured_pass_s"] <= x["measured_s"] for x in ran)
    assert all(x["estimated_pass_s"] <= x["estimated_s"] for x in ran)
    by0 = next(b for b in rec["by_stage"] if b["stage"] == 0)
    assert by0["pass_ratio_total"] > 0 and by0["decode_ratio_total"] > 0
    # the same measured seconds priced with a table twice as slow: every estimate doubles, the ratio halves
    from asd.core.costs import CostModel

    slow = CostModel(
        stages=tuple(
            type(st)(
                name=st.name,
                prefill=type(st.prefill)(2 * st.prefill.slope, 2 * st.prefill.intercept, 0.0, 1),
                decode=type(st.decode)(2 * st.decode.slope, 2 * st.decode.intercept, 0.0, 1),
                overhead_s=2 * st.overhead_s,
            )
            for st in TRUE_COSTS.stages
        ),
        batch_size=TRUE_COSTS.batch_size,
    )
    again = R.reprice(d, json.loads(json.dumps(rec)), slow)
    assert [x["measured_s"] for x in again["calls"]] == [x["measured_s"] for x in rec["calls"]]
    assert [x["estimated_s"] for x in again["calls"]] == pytest.approx([2 * x["estimated_s"] for x in rec["calls"]])
    s0, s1 = rec["summary"], again["summary"]
    assert s1["measured_over_estimated"] == pytest.approx(s0["measured_over_estimated"] / 2)
    assert again["repriced_from"]["summary"] == s0
    with pytest.raises(ValueError, match="calls"):
        R.reprice({**d, "cells": d["cells"][:1]}, rec, slow)


def test_replay_refuses_other_documents(doc):
    _, _, d = doc
    with pytest.raises(ValueError, match="asd-replay-calls"):
        R.replay({"schema": "x"}, TINY, TRUE_COSTS, device="cpu")


def test_script_extract_and_tiny_replay(doc, tmp_path):
    run, _, _ = doc
    calls, out = tmp_path / "calls.json", tmp_path / "replay.json"
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "scripts/gpu_replay.py", "extract", str(run.root), "--out", str(calls),
                        "--cells", "*--single-s1--seed0", "--max-batches", "1"], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "scripts/gpu_replay.py", "replay", str(calls), "--tiny", "--out", str(out),
                        "--table", "configs/costs/h200-qwen2.5-tp4.json"], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rec = json.loads(out.read_text())
    assert rec["summary"]["replayed_calls"] == 1 and rec["device"] == "cpu"
    assert "stage 1 custom1: 1 calls" in p.stdout
