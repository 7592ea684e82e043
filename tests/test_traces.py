"""HDF5 traces: schema, writer (temp name → rename, flush per batch), readers, merge, asd inspect, h5dump."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (trace files need it; requirements/base.txt)")

from asd.jobs.merge import merge_files
from asd.jobs.steps import synthetic
from asd.jobs.plan import JobConfig
from asd.traces import (CHECKSUM_ROWS_ATTR, CHECKSUMS_ATTR, FIELDS, NOT_RUN, PARTIAL_SUFFIX, SCHEMA_VERSION,
                        TraceDamaged, TraceWriter, read_many, read_traces, stored_checksums, to_pandas,
                        verify_checksums)

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
    verbose = subprocess.run(["h5ls", "-v", f"{p}/latency_s"], capture_output=True, text=True, check=True).stdout
    assert "fletcher32" in verbose                                  # HDF5's own filter: no plugin needed
    dump = subprocess.run(["h5dump", "-d", "/latency_s", str(p)], capture_output=True, text=True, check=True).stdout
    assert "H5T_IEEE_F64LE" in dump and "DATA {" in dump
    dump = subprocess.run(["h5dump", "-d", "/text", str(p)], capture_output=True, text=True, check=True).stdout
    assert "sample 0:" in dump and "H5T_CSET_UTF8" in dump
    subprocess.run(["h5dump", "-d", "/tokens", str(p)], capture_output=True, check=True)


def _flip(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_checksums_cover_every_dataset_and_do_not_depend_on_batching(tmp_path):
    a = _write(tmp_path / "a.h5", [range(0, 10), range(10, 25)])
    b = _write(tmp_path / "b.h5", [range(0, 3), range(3, 17), range(17, 25)])
    with h5py.File(a) as fa, h5py.File(b) as fb:
        (ra, da), (pa, _) = stored_checksums(fa)
        (rb, db), (pb, _) = stored_checksums(fb)
        assert ra == rb == 25 and da == db and set(da) == set(FIELDS)    # same rows → same digests
        assert (pa, pb) == (10, 17)                                      # the flush before the last one
        assert verify_checksums(fa) == (25, None)
        for name in FIELDS:                                              # filters cannot apply to vlen data
            assert fa[name].fletcher32 == (fa[name].dtype.kind != "O"), name
        assert fa.attrs[CHECKSUMS_ATTR].shape == (2, len(FIELDS)) and list(fa.attrs[CHECKSUM_ROWS_ATTR]) == [25, 10]
    c = _write(tmp_path / "c.h5", [range(0, 10), range(10, 24), range(30, 31)])
    with h5py.File(c) as fc:
        assert stored_checksums(fc)[0][1]["sample_id"] != da["sample_id"]


def test_a_flipped_byte_in_fixed_size_data_is_detected(tmp_path):
    p = _write(tmp_path / "a.h5", [range(0, 10), range(10, 25)])
    with h5py.File(p) as f:
        offset = f["latency_s"].id.get_chunk_info(0).byte_offset
    _flip(p, offset + 8 * 5 + 6)                           # inside row 1's latencies: an exponent byte
    with pytest.raises(TraceDamaged, match="dataset 'latency_s' is unreadable .*Can't synchronously read data"):
        read_traces(p)
    with h5py.File(p) as f:
        rows, problem = verify_checksums(f)
        assert rows == 0 and "'latency_s' is unreadable" in problem
    assert len(read_traces(p, fields=["sample_id", "score"])) == 25      # the other datasets still read
    with pytest.raises(TraceDamaged, match="latency_s"):
        merge_files([p], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / ("m.h5" + PARTIAL_SUFFIX)).exists()
    out = subprocess.run([sys.executable, "-m", "asd", "inspect", str(p)], capture_output=True, text=True,
                         check=True).stdout
    assert "checksums: DAMAGED: dataset 'latency_s' is unreadable" in out


def test_a_changed_byte_in_variable_length_text_is_detected(tmp_path):
    """Strings and token lists live in HDF5's global heap, which no filter covers: the SHA-256 does."""
    p = _write(tmp_path / "a.h5", [range(0, 10), range(10, 25)])
    data = p.read_bytes()
    at = data.index(b"sample 17: ") + len("sample ")
    with open(p, "r+b") as fh:                              # "sample 17" → "sample 97": still valid UTF-8
        fh.seek(at)
        fh.write(b"9")
    with h5py.File(p) as f:                                 # plain h5py reads the changed text silently
        assert f["text"][17].decode().startswith("sample 97: ")
    with pytest.raises(TraceDamaged, match="dataset 'text' does not match its sha256 checksum"):
        read_traces(p)
    assert len(read_traces(p, fields=["sample_id", "tokens"])) == 25
    assert len(read_traces(p, verify=False)) == 25


def test_a_writer_stopped_by_a_full_disk_is_not_trusted_beyond_what_verifies(tmp_path):
    """A real full file system (tmpfs): the flush that fails leaves a header ahead of its data. Readers count
    only the rows whose checksums hold, which here is none: the heap blocks of the vlen data are broken."""
    from jobs.helpers import fill_disk, small_tmpfs  # noqa: I001  (tests/ is on sys.path under pytest)

    with small_tmpfs("1m") as mnt:
        w = TraceWriter(mnt / "s.h5", K, _records([0])[1])
        before = 0
        for ids in (range(0, 8), range(8, 16)):
            w.append(_records(ids)[0])
            before = w.n
        fill_disk(mnt)
        with pytest.raises((OSError, RuntimeError), match="No space left on device"):
            for a in range(16, 4000, 8):
                w.append(_records(range(a, a + 8))[0])
        header = w.n
        with pytest.raises(Exception):      # closing a file whose flush failed fails too
            w.close(complete=False)
        partial = mnt / ("s.h5" + PARTIAL_SUFFIX)
        with h5py.File(partial) as f:
            n_header = int(f.attrs["n_complete"])
            rows, problem = verify_checksums(f)
        print("full disk: rows flushed before the fill", before, "header", n_header, "writer", header,
              "verified", rows, "problem", problem)
        assert n_header > rows and problem is not None
        if rows:
            got = read_traces(partial, allow_incomplete=True)
            assert len(got) == rows and got.data["sample_id"].tolist() == list(range(rows))
        else:
            with pytest.raises(TraceDamaged):
                read_traces(partial, allow_incomplete=True)
def test_batches_of_one_sample_roundtrip(tmp_path):
    """A one-sample batch (e.g. a shard of one sample) writes its token row whatever its length."""
    with TraceWriter(tmp_path / "one.h5", 2, ["a"]) as w:
        w.append({"sample_id": np.array([0]), "tokens": [np.arange(17)]})
        w.append({"sample_id": np.array([1]), "tokens": [np.arange(3)]})
    t = read_traces(tmp_path / "one.h5")
    assert [x.tolist() for x in t.data["tokens"]] == [list(range(17)), [0, 1, 2]]
