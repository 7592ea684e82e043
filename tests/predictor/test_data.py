"""The predictor's training set: loading through the schema's reader, the split by key hash, the rows."""
import hashlib
import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (training-set files need it; requirements/base.txt)")

from asd.core.features import FEATURE_NAMES
from asd.core.mlp import pair_index
from asd.predictor.data import (
    TRAINING_FIELDS,
    build_rows,
    cell_labels,
    cell_weights,
    fold_of,
    load_training_set,
    split_of,
)

from .datagen import synth_arrays, write_predictor_data


def test_load_roundtrip(tmp_path):
    p = write_predictor_data(tmp_path / "d.h5", N=50, seed=3)
    a = synth_arrays(50, 4, 3)
    d = load_training_set(p)
    assert (d.N, d.K) == (50, 4)
    assert d.stage_names == [f"testbed:s{k}" for k in range(4)]
    assert d.feature_names == FEATURE_NAMES and d.feature_schema_version == 1
    for name in TRAINING_FIELDS:
        got, want = getattr(d, name), a[name]
        assert got.dtype == (object if name == "task" else want.dtype), name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert list(d.task[:4]) == ["gsm8k", "mmlu", "humaneval", "truthfulqa"]
    with open(p, "rb") as f:
        assert d.sha256 == hashlib.sha256(f.read()).hexdigest()
    assert d.attrs["config"] == {"synthetic": True, "N": 50, "seed": 3} and d.attrs["schema"] == "asd-predictor-data"


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _replace(name, value):
    def fn(f):
        del f[name]
        f[name] = value

    return fn


_SWAPPED = list(FEATURE_NAMES)
_SWAPPED[3], _SWAPPED[4] = _SWAPPED[4], _SWAPPED[3]


# the refusals of asd.predictor_data.schema.read_predictor_data that tests/predictor_data/test_schema.py does not
# reach (another schema or version, another feature schema version, incomplete, empty, non-finite: there), as
# the trainer meets them, and the trainer's own (K < 2)
@pytest.mark.parametrize("attrs,drop,edit,match", [
    ({"stage_names": json.dumps(["a", "b", "c"])}, (), None, "3 stage_names .* but num_stages = 4"),
    ({"feature_names": json.dumps(_SWAPPED)}, (), None, "feature schema 1 .* regenerate the data"),
    ({}, ("accept_frac",), None, r"missing dataset\(s\) \['accept_frac'\]"),
    ({}, (), _replace("score", np.zeros((20, 5), np.float32)), r"'score' has shape \(20, 5\), expected \(20, 4\)"),
    ({}, (), _replace("agree_final", np.zeros((20, 4))), "'agree_final' has dtype float64, expected uint8"),
    ({}, (), lambda f: f["sample_id"].write_direct(np.arange(20)[::-1].copy()), "sample_id must be strictly increasing"),
])
def test_off_schema_files_are_refused(tmp_path, attrs, drop, edit, match):
    p = write_predictor_data(tmp_path / "d.h5", N=20, attrs=attrs, drop=drop)
    if edit is not None:
        _edit(p, edit)
    with pytest.raises(ValueError, match=match):
        load_training_set(p)


def test_one_stage_is_not_a_predictor_training_set(tmp_path):
    with pytest.raises(ValueError, match="1 stage.* a predictor needs K >= 2"):
        load_training_set(write_predictor_data(tmp_path / "d.h5", N=20, K=1))


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
    d = load_training_set(write_predictor_data(tmp_path / "d.h5", N=30, seed=1))
    rows = build_rows(d, np.array([0, 5, 7]))
    K = 4
    assert len(rows) == 3 * (K - 1)
    assert rows.stage.tolist() == [0, 1, 2] * 3 and rows.sample.tolist() == [0] * 3 + [5] * 3 + [7] * 3
    assert np.isfinite(rows.x).all()
    col = FEATURE_NAMES.index("accept_ratio_prev")
    assert (rows.x[rows.stage == 0, col] == 1.0).all()  # no previous draft at stage 0: 1.0, as the cascade records
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


def test_no_worse_labels_are_the_score_comparison_with_the_final_stage(tmp_path):
    """label no_worse: r_m = 1 iff score_m >= score_{K-1} (so 1 − r_m is the accuracy lost by stopping at m);
    the rows' r targets follow the label, everything else does not move; an unknown label names the valid ones."""
    d = load_training_set(write_predictor_data(tmp_path / "d.h5", N=60, seed=2))
    want = (d.score >= d.score[:, [3]]).astype(np.uint8)  # [N, K]
    np.testing.assert_array_equal(d.labels("no_worse"), want)
    np.testing.assert_array_equal(d.labels("agree_final"), d.agree_final)
    assert (want[:, 3] == 1).all() and (want != d.agree_final).any()
    samples = np.arange(0, 60, 3)
    plain, nw = build_rows(d, samples), build_rows(d, samples, label="no_worse")
    np.testing.assert_array_equal(nw.y_r, want[nw.sample][:, :3])
    for name in ("x", "stage", "sample", "w_r", "y_a", "w_a"):
        np.testing.assert_array_equal(getattr(nw, name), getattr(plain, name), err_msg=name)
    with pytest.raises(ValueError, match="label: unknown 'correct'; valid: agree_final, no_worse"):
        d.labels("correct")


def test_cell_weights_balance_the_cells(tmp_path):
    """Every (task, level) cell present gets the same total weight; the weights' mean is 1; rows carry them."""
    d = load_training_set(write_predictor_data(tmp_path / "d.h5", N=200, seed=3))
    samples = np.arange(0, 200, 2)
    w = cell_weights(d, samples)
    key = [f"{t}|{lv}" for t, lv in zip(np.asarray(d.task)[samples], np.asarray(d.level)[samples])]
    cells = sorted(set(key))
    totals = [w[[k == c for k in key]].sum() for c in cells]
    assert len(cells) > 3 and len({len([k for k in key if k == c]) for c in cells}) > 1  # unequal counts
    np.testing.assert_allclose(totals, samples.size / len(cells))
    assert w.mean() == pytest.approx(1.0)
    K = 4
    plain, weighted = build_rows(d, samples), build_rows(d, samples, w)
    rw = np.repeat(w, K - 1).astype(np.float32)[:, None]
    np.testing.assert_allclose(weighted.w_r, plain.w_r * rw)
    np.testing.assert_allclose(weighted.w_a, plain.w_a * rw)
    np.testing.assert_array_equal(weighted.y_r, plain.y_r)


def test_cell_labels_join_task_and_level():
    got = cell_labels(np.array(["gsm8k", "mmlu"], dtype=object), np.array([2, 5], dtype=np.int8))
    assert got.tolist() == ["gsm8k|2", "mmlu|5"]


def test_split_key_is_the_prompt_key(tmp_path):
    a = synth_arrays(200, 4, 2)
    a["prompt_key"] = (np.arange(200) // 2 * 7919 + 3).astype(np.int64)  # every prompt used twice
    d = load_training_set(write_predictor_data(tmp_path / "b.h5", arrays=a))
    key, name = d.split_key()
    assert name == "prompt_key" and d.split_key("prompt_key")[1] == "prompt_key"
    s = split_of(key)
    np.testing.assert_array_equal(s[0::2], s[1::2])  # both uses of a prompt in the same split
    key, name = d.split_key("sample_id")
    assert name == "sample_id" and (key == d.sample_id).all()
    assert (split_of(key)[0::2] != split_of(key)[1::2]).any()  # by sample id, a prompt's two uses may part
