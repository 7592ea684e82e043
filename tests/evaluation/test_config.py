"""The grid's config: bad input is one clear error before anything runs or is written."""
import math

import pytest
import yaml

from asd.cli import main as cli
from asd.config_loader import ConfigError, from_dict
from asd.evaluation.config import EvaluationConfig

from .helpers import write_config


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"lambdas": [1.0, -0.5]}, r"every λ must be >= 0 or inf \(no NaN\), got \[-0.5\]"),
        ({"lambdas": [1.0, math.nan]}, r"evaluation\.lambdas\[1\]: expected a number, got nan"),  # the loader's rule
        ({"lambdas": []}, "lambdas must not be empty"),
        ({"ablation_lambdas": [math.nan], "ablations": ["no_skips"]}, "ablation_lambdas"),
        ({"frontier_lambdas": [0.7, -1.0]}, r"frontier_lambdas: every λ must be >= 0"),
        ({"frontier_lambdas": [1.0]}, r"frontier_lambdas: finite λ not already in lambdas .* got \[1.0\]"),
        ({"frontier_lambdas": [math.inf]}, r"frontier_lambdas: finite λ not already in lambdas .* got \[inf\]"),
        ({"datasets": ["gsm8k", "squad"]}, r"unknown dataset\(s\) \['squad'\]; valid: gsm8k, mmlu, humaneval, truthfulqa"),
        ({"policies": ["dp", "greedy"]}, r"unknown policy\(ies\) \['greedy'\]; valid: dp, single"),
        ({"ablations": ["dropout"]}, r"unknown ablation\(s\) \['dropout'\]"),
        ({"policies": ["random", "single"]}, "add 'dp' to policies"),
        ({"taus": [1.5]}, r"every τ must be in \[0, 1\]"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
        ({"kappa": -1.0}, "kappa must be a finite number >= 0"),
        ({"samples": 0}, "samples must be >= 1"),
        ({"levels": [0, 3]}, r"levels: distinct testbed levels, at least one; valid: 1, 2, 3, 4, 5; got \[0, 3\]"),
        ({"levels": []}, r"levels: distinct testbed levels, at least one"),
        ({"levels": [2, 2]}, r"levels: distinct testbed levels"),
        ({"source": "benchmarks", "levels": [1]}, r"levels: only testbed prompts have levels \(source is 'benchmarks'\)"),
    ],
)
def test_bad_grid_values_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(EvaluationConfig, fields, source="x.yaml", path="evaluation")


def test_ablation_checkpoints_name_feature_ablations():
    with pytest.raises(ValueError, match=r"ablation_checkpoints: unknown ablation\(s\) \['no_words'\]"):
        EvaluationConfig(ablation_checkpoints={"no_words": "x"})


@pytest.mark.parametrize(
    "override, message",
    [
        ({"lambdas": [0.5, -1]}, "every λ must be >= 0 or inf"),
        ({"lambdas": [".nan"]}, "evaluation.lambdas[0]: expected a number, got nan"),
        ({"datasets": ["wikitext"]}, "unknown dataset"),
        ({"policies": ["dp", "beam"]}, "unknown policy"),
        ({"cost_model": "/nonexistent/costs.json"}, "cost model file not found"),
        ({"ablations": ["no_hidden"]}, "retrains the predictor without some features; the prior reads none"),
        ({"predictor": {"kind": "mlp", "checkpoint": "/nonexistent/ckpt"}}, "no predictor checkpoint"),
        ({"predictor": {"kind": "mlp", "checkpoint": "testbed:predictor"}, "ablations": ["no_text"]},
         "needs evaluation.ablation_checkpoints.no_text"),
    ],
)
def test_cli_refuses_bad_input_before_any_model_runs(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "bad.yaml", out)
    d = yaml.safe_load(cfg.read_text())
    for k, v in override.items():
        if k == "predictor":  # its own section (asd.predictor.config.PredictorConfig)
            d[k] = v
            continue
        d["evaluation"][k] = float(v) if v == ".nan" else v
    if override.get("lambdas") == [".nan"]:
        cfg.write_text(yaml.safe_dump(d).replace("'.nan'", ".nan"))
    else:
        cfg.write_text(yaml.safe_dump(d))
    assert cli(["evaluate", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("asd evaluate: error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_cli_refuses_a_config_without_the_sections(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"evaluation": {"samples": 2}}))
    assert cli(["evaluate", "--config", str(cfg)]) == 2
    assert "missing section 'hierarchy'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: an unknown mode, with the choices
        cli(["evaluate", "--config", str(cfg), "--mode", "sideways"])
    assert "choose from 'online', 'replay'" in capsys.readouterr().err
