"""The predictor's training set: reader checks, the split by sample-id hash, the rows."""
import json

import numpy as np
import pytest

from asd.core.features import FEATURE_NAMES
from asd.core.mlp import pair_index
from asd.predictor.data import build_rows, check_feature_schema, fold_of, read_predictor_data, split_of

from .datagen import synth_arrays, write_predictor_data


def test_read_roundtrip(tmp_path):
    p = write_predictor_data(tmp_path / "d.h5", N=50, seed=3)
    a = synth_arrays(50, 4, 3)
    d = read_predictor_data(p)
    assert (d.N, d.K) == (50, 4)
    assert d.stage_names == [f"testbed:s{k}" for k in range(4)]
    assert d.feature_names == FEATURE_NAMES
    np.testing.assert_array_equal(d.features, a["features"])
    np.testing.assert_array_equal(d.agree_final, a["agree_final"])
    assert list(d.task[:4]) == ["gsm8k", "mmlu", "humaneval", "truthfulqa"]
    assert len(d.sha256) == 64
    check_feature_schema(d)


@pytest.mark.parametrize("attrs,drop,match", [
    ({"schema": "asd-traces"}, (), "not a predictor training set"),
    ({"schema_version": 2}, (), "schema_version 2"),
    ({"stage_names": json.dumps(["a", "b", "c"])}, (), "K=4 but 3 stage_names"),
    ({"stage_names": json.dumps(["a", "b", "c"]), "K": 3}, (), "has shape"),
    ({}, ("accept_frac",), "missing datasets \\['accept_frac'\\]"),
    ({"feature_names": None}, (), "missing root attribute 'feature_names'"),
    ({"complete": False}, (), "did not close"),
])
def test_off_schema_files_are_refused(tmp_path, attrs, drop, match):
    p = write_predictor_data(tmp_path / "d.h5", N=20, attrs=attrs, drop=drop)
    with pytest.raises(ValueError, match=match):
        read_predictor_data(p)


def test_other_feature_schema_is_refused(tmp_path):
    a = synth_arrays(20, 4, 0)
    p = write_predictor_data(tmp_path / "d.h5", attrs={"feature_schema_version": 99}, arrays=a)
    with pytest.raises(ValueError, match="feature schema v99"):
        check_feature_schema(read_predictor_data(p))
    names = list(FEATURE_NAMES)
    names[3], names[4] = names[4], names[3]
    p = write_predictor_data(tmp_path / "e.h5", attrs={"feature_names": json.dumps(names)}, arrays=a)
    with pytest.raises(ValueError, match="regenerate"):
        check_feature_schema(read_predictor_data(p))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such training-data file"):
        read_predictor_data(tmp_path / "absent.h5")


def test_split_is_a_function_of_the_sample_id():
    ids = np.arange(100_000, dtype=np.int64) * 7 + 11
    s = split_of(ids)
    frac = np.bincount(s, minlength=3) / ids.size
    np.testing.assert_allclose(frac, [0.70, 0.15, 0.15], atol=0.01)
    perm = np.random.default_rng(0).permutation(ids.size)
    np.testing.assert_array_equal(split_of(ids[perm]), s[perm])  # order does not matter
    np.testing.assert_array_equal(split_of(ids[:10]), s[:10])  # nor the file's size
    assert (split_of(ids, salt=1) != s).mean() > 0.3  # the salt reshuffles
    f = fold_of(ids, 1)
    assert set(np.unique(f)) == {0, 1} and abs(f.mean() - 0.5) < 0.01


def test_rows_and_masks(tmp_path):
    d = read_predictor_data(write_predictor_data(tmp_path / "d.h5", N=30, seed=1))
    rows = build_rows(d, np.array([0, 5, 7]))
    K = 4
    assert len(rows) == 3 * (K - 1)
    assert rows.stage.tolist() == [0, 1, 2] * 3 and rows.sample.tolist() == [0] * 3 + [5] * 3 + [7] * 3
    assert np.isfinite(rows.x).all()
    col = FEATURE_NAMES.index("accept_ratio_prev")
    assert (rows.x[rows.stage == 0, col] == 1.0).all()  # NaN at stage 0 → 1.0, what the cascade records
    for i in range(len(rows)):
        k, n = rows.stage[i], rows.sample[i]
        assert rows.w_r[i].tolist() == [float(m >= k) for m in range(K - 1)]
        np.testing.assert_array_equal(rows.y_r[i], d.agree_final[n, : K - 1])
        for j in range(K - 1):
            for m in range(j + 1, K):
                p = pair_index(j, m, K)
                assert rows.w_a[i, p] == float(j >= k)
                if j >= k:
                    assert rows.y_a[i, p] == pytest.approx(d.accept_frac[n, j, m])
    y, w = rows.targets()
    assert y.shape == w.shape == (9, (K - 1) + K * (K - 1) // 2)


def test_split_key_prefers_prompt_key(tmp_path):
    a = synth_arrays(200, 4, 2)
    d0 = read_predictor_data(write_predictor_data(tmp_path / "a.h5", arrays=a))
    assert d0.split_key()[1] == "sample_id"
    with pytest.raises(ValueError, match="no prompt_key"):
        d0.split_key("prompt_key")
    a["prompt_key"] = (np.arange(200) // 2 * 7919 + 3).astype(np.int64)  # every prompt used twice
    d = read_predictor_data(write_predictor_data(tmp_path / "b.h5", arrays=a))
    key, name = d.split_key()
    assert name == "prompt_key"
    s = split_of(key)
    np.testing.assert_array_equal(s[0::2], s[1::2])  # both uses of a prompt in the same split
    assert d.split_key("sample_id")[1] == "sample_id"
