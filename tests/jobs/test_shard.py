"""The shard runner: deterministic, resumable after kill -9, truncated files redone, foreign files refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from asd.run_config import load_config
from asd.jobs.merge import merge_run
from asd.jobs.plan import ShardPlan, prepare_output_dir
from asd.jobs.shard import run_shard, shard_state
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
