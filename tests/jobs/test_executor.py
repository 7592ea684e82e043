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


def _env(*paths) -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = ":".join([*map(str, paths), env.get("PYTHONPATH", "")])
    return env


def test_a_step_that_raises_is_one_line_naming_shard_reason_log_and_rerun(tmp_path):
    """Through the real CLI and submitit's local executor: one line on stderr, exit 1; fixing the step's code
    (same spec) and rerunning the same command resumes and gives the uninterrupted data."""
    from .helpers import failing_step_module

    step = failing_step_module(tmp_path, fail_at=45)           # shard 1 of 3 holds ids 40-79
    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=3, step=step)
    asd = [sys.executable, "-m", "asd"]
    r = subprocess.run(asd + ["submit", "--config", str(cfg)], capture_output=True, text=True, timeout=180,
                       env=_env(tmp_path))
    print("user sees:", r.stderr)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    line = r.stderr.strip()
    assert line.startswith("asd submit: error: shard 1 failed: step failstep:step raised ValueError: "
                           "sample 45 has no prompt on samples 40-47 (log: ")
    assert line.endswith(f"; rerun `asd submit --config {cfg}` to resume (finished shards and flushed rows are kept)")
    log = Path(line.split("(log: ")[1].split(")")[0])
    assert log.is_file() and "sample 45 has no prompt" in log.read_text()
    failing_step_module(tmp_path, fail_at=-1)                  # the step fixed
    r = subprocess.run(asd + ["submit", "--config", str(cfg)], capture_output=True, text=True, timeout=180,
                       env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    counts = same_traces(reference(tmp_path, shards=3), tmp_path / "a" / "traces.h5")
    assert counts == {"samples": 120, "unique": 120, "lost": 0, "duplicated": 0}


def test_the_merge_finding_a_damaged_shard_is_one_line_and_the_rerun_repairs_it(tmp_path):
    from asd.jobs.failures import RunFailed

    from .helpers import flip_chunk_byte

    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=3, executor="local")
    submit_run(cfg).wait()
    sub = submit_run(cfg)                                       # every shard done: only the merge is to run
    assert sub.indices == [] and sub.skipped == [0, 1, 2]
    flip_chunk_byte(tmp_path / "a" / "shards" / "shard-00001-of-00003.h5", "latency_s", at=30)
    with pytest.raises(RunFailed) as e:                         # damaged between the check and the merge
        sub.wait()
    print("user sees:", e.value)
    assert str(e.value).startswith("the merge stopped: shard 1 is damaged: dataset 'latency_s' is unreadable")
    assert "; rerun `asd submit --config " in str(e.value)
    rerun = submit_run(cfg)
    assert rerun.indices == [1] and rerun.checks[1].state == "damaged"
    counts = same_traces(reference(tmp_path, shards=3), Path(rerun.wait()["path"]))
    assert counts == {"samples": 120, "unique": 120, "lost": 0, "duplicated": 0}


def test_a_second_local_submit_while_the_first_runs_is_refused(tmp_path):
    import time

    cfg = write_config(tmp_path / "a.yaml", tmp_path / "a", shards=2, step_options={"delay_s": 0.4})
    asd = [sys.executable, "-m", "asd"]
    first = subprocess.Popen(asd + ["submit", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "a" / "jobs.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        folders = set((tmp_path / "a" / "submitit").iterdir())
        r = subprocess.run(asd + ["submit", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
        print("user sees:", r.stderr)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert (f"asd submit: error: {tmp_path / 'a'} is still running from an earlier `asd submit` (local "
                "executor: task process(es) ") in r.stderr and "nothing submitted" in r.stderr
        assert set((tmp_path / "a" / "submitit").iterdir()) == folders      # nothing was submitted
    finally:
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    again = submit_run(cfg)                                   # the first has ended: accepted (merge only)
    assert again.indices == [] and again.wait()["samples"] == 120
