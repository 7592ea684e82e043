"""The training-set schema: writer round trip, h5ls, and the reader's refusals (another schema, empty, NaN)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (training-set files need it; requirements/base.txt)")

from asd.core.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from asd.predictor_data.schema import (
    SCHEMA,
    check_records,
    fields,
    file_attrs,
    prompt_key,
    read_predictor_data,
    to_pandas,
)
from asd.traces import TraceWriter

K, F = 3, len(FEATURE_NAMES)


def _batch(ids: np.ndarray, rng: np.random.Generator) -> dict:
    B = len(ids)
    rec = {
        "sample_id": ids,
        "task": ["gsm8k", "mmlu"] * (B // 2) + ["humaneval"] * (B % 2),
        "level": np.full(B, 3, np.int8),
        "prompt_len": rng.integers(10, 90, B).astype(np.int32),
        "prompt_key": rng.integers(-(2**62), 2**62, B),
        "repeat": np.zeros(B, np.int16),
        "features": rng.standard_normal((B, K, F)).astype(np.float32),
        "draft_len": rng.integers(1, 9, (B, K)).astype(np.int32),
        "accepted_len": np.full((B, K, K), -1, np.int32),
        "accept_frac": np.full((B, K, K), np.nan, np.float32),
        "agree_final": rng.integers(0, 2, (B, K)).astype(np.uint8),
        "score": rng.integers(0, 2, (B, K)).astype(np.float32),
        "gen_latency_s": rng.random((B, K)),
        "verify_latency_s": np.full((B, K, K), np.nan),
        "batch_size": np.full(B, B, np.int16),
    }
    for k in range(K):
        rec[f"tokens_{k}"] = [rng.integers(0, 99, int(n)) for n in rec["draft_len"][:, k]]
    return rec


def _attrs():
    return {"feature_names": list(FEATURE_NAMES), "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "stage_names": ["a", "b", "c"], "K": K, "seed": 3}  # fmt: skip


def _write(path, batches, attrs=None):
    with TraceWriter(path, K, FEATURE_NAMES, attrs or _attrs(), schema=SCHEMA) as w:
        for b in batches:
            w.append(b)
    return path


def test_round_trip_h5ls_and_flat_columns(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _batch(np.arange(0, 6), rng), _batch(np.arange(6, 9), rng)
    p = _write(tmp_path / "d.h5", [a, b])
    d = read_predictor_data(p)
    assert len(d) == 9 and d.K == K and d.feature_names == FEATURE_NAMES and d.attrs["schema"] == "asd-predictor-data"
    assert np.array_equal(d.data["features"], np.concatenate([a["features"], b["features"]]))
    assert all(np.array_equal(x, y) for x, y in zip(d.data["tokens_2"], a["tokens_2"] + b["tokens_2"]))
    assert list(d.data["task"][:2]) == ["gsm8k", "mmlu"] and set(d.data) == set(fields(K))
    if shutil.which("h5ls"):
        out = subprocess.run(["h5ls", str(p)], capture_output=True, text=True, check=True).stdout
        assert "features                 Dataset {9/Inf, 3, 39}" in out and "tokens_0" in out
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            to_pandas(d)
    else:
        df = to_pandas(d)
        assert len(df) == 9 and "entropy_mean_2" in df and "accepted_len_0_2" in df


def test_another_schema_is_refused(tmp_path):
    from asd.traces import SCHEMA_VERSION as TRACE_VERSION

    with TraceWriter(tmp_path / "t.h5", K, ["x"], {"schema_version": TRACE_VERSION}) as w:  # cascade traces
        w.append({"sample_id": np.arange(2)})
    with pytest.raises(ValueError, match="a 'asd-traces' file, not 'asd-predictor-data'"):
        read_predictor_data(tmp_path / "t.h5")
    p = _write(tmp_path / "v.h5", [_batch(np.arange(4), np.random.default_rng(1))])
    with h5py.File(p, "a") as f:
        f.attrs["schema_version"] = 7
    with pytest.raises(ValueError, match="asd-predictor-data schema version 7 but this asd reads version 1"):
        read_predictor_data(p)
    p = _write(tmp_path / "f.h5", [_batch(np.arange(4), np.random.default_rng(1))], {**_attrs(), "feature_schema_version": 0})
    with pytest.raises(ValueError, match="feature schema 0 .* this asd computes feature schema 1"):
        read_predictor_data(p)
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_predictor_data(tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError):
        read_predictor_data(tmp_path / "missing.h5")


def test_empty_incomplete_and_nan_are_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no samples"):
        read_predictor_data(_write(tmp_path / "e.h5", []))
    w = TraceWriter(tmp_path / "i.h5", K, FEATURE_NAMES, _attrs(), schema=SCHEMA)
    w.append(_batch(np.arange(2), np.random.default_rng(2)))
    w.close(complete=False)
    with pytest.raises(ValueError, match="incomplete file"):
        read_predictor_data(tmp_path / "i.h5.partial")
    bad = _batch(np.arange(10, 14), np.random.default_rng(3))
    bad["features"][2, 1, FEATURE_NAMES.index("prompt_nll")] = np.nan
    with pytest.raises(ValueError, match="1 sample.* non-finite features, e.g. sample 12 stage 1 column 'prompt_nll'"):
        check_records(bad)
    with pytest.raises(ValueError, match="no samples"):
        check_records({"sample_id": np.zeros(0, np.int64), "features": np.zeros((0, K, F), np.float32)})
    p = _write(tmp_path / "n.h5", [bad])  # a file written around the check is still refused on reading
    with pytest.raises(ValueError, match="non-finite features"):
        read_predictor_data(p)
    assert len(read_predictor_data(p, check_finite=False)) == 4


def test_feature_schema_version_pins_the_feature_names():
    """Changing asd.core.features.FEATURE_NAMES must come with a FEATURE_SCHEMA_VERSION bump (update both)."""
    assert FEATURE_SCHEMA_VERSION == 1 and len(FEATURE_NAMES) == 39
    assert FEATURE_NAMES[:5] == ["stage", "prompt_len", "prompt_nll", "draft_len", "ended_eos"]
    assert FEATURE_NAMES[17:23] == ["low_conf_frac", "mean_logprob", "accept_ratio_prev", "digit_frac",
                                     "num_lines", "nesting_depth"]  # fmt: skip


def test_file_attrs_and_prompt_key():
    from asd.run_config import load_config

    a = file_attrs(load_config("configs/predictor_data_small.yaml"))
    assert a["stage_names"] == ["testbed:s0", "testbed:s1", "testbed:s2", "testbed:s3"] and a["K"] == 4
    assert a["stage_labels"] == ["s0", "s1", "s2", "s3"] and a["max_new_tokens"] == 32
    assert prompt_key("a") == prompt_key("a") != prompt_key("b")
