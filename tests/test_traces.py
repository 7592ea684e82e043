"""HDF5 traces: schema, writer (temp name → rename, flush per batch), readers, merge, asd inspect, h5dump."""
from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from asd.jobs.merge import merge_files
from asd.jobs.steps import synthetic
from asd.jobs.plan import JobConfig
from asd.traces import (FIELDS, NOT_RUN, PARTIAL_SUFFIX, SCHEMA_VERSION, TraceWriter, read_many, read_traces,
                        to_pandas)

K = 4


def _records(ids, seed=3):
    cfg = {"jobs": JobConfig(output_dir="unused", seed=seed)}
    rec = synthetic(np.asarray(ids, np.int64), cfg)
    names = rec.pop("feature_names")
    return rec, names


def _write(path, batches, attrs=None):
    names = _records([0])[1]
    with TraceWriter(path, K, names, attrs or {"seed": 3, "config": {"a": 1}, "lam": float("inf")}) as w:
        for ids in batches:
            w.append(_records(ids)[0])
    return path


def test_roundtrip_every_field_dtype_shape_and_provenance(tmp_path):
    p = _write(tmp_path / "t.h5", [range(0, 10), range(10, 25)])
    t = read_traces(p)
    rec, names = _records(range(25))
    assert len(t) == 25 and t.feature_names == names
    for name, (kind, dims, fill) in FIELDS.items():
        got = t.data[name]
        assert got.shape[0] == 25 and got.ndim == 1 + len(dims), name
        if name not in rec:  # a field the step leaves out (the synthetic step has no batches): its fill value
            assert np.array_equal(got, np.full(got.shape, fill, dtype=kind), equal_nan=got.dtype.kind == "f"), name
            continue
        if kind == "vlen_int32":
            assert all(np.array_equal(a, b) and a.dtype == np.int32 for a, b in zip(got, rec[name]))
        elif kind == "str":
            assert list(got) == list(rec[name])
        else:
            assert got.dtype == np.dtype(kind)
            assert np.array_equal(got, np.asarray(rec[name]).astype(kind), equal_nan=got.dtype.kind == "f")
    assert t.attrs["schema_version"] == SCHEMA_VERSION and t.attrs["config"] == {"a": 1}
    assert t.attrs["complete"] and t.attrs["n_complete"] == 25 and t.attrs["lam"] == float("inf")
    with h5py.File(p) as f:
        assert f["features"].maxshape == (None, K, len(names)) and f["features"].chunks[0] >= 1
    assert read_traces(p, fields=["score"], rows=slice(5, 8)).data["score"].shape == (3,)


def test_absent_fields_get_fill_values_and_bad_batches_name_the_field(tmp_path):
    with TraceWriter(tmp_path / "m.h5", K, ["x"]) as w:
        w.append({"sample_id": np.array([5, 2])})
        with pytest.raises(ValueError, match=r"field 'ran': expected shape \(2, 4\)"):
            w.append({"sample_id": np.array([7, 8]), "ran": np.zeros((2, 3), bool)})
        with pytest.raises(ValueError, match="unknown trace field.*'rann'"):
            w.append({"sample_id": np.array([9]), "rann": np.zeros((1, 4))})
        with pytest.raises(ValueError, match="ascend across batches"):
            w.append({"sample_id": np.array([3])})
        with pytest.raises(ValueError, match="duplicate sample ids"):
            w.append({"sample_id": np.array([11, 11])})
    t = read_traces(tmp_path / "m.h5")
    assert t.data["sample_id"].tolist() == [2, 5]                 # rows sorted by id
    assert (t.data["decision"] == NOT_RUN).all() and np.isnan(t.data["score"]).all()
    assert list(t.data["text"]) == ["", ""] and [len(x) for x in t.data["tokens"]] == [0, 0]


def test_writer_uses_temp_name_until_closed_and_readers_trust_flushed_rows(tmp_path):
    p = tmp_path / "s.h5"
    w = TraceWriter(p, K, _records([0])[1])
    w.append(_records(range(8))[0])
    w.append(_records(range(8, 12))[0])
    partial = p.with_name(p.name + PARTIAL_SUFFIX)
    assert partial.exists() and not p.exists()
    w.close(complete=False)
    with pytest.raises(ValueError, match="incomplete"):
        read_traces(partial)
    assert len(read_traces(partial, allow_incomplete=True)) == 12


def test_readers_refuse_another_schema_version(tmp_path):
    a = _write(tmp_path / "a.h5", [range(4)])
    b = _write(tmp_path / "b.h5", [range(4, 8)])
    with h5py.File(b, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1} but this asd reads version {SCHEMA_VERSION}"):
        read_many([a, b])
    with pytest.raises(ValueError, match="schema version"):
        merge_files([a, b], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_merge_is_a_sorted_streaming_kway_merge(tmp_path):
    # interleaved ids across three files, small blocks so every block touches several files
    parts = [np.arange(i, 300, 3) for i in range(3)]
    files = [_write(tmp_path / f"p{i}.h5", [ids[:40], ids[40:]]) for i, ids in enumerate(parts)]
    stats = merge_files(files[::-1], tmp_path / "m.h5", block_rows=37, expected_ids=np.arange(300))
    assert stats == {"samples": 300, "files": 3, "duplicates": 0, "missing": 0}
    m = read_traces(tmp_path / "m.h5")
    whole = _records(range(300))[0]
    assert m.data["sample_id"].tolist() == list(range(300))
    assert np.array_equal(m.data["predictions"], whole["predictions"], equal_nan=True)
    assert all(np.array_equal(a, b) for a, b in zip(m.data["tokens"], whole["tokens"]))
    assert list(m.data["text"]) == whole["text"] and m.attrs["merged_from"] == 3


def test_merge_refuses_duplicates_and_missing_ids(tmp_path):
    a = _write(tmp_path / "a.h5", [range(0, 10)])
    b = _write(tmp_path / "b.h5", [range(5, 12)])
    with pytest.raises(ValueError, match="5 sample id.*more than one shard"):
        merge_files([a, b], tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"2 expected sample id\(s\) missing \(e.g. \[10, 11\]\)"):
        merge_files([a], tmp_path / "m.h5", expected_ids=np.arange(12))


def test_to_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    df = to_pandas(read_traces(_write(tmp_path / "a.h5", [range(6)])))
    assert len(df) == 6 and {"ran_3", "predictions_0_3", "entropy_mean_0", "text"} <= set(df.columns)
    assert isinstance(df, pd.DataFrame)


def test_asd_inspect_prints_schema_counts_and_provenance(tmp_path):
    p = _write(tmp_path / "a.h5", [range(20)])
    out = subprocess.run([sys.executable, "-m", "asd", "inspect", str(p)], capture_output=True, text=True,
                         check=True).stdout
    assert f"schema version {SCHEMA_VERSION}" in out and "predictions" in out and "samples: 20" in out
    assert "git_revision" in out and "final_stage_histogram" in out
    bad = subprocess.run([sys.executable, "-m", "asd", "inspect", str(tmp_path / "nope.h5")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="hdf5-tools not installed (scripts/slurm_up.sh installs it)")
def test_files_open_in_h5ls_and_h5dump(tmp_path):
    p = _write(tmp_path / "a.h5", [range(5)])
    ls = subprocess.run(["h5ls", "-r", str(p)], capture_output=True, text=True, check=True).stdout
    assert "/features" in ls and "Dataset {5/Inf, 4, 8}" in ls
    dump = subprocess.run(["h5dump", "-d", "/text", str(p)], capture_output=True, text=True, check=True).stdout
    assert "sample 0:" in dump and "H5T_CSET_UTF8" in dump
    subprocess.run(["h5dump", "-d", "/tokens", str(p)], capture_output=True, check=True)


def test_batches_of_one_sample_roundtrip(tmp_path):
    """A one-sample batch (e.g. a shard of one sample) writes its token row whatever its length."""
    with TraceWriter(tmp_path / "one.h5", 2, ["a"]) as w:
        w.append({"sample_id": np.array([0]), "tokens": [np.arange(17)]})
        w.append({"sample_id": np.array([1]), "tokens": [np.arange(3)]})
    t = read_traces(tmp_path / "one.h5")
    assert [x.tolist() for x in t.data["tokens"]] == [list(range(17)), [0, 1, 2]]
