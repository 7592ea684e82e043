"""The committed testbed predictor served by the commands: chosen by config, checked against the hierarchy."""
from pathlib import Path

import pytest

from asd.cli import main
from asd.core.features import FEATURE_NAMES
from asd.predictor.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_committed_checkpoint_is_valid_and_small():
    w, meta = load_checkpoint("testbed:predictor")  # hashes verified
    d = ROOT / "asd/testbed/predictor"
    assert sum(p.stat().st_size for p in d.iterdir()) <= 2_000_000
    assert meta["stage_names"] == [f"testbed:s{k}" for k in range(4)] and meta["feature_names"] == FEATURE_NAMES
    assert meta["members"] == 5 and w.num_members == 5 and len(meta["data"]["sha256"]) == 64


def test_cascade_command_refuses_a_checkpoint_for_other_stages(tmp_path, capsys):
    from random_hierarchy import two_stage_config

    cfg = two_stage_config(tmp_path, """predictor:
  kind: mlp
  checkpoint: testbed:predictor
""")
    assert main(["cascade", "--config", str(cfg), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert "trained for K=4 stages" in err and "K=2" in err


def test_cascade_command_with_the_learned_predictor(capsys):
    pytest.importorskip("transformers")
    try:
        from asd.testbed.weights import resolve_model

        resolve_model("testbed:s0")
    except (ValueError, FileNotFoundError) as e:
        pytest.skip(f"testbed weights not available ({e})")
    assert main(["cascade", "--config", str(ROOT / "configs/testbed.yaml"), "--n", "20"]) == 0
    out = capsys.readouterr().out
    assert "policy dp λ=1.0: 20 prompts" in out
    hist = [int(x.split("=")[1]) for x in out.split("final stage histogram: ")[1].splitlines()[0].split(", ")]
    assert sum(hist) == 20
