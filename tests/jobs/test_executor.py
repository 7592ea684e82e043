"""The submitit path with the local executor (no cluster): same code as slurm; asd submit / asd status CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("submitit", reason="submitit is not installed (the jobs executor needs it; requirements/base.txt)")
from asd.jobs.executor import submit_run  # noqa: E402

from .helpers import reference, same_traces, write_config


def test_local_executor_runs_the_array_and_merges(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=3, executor="local")
    sub = submit_run(cfg)
    assert sub.indices == [0, 1, 2] and sub.merge_job is None      # local: merge submitted after the array
    stats = sub.wait()
    assert {r["index"] for r in stats["shards_run"]} == {0, 1, 2}
    counts = same_traces(reference(tmp_path, shards=3), Path(stats["path"]))
    assert counts == {"samples": 120, "unique": 120, "lost": 0, "duplicated": 0}


def test_cli_submit_status_and_errors(tmp_path):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=2)
    asd = [sys.executable, "-m", "asd"]
    r = subprocess.run(asd + ["submit", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"samples": 120' in r.stdout
    st = subprocess.run(asd + ["status", str(tmp_path / "a")], capture_output=True, text=True, check=True).stdout
    assert "shards done 2/2, samples 120/120, merged traces.h5: yes" in st
    bad = write_config(tmp_path / "b.yaml", tmp_path / "a", shards=2, seed=1)     # same folder, another run
    r = subprocess.run(asd + ["submit", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "holds another run" in r.stderr
    bad = write_config(tmp_path / "c.yaml", tmp_path / "c", executor="pbs")
    r = subprocess.run(asd + ["submit", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "jobs.executor: invalid value 'pbs'; valid choices: 'slurm', 'local'" in r.stderr
    assert not (tmp_path / "c").exists()
    r = subprocess.run(asd + ["status", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "not a run folder" in r.stderr


@pytest.mark.parametrize("shards", [0, -2])
def test_zero_or_negative_shards_submit_nothing(tmp_path, shards):
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=shards)
    with pytest.raises(ValueError, match="shards must be >= 1"):
        submit_run(cfg)
    assert not (tmp_path / "a").exists()


def test_resubmitting_while_a_task_writes_is_refused(tmp_path):
    """A live writer (here: a real subprocess running the shard) blocks a second submission of the run."""
    import time

    from asd.run_config import load_config
    from asd.jobs.plan import ShardPlan, prepare_output_dir
    from asd.jobs.shard import progress_path

    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=1, step_options={"delay_s": 0.3})
    prepare_output_dir(load_config(cfg), cfg)
    shard = ShardPlan(load_config(cfg)["jobs"]).layout.shard(0)
    proc = subprocess.Popen([sys.executable, "-m", "asd.jobs", "shard", "--config", str(cfg), "--index", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not progress_path(shard).exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(ValueError, match="shard 0 .* is being written by pid"):
            submit_run(cfg)
    finally:
        proc.kill()
        proc.wait()
    sub = submit_run(cfg)                         # the writer is dead: resubmission resumes the shard
    assert sub.indices == [0]
    sub.shard_jobs[0].cancel()
