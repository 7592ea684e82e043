"""The testbed cascade as a job step: deterministic per sample id, scored, written and merged as traces."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from asd.run_config import load_config
from asd import pipeline
from asd.testbed import scoring

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "configs/demo_testbed.yaml")


def test_prompts_depend_only_on_seed_and_id():
    a = pipeline.testbed_prompts(np.array([3, 7, 21]), seed=1)
    b = pipeline.testbed_prompts(np.array([21]), seed=1)
    assert a[2] == b[0]
    assert a[0].level == 4 and a[2].level == 2          # cell = id % 20 → (task, level)


def test_step_is_deterministic_across_batching_and_scored(config):
    ids = np.arange(10, 16, dtype=np.int64)
    whole = pipeline.testbed_cascade(ids, config)
    parts = [pipeline.testbed_cascade(ids[:2], config), pipeline.testbed_cascade(ids[2:], config)]
    tokens = [t.tolist() for p in parts for t in p["tokens"]]
    assert tokens == [t.tolist() for t in whole["tokens"]]
    for k in ("final_stage", "decision"):
        assert np.concatenate([p[k] for p in parts]).tolist() == whole[k].tolist()
    ex = pipeline.testbed_prompts(ids, config["jobs"].seed)
    expect = scoring.score(ex, [str(t) for t in whole["text"]])
    assert whole["score"].tolist() == [float(x) for x in expect]
    assert list(whole["dataset"]) == [f"testbed/{e.task}" for e in ex]
    assert not any("<|im_end|>" in str(t) for t in whole["text"])   # specials are not part of the text


def test_demo_decides_with_the_committed_predictor(config):
    """configs/demo_testbed.yaml: policy dp at λ = 1 with the committed MLP ensemble, whose r̂ the cascade
    recorded; at λ = ∞ the same step ends every sample at the final stage."""
    import dataclasses

    from asd.core.mlp import MLPPredictor
    from asd.predictor.checkpoint import load_checkpoint

    assert config["policy"].lam == 1.0 and config["predictor"].kind == "mlp"
    ids = np.arange(40, 60, dtype=np.int64)
    rec = pipeline.testbed_cascade(ids, config)
    w, _ = load_checkpoint(config["predictor"].checkpoint)
    r, _ = MLPPredictor(w).predict(rec["features"][:, 0], np.zeros(ids.size, np.int64), 4)
    np.testing.assert_allclose(rec["predictions"][:, 0], r.mean(1), rtol=1e-6)
    inf = dict(config, policy=dataclasses.replace(config["policy"], lam=math.inf))
    assert (pipeline.testbed_cascade(ids[:6], inf)["final_stage"] == 3).all()


@pytest.mark.slow
def test_submit_local_then_report(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs/demo_testbed.yaml").read_text())
    cfg["jobs"].update(output_dir=str(tmp_path / "run"), num_samples=20, shards=2, batch_size=10)
    cfg["cascade"]["batch_size"] = 10
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env_py = sys.executable
    subprocess.run([env_py, "-m", "asd", "submit", "--config", str(path)], check=True, cwd=ROOT)
    merged = tmp_path / "run" / "traces.h5"
    png, js = tmp_path / "s.png", tmp_path / "s.json"
    out = subprocess.run([env_py, "-m", "asd", "report", str(merged), "--plot", str(png), "--json", str(js)],
                         check=True, cwd=ROOT, capture_output=True, text=True).stdout
    assert "20 samples" in out and png.stat().st_size > 10_000
    import json

    from asd.traces import read_traces

    s = json.loads(js.read_text())["summary"]
    t = read_traces(merged)
    assert t.data["sample_id"].tolist() == list(range(20))
    assert math.isclose(s["score_mean"], float(np.mean(t.data["score"])), rel_tol=1e-6)
    assert sum(s["final_hist"]) == 20
    assert s["final_hist"] == np.bincount(t.data["final_stage"], minlength=4).tolist()
