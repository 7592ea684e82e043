"""Checkpoints: round trip, bytes, hashes, compatibility checks, the predictor a config builds."""
import dataclasses
import json

import numpy as np
import pytest

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, NUM_FEATURES
from asd.core.mlp import MLPPredictor, random_weights
from asd.core.predictor import PriorPredictor
from asd.predictor.checkpoint import (
    CheckpointError,
    build_predictor,
    check_compatible,
    load_checkpoint,
    predictor_for,
    save_checkpoint,
)
from asd.predictor.config import PredictorConfig

STAGES = [f"testbed:s{k}" for k in range(4)]


def _meta():
    return {"stage_names": STAGES, "feature_schema_version": FEATURE_SCHEMA_VERSION, "training": {"seed": 0}}


def _weights(seed=0, K=4):
    w = random_weights(np.random.default_rng(seed), FEATURE_NAMES, K, 5, (8,))
    # stored float32 like trained weights, so that the round trip is exact
    layers = tuple((W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for W, b in w.layers)
    return dataclasses.replace(w, layers=layers, head_w=w.head_w.astype(np.float32).astype(np.float64),
                               head_b=w.head_b.astype(np.float32).astype(np.float64))


def test_round_trip_and_bytes(tmp_path):
    w = _weights()
    a = save_checkpoint(tmp_path / "a", w, _meta())
    b = save_checkpoint(tmp_path / "b", w, _meta())
    for name in ("weights.safetensors", "predictor.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    w2, meta = load_checkpoint(a / "predictor.json")
    assert meta["K"] == 4 and meta["members"] == 5 and meta["hidden"] == [8] and len(meta["checksum"]) == 64
    x = np.random.default_rng(1).standard_normal((9, NUM_FEATURES)).astype(np.float32)
    st = np.arange(9) % 4
    for got, want in zip(MLPPredictor(w2).predict(x, st, 4), MLPPredictor(w).predict(x, st, 4)):
        np.testing.assert_array_equal(got, want)


def test_corruption_is_detected(tmp_path):
    d = save_checkpoint(tmp_path / "c", _weights(), _meta())
    blob = bytearray((d / "weights.safetensors").read_bytes())
    blob[-3] ^= 1
    (d / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(d)
    d = save_checkpoint(tmp_path / "e", _weights(), _meta())
    meta = json.loads((d / "predictor.json").read_text())
    meta["stage_names"] = ["x", "y", "z", "w"]
    (d / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(d)
    with pytest.raises(FileNotFoundError, match="no predictor checkpoint"):
        load_checkpoint(tmp_path / "absent")


def test_incompatible_checkpoints(tmp_path):
    d = save_checkpoint(tmp_path / "k", _weights(), _meta())
    _, meta = load_checkpoint(d)
    check_compatible(meta, STAGES)
    with pytest.raises(CheckpointError, match="K=4 stages .* K=3 stages"):
        check_compatible(meta, STAGES[:3])
    with pytest.raises(CheckpointError, match="stages .*testbed:s3.*; the hierarchy's stages are .*other"):
        check_compatible(meta, STAGES[:3] + ["other"])
    with pytest.raises(CheckpointError, match="feature schema v7"):
        check_compatible({**meta, "feature_schema_version": 7}, STAGES)
    with pytest.raises(CheckpointError, match="feature schema"):
        check_compatible({**meta, "feature_names": FEATURE_NAMES[:-1]}, STAGES)
    # the same errors through a config
    cfg = PredictorConfig(kind="mlp", checkpoint=str(d))
    assert isinstance(build_predictor(cfg, STAGES), MLPPredictor)
    with pytest.raises(CheckpointError, match="K=3"):
        build_predictor(cfg, STAGES[:3])
    # a checkpoint for K = 3 asked to serve K = 4
    d3 = save_checkpoint(tmp_path / "k3", _weights(K=3), {**_meta(), "stage_names": STAGES[:3]})
    pred = build_predictor(PredictorConfig(kind="mlp", checkpoint=str(d3)), STAGES[:3])
    with pytest.raises(ValueError, match="trained for K=3"):
        pred.predict(np.zeros((2, NUM_FEATURES), np.float32), np.zeros(2, np.int64), 4)


def test_config_section():
    assert isinstance(build_predictor(None, STAGES), PriorPredictor)
    assert isinstance(build_predictor(PredictorConfig(), STAGES), PriorPredictor)
    with pytest.raises(ValueError, match="checkpoint is required"):
        PredictorConfig(kind="mlp")
    with pytest.raises(ValueError, match="^PredictorConfig.kind: invalid value 'forest'; valid choices: 'prior', 'mlp'$"):
        PredictorConfig(kind="forest")


def test_predictor_for_a_run_config(tmp_path):
    from asd.run_config import load_config

    d = save_checkpoint(tmp_path / "ck", _weights(), _meta())
    for stages, ok in ((STAGES, True), (STAGES[::-1], False)):
        cfg = tmp_path / "run.yaml"
        st = "\n".join(f"    - {{name: s{i}, model: \"{m}\"}}" for i, m in enumerate(stages))
        cfg.write_text(f"hierarchy:\n  name: t\n  stages:\n{st}\npredictor:\n  kind: mlp\n  checkpoint: {d}\n")
        sections = load_config(cfg)
        if ok:
            assert isinstance(predictor_for(sections), MLPPredictor)
        else:
            with pytest.raises(CheckpointError, match="hierarchy's stages"):
                predictor_for(sections)
