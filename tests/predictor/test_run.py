"""``asd train-predictor`` end to end on a small synthetic training set."""
import json
from pathlib import Path

import numpy as np
import pytest

from asd.cli import main
from asd.predictor.checkpoint import load_checkpoint
from asd.predictor.config import TrainPredictorConfig
from asd.predictor.run import train_predictor

from .datagen import write_predictor_data


def _cfg(tmp_path, data, name="out", **kw):
    base = dict(data=str(data), out_dir=str(tmp_path / name), members=2, epochs=6, patience=3, hidden=[8],
                ablations=["text"], stage_sizes=[0.31, 1.19, 3.47, 19.7], kappas=[0.0, 1.0], progress=False)
    base.update(kw)
    return TrainPredictorConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_predictor_data(tmp_path_factory.mktemp("pd") / "data.h5", N=600, seed=5)


def test_train_evaluate_and_serve(tmp_path, data):
    import torch

    threads = torch.get_num_threads()
    res = train_predictor(_cfg(tmp_path, data, results=str(tmp_path / "res" / "predictor.json"),
                               plots_dir=str(tmp_path / "img")))
    assert torch.get_num_threads() == threads  # training's 1 thread does not leak into the process
    out = tmp_path / "out"
    for f in ("metrics.json", "tables.md", "roc.png", "reliability.png", "spread.png", "checkpoint/weights.safetensors"):
        assert (out / f).is_file(), f
    assert json.loads((tmp_path / "res" / "predictor.json").read_text())["schema"] == "asd-predictor-results"
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [
        "predictor_reliability.png", "predictor_roc.png", "predictor_spread.png"]
    assert [s["stage"] for s in res["per_stage"]] == [0, 1, 2]
    for s in res["per_stage"]:
        assert {"auc", "brier", "ece", "log_loss", "uncalibrated"} <= set(s) and s["n"] > 50
        assert s["auc"] > 0.7  # the synthetic features carry the difficulty
    assert [a["variant"] for a in res["ablation"]] == ["full", "without_text"]
    assert res["ablation"][1]["dropped_columns"] == ["digit_frac", "num_lines", "nesting_depth"]
    assert len(res["spread"]["all_stages"]) == 5 and res["spread"]["given_mean"]["bins"]
    runs = res["routing"]["runs"]
    assert [r["kappa"] for r in runs] == [0.0, 1.0] and runs[1]["early_stops"] <= runs[0]["early_stops"]
    assert res["data"]["split_counts"]["test"] > 0 and res["git_revision"]
    _, meta = load_checkpoint(out / "checkpoint")
    assert meta["data"]["sha256"] == res["data"]["sha256"] and meta["training"]["config"]["members"] == 2
    # the ablation's own checkpoint: served like the full one, blind to the dropped columns
    from asd.core.features import FEATURE_NAMES
    from asd.core.mlp import MLPPredictor

    assert res["ablation"][1]["checkpoint"] == str(out / "checkpoint_without_text")
    w, meta_t = load_checkpoint(out / "checkpoint_without_text")
    assert meta_t["feature_ablation"] == {"without": "text", "columns": ["digit_frac", "num_lines", "nesting_depth"]}
    x = np.random.default_rng(0).standard_normal((8, len(FEATURE_NAMES)))
    x2 = x.copy()
    x2[:, [FEATURE_NAMES.index(c) for c in meta_t["feature_ablation"]["columns"]]] += 5.0
    cur = np.zeros(8, np.int64)
    pred = MLPPredictor(w)
    np.testing.assert_array_equal(pred.predict(x, cur, 4)[0], pred.predict(x2, cur, 4)[0])
    assert set(meta["calibration"]) == {"0,0", "0,1", "0,2", "1,1", "1,2", "2,2"}
    assert meta["normalisation"]["scale"][meta["normalisation"]["columns"].index("accept_ratio_prev")] > 0


def test_same_seed_same_checkpoint(tmp_path, data):
    """The same config twice (the checkpoint records its config, out_dir included) → the same bytes."""
    files = ("weights.safetensors", "predictor.json")
    a = train_predictor(_cfg(tmp_path, data, "a", ablations=[], stage_sizes=[]))
    first = {n: (tmp_path / "a/checkpoint" / n).read_bytes() for n in files}
    b = train_predictor(_cfg(tmp_path, data, "a", ablations=[], stage_sizes=[]))
    assert {n: (tmp_path / "a/checkpoint" / n).read_bytes() for n in files} == first
    assert a["checkpoint"]["checksum"] == b["checkpoint"]["checksum"]
    c = train_predictor(_cfg(tmp_path, data, "c", ablations=[], stage_sizes=[], seed=1))
    assert c["checkpoint"]["weights_sha256"] != a["checkpoint"]["weights_sha256"]


def test_parallel_members_same_weights(tmp_path, data):
    """Members trained in 2 worker processes → the weights of members trained one after another."""
    a = train_predictor(_cfg(tmp_path, data, "serial", ablations=[], stage_sizes=[]))
    b = train_predictor(_cfg(tmp_path, data, "workers", ablations=[], stage_sizes=[], workers=2))
    assert b["checkpoint"]["weights_sha256"] == a["checkpoint"]["weights_sha256"]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        _cfg(tmp_path, data, workers=0)


def test_bad_inputs_fail_before_writing(tmp_path, data):
    with pytest.raises(ValueError, match=r"the (val|test) split is empty \(2 samples"):
        train_predictor(_cfg(tmp_path, write_predictor_data(tmp_path / "tiny.h5", N=2, seed=0)))
    with pytest.raises(ValueError, match="stage_sizes has 3 entries"):
        train_predictor(_cfg(tmp_path, data, stage_sizes=[1, 2, 3]))
    with pytest.raises(ValueError, match="a 'x' file, not 'asd-predictor-data'"):
        train_predictor(_cfg(tmp_path, write_predictor_data(tmp_path / "o.h5", N=20, attrs={"schema": "x"})))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown feature groups"):
        _cfg(tmp_path, data, ablations=["hidden", "colour"])
    with pytest.raises(ValueError, match="split must be three"):
        _cfg(tmp_path, data, split=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="label: invalid value 'correct'; valid choices: 'agree_final', 'no_worse'"):
        _cfg(tmp_path, data, label="correct")


def test_the_label_is_trained_on_and_recorded(tmp_path, data):
    """label no_worse: the test metrics are against score_m >= score_final, and the checkpoint says so."""
    from asd.predictor.data import load_training_set, split_of

    cfg = _cfg(tmp_path, data, "nw", ablations=[], stage_sizes=[], label="no_worse")
    res = train_predictor(cfg)
    d = load_training_set(data)
    test = split_of(d.split_key()[0], cfg.split, cfg.split_salt) == 2
    for s in res["per_stage"]:
        k = s["stage"]
        assert s["positive_rate"] == pytest.approx(d.labels("no_worse")[test, k].mean())
        assert s["positive_rate"] != pytest.approx(d.agree_final[test, k].mean())
    _, meta = load_checkpoint(tmp_path / "nw" / "checkpoint")
    assert meta["training"]["config"]["label"] == "no_worse"


def test_cli(tmp_path, data, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"predictor_training:\n  data: {data}\n  out_dir: {tmp_path / 'cli'}\n  members: 2\n  epochs: 3\n"
                   "  hidden: [4]\n  ablations: []\n  progress: false\n")
    assert main(["train-predictor", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "testbed:s0" in out and "targets" in out and (tmp_path / "cli" / "checkpoint").is_dir()
    cfg.write_text("predictor_training:\n  data: x.h5\n  epoch: 3\n")
    assert main(["train-predictor", "--config", str(cfg)]) == 2
    assert "epoch" in capsys.readouterr().err


def test_cell_balance_changes_the_weights_and_is_recorded(tmp_path, data):
    """cell_balance weighs the (task, level) cells alike: other weights than the plain run, recorded in the
    checkpoint's training config; the held-out metrics are computed on the same unweighted test rows."""
    plain = train_predictor(_cfg(tmp_path, data, name="plain", ablations=[], members=1))
    bal = train_predictor(_cfg(tmp_path, data, name="bal", ablations=[], members=1, cell_balance=True))
    w0, _ = load_checkpoint(tmp_path / "plain" / "checkpoint")
    w1, meta = load_checkpoint(tmp_path / "bal" / "checkpoint")
    assert meta["training"]["config"]["cell_balance"] is True
    assert not np.array_equal(w0.head_w, w1.head_w)
    assert [s["n"] for s in bal["per_stage"]] == [s["n"] for s in plain["per_stage"]]
    assert all(s["auc"] > 0.7 for s in bal["per_stage"])
