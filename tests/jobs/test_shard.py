"""The shard runner: deterministic, resumable after kill -9, truncated files redone, foreign files refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is not installed (trace files need it; requirements/base.txt)")

from asd.run_config import load_config
from asd.jobs.merge import merge_run
from asd.jobs.plan import ShardPlan, prepare_output_dir
from asd.jobs.shard import check_shard, run_shard, shard_state
from asd.jobs.status import format_status, run_status
from asd.traces import PARTIAL_SUFFIX, SCHEMA_VERSION

from .helpers import reference, same_traces, write_config


def _run_all(cfg: Path, shards: int) -> Path:
    prepare_output_dir(load_config(cfg), cfg)
    for i in range(shards):
        run_shard(str(cfg), i, show_progress=False)
    return Path(merge_run(str(cfg))["path"])


def test_rerun_and_other_shard_counts_give_identical_traces(tmp_path):
    ref = reference(tmp_path)
    again = _run_all(write_config(tmp_path / "b.yaml", tmp_path / "b"), 4)
    other = _run_all(write_config(tmp_path / "c.yaml", tmp_path / "c", shards=7, batch_size=5), 7)
    assert same_traces(ref, again)["samples"] == 120
    from asd.traces import read_traces
    a, c = read_traces(ref), read_traces(other)
    for name in ("sample_id", "features", "decision", "latency_s"):   # same rows whatever the sharding
        assert np.array_equal(a.data[name], c.data[name], equal_nan=True), name


def test_finished_shard_is_skipped(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a")
    _run_all(cfg, 4)
    p = ShardPlan(load_config(cfg)["jobs"]).layout.shard(2)
    mtime = p.stat().st_mtime_ns
    assert run_shard(str(cfg), 2, show_progress=False)["skipped"]
    assert p.stat().st_mtime_ns == mtime


def test_kill_9_mid_write_then_rerun_loses_and_duplicates_nothing(tmp_path):
    """A real process killed with SIGKILL after some batches were flushed; the rerun resumes from them."""
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", num_samples=160, shards=1, batch_size=8,
                       step_options={"delay_s": 0.15})
    prepare_output_dir(load_config(cfg), cfg)
    plan = ShardPlan(load_config(cfg)["jobs"])
    partial = plan.layout.shard(0).with_name(plan.layout.shard(0).name + PARTIAL_SUFFIX)
    proc = subprocess.Popen([sys.executable, "-m", "asd.jobs", "shard", "--config", str(cfg), "--index", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    rows = 0
    while time.time() < deadline and rows < 40:
        time.sleep(0.1)
        try:
            rows = shard_state(plan.layout.shard(0), plan.sample_ids(0), _fp(cfg), peek=True)[1]
        except (OSError, ValueError):
            rows = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not plan.layout.shard(0).exists()
    state, flushed = shard_state(plan.layout.shard(0), plan.sample_ids(0), _fp(cfg))
    assert state == "partial" and 40 <= flushed < 160
    assert "partial" in format_status(run_status(tmp_path / "a"))
    stats = run_shard(str(cfg), 0, show_progress=False)
    assert stats["resumed_from"] == flushed and stats["written"] == 160 - flushed
    merged = Path(merge_run(str(cfg))["path"])
    counts = same_traces(reference(tmp_path, num_samples=160, shards=1), merged)
    assert counts == {"samples": 160, "unique": 160, "lost": 0, "duplicated": 0}


def _fp(cfg):
    from asd.jobs.plan import fingerprint
    return fingerprint(load_config(cfg))


def test_truncated_shard_file_is_redone(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a")
    _run_all(cfg, 4)
    (tmp_path / "a" / "traces.h5").unlink()
    p = ShardPlan(load_config(cfg)["jobs"]).layout.shard(1)
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size // 2)
    assert shard_state(p, ShardPlan(load_config(cfg)["jobs"]).sample_ids(1), _fp(cfg))[0] == "corrupt"
    with pytest.raises(ValueError, match=r"1 shard\(s\) not done: 1 \(corrupt"):
        merge_run(str(cfg))
    assert not run_shard(str(cfg), 1, show_progress=False)["skipped"]
    assert list(p.parent.glob("*.corrupt-0"))          # the bad file is kept aside, not deleted
    counts = same_traces(reference(tmp_path), Path(merge_run(str(cfg))["path"]))
    assert counts["lost"] == 0 and counts["duplicated"] == 0


def test_shard_of_another_schema_version_or_run_is_refused_untouched(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a")
    _run_all(cfg, 4)
    p = ShardPlan(load_config(cfg)["jobs"]).layout.shard(0)
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = 0
    before = p.read_bytes()
    with pytest.raises(ValueError, match=f"schema version 0 but this asd reads version {SCHEMA_VERSION}"):
        run_shard(str(cfg), 0, show_progress=False)
    with pytest.raises(ValueError, match="schema version 0"):
        merge_run(str(cfg))
    assert p.read_bytes() == before
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["run_fingerprint"] = "0123456789abcdef"
    with pytest.raises(ValueError, match="shard of another run"):
        run_shard(str(cfg), 0, show_progress=False)


def test_evaluate_phase_writes_its_own_shards_and_merged_file(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=2, evaluate_step="asd.jobs.steps:synthetic")
    prepare_output_dir(load_config(cfg), cfg)
    for i in range(2):
        run_shard(str(cfg), i, phase="evaluate", show_progress=False)
    stats = merge_run(str(cfg), phase="evaluate")
    assert Path(stats["path"]).name == "traces-evaluate.h5" and stats["samples"] == 120
    assert (tmp_path / "a" / "shards-evaluate").is_dir() and not (tmp_path / "a" / "shards").exists()
    no_eval = write_config(tmp_path / "b.yaml", tmp_path / "b", shards=2)
    with pytest.raises(ValueError, match="evaluate_step is not set"):
        run_shard(str(no_eval), 0, phase="evaluate", show_progress=False)


def test_damaged_finished_shards_are_detected_moved_aside_and_redone(tmp_path):
    """Bytes changed inside finished shards (a fixed-size dataset, caught by Fletcher-32, and a string in the
    heap, caught by the SHA-256): status says damaged and does not count them, the merge refuses, a rerun of
    the shards redoes them and the merge is the same as an uninterrupted run's."""
    from asd.traces import TraceDamaged

    from .helpers import flip_chunk_byte, overwrite_text

    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a")
    _run_all(cfg, 4)
    plan = ShardPlan(load_config(cfg)["jobs"])
    flip_chunk_byte(plan.layout.shard(1), "latency_s", at=8 * 4 * 3 + 7)    # a sign/exponent byte, row 3
    overwrite_text(plan.layout.shard(2), b"sample 70: ", b"sample 07: ")
    c1 = check_shard(plan.layout.shard(1), plan.sample_ids(1), _fp(cfg))
    c2 = check_shard(plan.layout.shard(2), plan.sample_ids(2), _fp(cfg))
    assert (c1.state, c1.rows) == ("damaged", 0) and "dataset 'latency_s' is unreadable" in c1.reason
    assert (c2.state, c2.rows) == ("damaged", 0) and "dataset 'text' does not match its sha256" in c2.reason
    st = run_status(tmp_path / "a")
    table = format_status(st)
    print(table)
    assert st["done"] == 2 and st["rows"] == 60 and "damaged" in table and "a rerun redoes it" in table
    with pytest.raises(TraceDamaged, match=r"shard 1 is damaged: dataset 'latency_s' is unreadable"):
        merge_run(str(cfg))
    for i in (1, 2):
        stats = run_shard(str(cfg), i, show_progress=False)
        assert not stats["skipped"] and stats["redone"].startswith("damaged") and stats["written"] == 30
    assert [p.name for p in sorted(plan.layout.phase_dir("generate").glob("*.damaged-0"))] == [
        "shard-00001-of-00004.h5.damaged-0", "shard-00002-of-00004.h5.damaged-0"]
    counts = same_traces(reference(tmp_path), Path(merge_run(str(cfg))["path"]))
    assert counts == {"samples": 120, "unique": 120, "lost": 0, "duplicated": 0}
    assert run_status(tmp_path / "a")["merged"]
    flip_chunk_byte(tmp_path / "a" / "traces.h5", "score")              # the merged file is checked too
    st = run_status(tmp_path / "a")
    assert not st["merged"] and "merged traces.h5: DAMAGED (dataset 'score'" in format_status(st)


def test_full_disk_mid_shard_status_counts_only_verified_rows_then_resume(tmp_path):
    """A real full file system under a real shard process: the task stops with one clear error, its partial
    file's header claims rows that cannot be read back; status counts only verified rows, which is what the
    resume keeps; with space again the rerun gives the uninterrupted data."""
    from .helpers import fill_disk, small_tmpfs

    with small_tmpfs("4m") as mnt:
        jobs = dict(num_samples=160, shards=1, batch_size=8, step_options={"delay_s": 0.2})
        cfg = write_config(tmp_path / "a.yaml", mnt / "run", **jobs)
        prepare_output_dir(load_config(cfg), cfg)
        shard = ShardPlan(load_config(cfg)["jobs"]).layout.shard(0)
        proc = subprocess.Popen([sys.executable, "-m", "asd.jobs", "shard", "--config", str(cfg), "--index", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and shard_state(shard, np.arange(160), _fp(cfg), peek=True)[1] < 16:
            time.sleep(0.05)
        filler = fill_disk(mnt)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        line = next(ln for ln in err.splitlines() if ln.startswith("asd.jobs.shard.OutOfDisk"))
        print("task's error:", line)
        assert line.startswith(f"asd.jobs.shard.OutOfDisk: no space left on the device writing shard 0 ({mnt}/run")
        partial = shard.with_name(shard.name + PARTIAL_SUFFIX)
        with h5py.File(partial) as f:
            header = int(f.attrs["n_complete"])
        st = run_status(mnt / "run")
        s0 = st["shards"][0]
        print(format_status(st))
        assert s0["state"] == "partial" and s0["rows"] < header and "not counted" in s0["reason"]
        filler.unlink()
        stats = run_shard(str(cfg), 0, show_progress=False)
        assert stats["resumed_from"] == s0["rows"] and stats["written"] == 160 - s0["rows"]
        counts = same_traces(reference(tmp_path, **jobs), Path(merge_run(str(cfg))["path"]))
        assert counts == {"samples": 160, "unique": 160, "lost": 0, "duplicated": 0}
