"""`asd run` job pipeline: asd subcommands in a chain; a missing command is skipped with a message."""
import json
import subprocess
import sys

import yaml

from asd.evaluation.chain import available_commands
from asd.run_config import load_config

from .helpers import ROOT, write_config


def _asd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "asd", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


def test_pipeline_testbed_config_chains_the_five_steps():
    cfg = load_config(ROOT / "configs/pipeline_testbed.yaml")
    assert cfg["run"].job == "pipeline"
    assert [s.command for s in cfg["pipeline"].steps] == ["generate-data", "train-predictor", "evaluate", "analyze",
                                                          "report"]
    assert "evaluate" in available_commands() and "run" in available_commands()
    ev = load_config(ROOT / "configs/pipeline_evaluation.yaml")
    train = load_config(ROOT / "configs/pipeline/predictor.yaml")["predictor_training"]
    assert ev["predictor"].kind == "mlp" and ev["predictor"].checkpoint == train.checkpoint  # step 2's predictor


def test_chain_runs_the_steps_that_exist_and_skips_the_others(tmp_path):
    grid = write_config(tmp_path / "grid.yaml", tmp_path / "run", samples=3, policies=["single"], fixed_depths=[])
    chain = {
        "run": {"job": "pipeline"},
        "pipeline": {
            "steps": [
                {"command": "no-such-generator", "args": ["--config", "x.yaml"]},
                {"command": "evaluate", "args": ["--config", str(grid), "--no-progress"]},
                {"command": "inspect", "args": [str(tmp_path / "run/cells/testbed-gsm8k--single-s0--seed0/traces.h5")],
                 "needs": ["no-such-analyzer"]},
            ],
            "report": str(tmp_path / "run/grid.json"),
        },
    }
    p = tmp_path / "chain.yaml"
    p.write_text(yaml.safe_dump(chain))
    r = _asd("run", "--config", str(p), "--out", str(tmp_path / "chain.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "step 1/3 `asd no-such-generator --config x.yaml` skipped: this asd has no `asd no-such-generator`" in r.stdout
    assert "step 2/3: asd evaluate" in r.stdout and "step 2 done" in r.stdout
    assert "skipped: this asd has no `asd no-such-analyzer` command yet" in r.stdout
    assert f"the report is {tmp_path / 'run/grid.json'}" in r.stdout
    stats = json.loads((tmp_path / "chain.json").read_text())["stats"]["steps"]
    assert [s["status"] for s in stats] == ["skipped", "ran", "skipped"] and stats[1]["returncode"] == 0
    assert json.loads((tmp_path / "run/grid.json").read_text())["complete"]


def test_a_failing_step_stops_the_chain(tmp_path):
    chain = {"run": {"job": "pipeline"}, "pipeline": {"steps": [
        {"command": "evaluate", "args": ["--config", str(tmp_path / "missing.yaml")]},
        {"command": "status", "args": [str(tmp_path)]},
    ]}}
    p = tmp_path / "chain.yaml"
    p.write_text(yaml.safe_dump(chain))
    r = _asd("run", "--config", str(p))
    assert r.returncode == 2
    assert "asd run: error: step 1 `asd evaluate --config" in r.stderr and "failed with exit status 2" in r.stderr
    assert "step 2/2" not in r.stdout
