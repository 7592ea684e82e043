"""`asd run`: the synthetic job end to end through the CLI, its JSON output and its config errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asd.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
run:
  job: synthetic
synthetic:
  batch: 3000
  draws: 4
  lambdas: [0.1, 2.0, .inf]
  timing_repeats: 1
policy:
  lam: 2.0
"""


def test_synthetic_job_prints_tables_and_writes_json(tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    out = tmp_path / "out" / "stats.json"
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stop@7b" in text and "stop@72b" in text and "baselines at λ=2" in text and "C++" in text
    rec = json.loads(out.read_text())
    assert rec["schema_version"] == 1 and "git_revision" in rec and rec["config"]["synthetic"]["batch"] == 3000
    per = rec["stats"]["per_lambda"]
    assert [p["lam"] for p in per[:2]] == [0.1, 2.0]
    for p in per:
        assert abs(sum(p["hist"]) - 1) < 1e-9
    assert per[-1]["hist"][-1] == 1.0                       # λ = inf: everything ends at the final stage
    assert per[0]["cost"] <= per[1]["cost"] <= per[2]["cost"]
    assert per[0]["quality"] <= per[1]["quality"] <= per[2]["quality"] == 1.0
    base = rec["stats"]["baselines"]
    assert base["oracle"]["objective"] <= base["dp"]["objective"]
    t = rec["stats"]["timing"]
    assert t["cpp_s"] > 0 and t["numpy_s"] > 0


@pytest.mark.parametrize("body,msg", [
    ("run:\n  job: cascade\n", "valid choices"),
    ("synthetic:\n  batchsize: 3\n", "valid keys"),
    ("synthetic:\n  lambdas: [-1]\n", "lambdas"),
])
def test_config_errors_exit_2(tmp_path, capsys, body, msg):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    assert main(["run", "--config", str(cfg)]) == 2
    assert msg in capsys.readouterr().err


def test_demo_config_runs_as_make_demo_does():
    # the real `asd` entry point on the shipped config (B = 100,000; ~1-3 s)
    res = subprocess.run([sys.executable, "-m", "asd", "run", "--config", str(ROOT / "configs/demo.yaml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "B=100,000" in res.stdout and "DP timing" in res.stdout
