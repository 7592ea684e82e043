"""Real jobs on the local SLURM cluster (scripts/slurm_up.sh; `make test` starts it): submitit arrays, the
sbatch templates, and the faults — kill -9, scontrol requeue, a time-out, a truncated shard file, bytes
flipped in finished shards, a full disk, a second submission of a running run and its cancellation.

Every faulted run must merge to the same data as an uninterrupted one: 0 samples lost, 0 duplicated. Faults
seen through the CLI must reach the user as one line on stderr with a non-zero exit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import require_cluster

h5py = pytest.importorskip("h5py", reason="h5py is not installed (requirements/base.txt)")

pytest.importorskip("submitit", reason="submitit is not installed (the jobs executor needs it; requirements/base.txt)")
from asd.jobs.executor import submit_run  # noqa: E402
from asd.jobs.failures import RunFailed  # noqa: E402
from asd.jobs.plan import ShardPlan
from asd.jobs.shard import live_writer, progress_path
from asd.run_config import load_config

from .helpers import fill_disk, flip_chunk_byte, overwrite_text, reference, same_traces, small_tmpfs, write_config

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module", autouse=True)
def cluster():
    require_cluster()


def _wait_rows(path: Path, rows: int, timeout: float = 60) -> dict:
    """Wait until the shard's progress file reports >= rows flushed; returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            p = json.loads(progress_path(path).read_text())
            if p["rows"] >= rows:
                return p
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{path}: fewer than {rows} rows after {timeout} s")


def _asd(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI as a user runs it; stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", "asd", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-j", job_id, "-o", "State"], capture_output=True, text=True).stdout
    return out.split()[0] if out.split() else "UNKNOWN"


def _wait_sacct(job_id: str, timeout: float = 90) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = _sacct_state(job_id)
        if st in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"):
            return st
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


def test_slurm_array_merges_to_the_same_data_as_local(tmp_path):
    jobs = dict(num_samples=400, shards=8, array_parallelism=2, batch_size=16, timeout_min=5,
                slurm_signal_delay_s=30)
    slurm = submit_run(write_config(tmp_path / "s.yaml", tmp_path / "s", executor="slurm", **jobs))
    assert len(slurm.shard_jobs) == 8 and "_" in slurm.shard_jobs[0].job_id   # one array of 8 tasks
    local = submit_run(write_config(tmp_path / "l.yaml", tmp_path / "l", executor="local", **jobs))
    s, l_ = slurm.wait(), local.wait()
    assert s["samples"] == l_["samples"] == 400
    counts = same_traces(Path(l_["path"]), Path(s["path"]))
    print("slurm vs local:", counts)
    assert counts == {"samples": 400, "unique": 400, "lost": 0, "duplicated": 0}
    # a rerun skips every finished shard and only merges again
    again = submit_run(tmp_path / "s.yaml")
    assert again.shard_jobs == [] and sorted(again.skipped) == list(range(8))
    assert again.wait()["samples"] == 400


def _faulted_run(tmp_path, **extra):
    jobs = dict(num_samples=160, shards=2, array_parallelism=2, batch_size=8, timeout_min=5,
                slurm_signal_delay_s=30, step_options={"delay_s": 0.4})
    jobs.update(extra)
    cfg = write_config(tmp_path / "f.yaml", tmp_path / "f", executor="slurm", **jobs)
    return cfg, jobs


def test_kill_9_of_a_task_mid_write_then_rerun(tmp_path):
    cfg, jobs = _faulted_run(tmp_path, step_options={"delay_s": 0.6})   # 10 batches of 0.6 s a shard
    sub = submit_run(cfg)
    shard0 = ShardPlan(load_config(cfg)["jobs"]).layout.shard(0)
    prog = _wait_rows(shard0, 16)
    os.kill(prog["pid"], signal.SIGKILL)                        # the task's python process, mid-run
    with pytest.raises(RunFailed) as e:                         # once shard 1 has ended too
        sub.wait()
    print("user sees:", e.value)
    assert str(e.value).startswith("shard 0 was killed: by SIGKILL (state FAILED")
    assert f"_0_log.err); rerun `asd submit --config {cfg}` to resume" in str(e.value)
    rerun = submit_run(cfg)
    assert rerun.indices == [0] and rerun.skipped == [1]
    stats = rerun.wait()
    assert 16 <= stats["shards_run"][0]["resumed_from"] < 80
    counts = same_traces(reference(tmp_path, **jobs), Path(stats["path"]))
    print("kill -9:", counts, "resumed_from", stats["shards_run"][0]["resumed_from"])
    assert counts == {"samples": 160, "unique": 160, "lost": 0, "duplicated": 0}


def test_scontrol_requeue_of_a_running_task_resumes(tmp_path):
    # 20 batches of 0.8 s per shard: the requeue's SIGTERM, then SIGKILL ~7 s later, land mid-shard
    cfg, jobs = _faulted_run(tmp_path, num_samples=320, step_options={"delay_s": 0.8})
    sub = submit_run(cfg)
    shard0 = ShardPlan(load_config(cfg)["jobs"]).layout.shard(0)
    _wait_rows(shard0, 16)
    subprocess.run(["scontrol", "requeue", sub.shard_jobs[0].job_id], check=True)
    stats = sub.wait()                                          # the requeued task comes back by itself
    assert not stats["shards_run"][0]["skipped"] and 16 <= stats["shards_run"][0]["resumed_from"] < 160
    counts = same_traces(reference(tmp_path, **jobs), Path(stats["path"]))
    print("scontrol requeue:", counts, "resumed_from", stats["shards_run"][0]["resumed_from"])
    assert counts == {"samples": 320, "unique": 320, "lost": 0, "duplicated": 0}


@pytest.mark.slow
def test_task_over_its_time_limit_checkpoints_and_requeues(tmp_path):
    """timeout_min=2 with USR2 30 s before the limit: submitit checkpoints, requeues, the task resumes.

    SLURM may send the signal up to 60 s earlier than asked (its event resolution), so USR2 comes 30–90 s into
    a run: late enough for a task's Python to have started and installed submitit's handler even on a loaded
    2-core machine, the merge job's included (with USR2 90 s before the limit it came 0–30 s in, and once
    killed the merge at its start), early enough that 96 batches of 1.1 s (106 s) are interrupted; later runs
    may be too (max_num_timeout allows it)."""
    cfg, jobs = _faulted_run(tmp_path, shards=1, num_samples=768, timeout_min=2, slurm_signal_delay_s=30,
                             max_num_timeout=8, step_options={"delay_s": 1.1})
    sub = submit_run(cfg)
    stats = sub.wait()
    assert stats["shards_run"][0]["resumed_from"] > 0           # it was interrupted and resumed
    log = "".join(p.read_text() for p in sub.folder.glob("*_log.err"))
    assert "timed-out" in log
    counts = same_traces(reference(tmp_path, **jobs), Path(stats["path"]))
    print("time-out:", counts, "resumed_from", stats["shards_run"][0]["resumed_from"],
          "USR2 count", log.count("timed-out"))
    assert counts == {"samples": 768, "unique": 768, "lost": 0, "duplicated": 0}


def test_truncated_shard_file_is_redone_on_resubmit(tmp_path):
    jobs = dict(num_samples=200, shards=4, array_parallelism=2, batch_size=16, timeout_min=5,
                slurm_signal_delay_s=30)
    cfg = write_config(tmp_path / "t.yaml", tmp_path / "t", executor="slurm", **jobs)
    first = submit_run(cfg).wait()
    shard = Path(tmp_path / "t" / "shards" / "shard-00002-of-00004.h5")
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 3)
    rerun = submit_run(cfg)
    assert rerun.indices == [2]
    stats = rerun.wait()
    assert stats["samples"] == first["samples"] == 200
    counts = same_traces(reference(tmp_path, **jobs), Path(stats["path"]))
    print("truncated shard:", counts)
    assert counts == {"samples": 200, "unique": 200, "lost": 0, "duplicated": 0}


def test_sbatch_templates_submit_a_real_array_and_merge(tmp_path):
    jobs = dict(num_samples=100, shards=8, array_parallelism=2, batch_size=16, timeout_min=5,
                slurm_signal_delay_s=30)
    cfg = write_config(tmp_path / "h.yaml", tmp_path / "h", executor="slurm", **jobs)
    from asd.jobs.sbatch import render_all

    render_all(cfg, tmp_path / "scripts")
    array = subprocess.run(["sbatch", "--parsable", str(tmp_path / "scripts" / "array_generate.sbatch")],
                           capture_output=True, text=True, check=True).stdout.strip()
    merge = subprocess.run(["sbatch", "--parsable", f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes",
                            str(tmp_path / "scripts" / "merge.sbatch")],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert _wait_sacct(merge) == "COMPLETED", (tmp_path / "h" / "logs")
    counts = same_traces(reference(tmp_path, **jobs), tmp_path / "h" / "traces.h5")
    assert counts == {"samples": 100, "unique": 100, "lost": 0, "duplicated": 0}


def test_slurm_up_is_a_no_op_when_the_cluster_is_up():
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm_up.sh"
    t = time.time()
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "already up" in r.stdout, r.stdout + r.stderr
    assert time.time() - t < 5


def test_flipped_bytes_in_finished_shards_are_found_by_status_and_redone_by_the_rerun(tmp_path):
    jobs = dict(num_samples=200, shards=4, array_parallelism=2, batch_size=25, timeout_min=5,
                slurm_signal_delay_s=30)
    cfg = write_config(tmp_path / "d.yaml", tmp_path / "d", executor="slurm", **jobs)
    r = _asd("submit", "--config", cfg)
    assert r.returncode == 0, r.stderr
    shards = tmp_path / "d" / "shards"
    flip_chunk_byte(shards / "shard-00001-of-00004.h5", "latency_s", at=8 * 4 * 2 + 7)   # row 2's sign byte
    overwrite_text(shards / "shard-00002-of-00004.h5", b"sample 120: ", b"sample 021: ")  # in the heap: no filter
    st = _asd("status", tmp_path / "d")
    print("asd status:\n" + st.stdout)
    assert st.returncode == 0
    rows = {int(ln.split()[0]): ln for ln in st.stdout.splitlines()[2:-1]}
    assert "damaged" in rows[1] and "dataset 'latency_s' is unreadable" in rows[1] and "0/50" in rows[1]
    assert "damaged" in rows[2] and "dataset 'text' does not match its sha256 checksum" in rows[2]
    assert "shards done 2/4, samples 100/200" in st.stdout
    r = _asd("submit", "--config", cfg)
    print("asd submit (rerun):\n" + r.stdout)
    assert r.returncode == 0, r.stderr
    assert "shard 1: damaged (dataset 'latency_s' is unreadable" in r.stdout and "moved aside and redone" in r.stdout
    assert "submitted 2 shard(s)" in r.stdout and "skipped 2 done" in r.stdout
    assert sorted(p.name for p in shards.glob("*.damaged-*")) == ["shard-00001-of-00004.h5.damaged-0",
                                                                  "shard-00002-of-00004.h5.damaged-0"]
    counts = same_traces(reference(tmp_path, **jobs), tmp_path / "d" / "traces.h5")
    print("flipped bytes:", counts)
    assert counts == {"samples": 200, "unique": 200, "lost": 0, "duplicated": 0}


def test_full_disk_is_one_line_status_counts_only_verified_rows_and_the_rerun_completes(tmp_path):
    """The run folder on a real tmpfs that fills up while both tasks write."""
    with small_tmpfs("8m") as mnt:
        jobs = dict(num_samples=160, shards=2, array_parallelism=2, batch_size=8, timeout_min=5,
                    slurm_signal_delay_s=30, step_options={"delay_s": 0.4})
        cfg = write_config(tmp_path / "full.yaml", mnt / "run", executor="slurm", **jobs)
        first = subprocess.Popen([sys.executable, "-m", "asd", "submit", "--config", str(cfg)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_rows(ShardPlan(load_config(cfg)["jobs"]).layout.shard(0), 16)
        filler = fill_disk(mnt)
        _, err = first.communicate(timeout=300)
        line = _one_line(err)
        print("user sees:", line)
        assert first.returncode == 1
        assert line.startswith("asd submit: error: shard ") and " ran out of disk: " in line and "(log: " in line
        assert line.endswith(f"rerun `asd submit --config {cfg}` to resume (finished shards and flushed rows are kept)")
        st = _asd("status", mnt / "run")
        print("asd status:\n" + st.stdout)
        shards = json.loads(_asd("status", mnt / "run", "--json").stdout)["shards"]
        headers = {}
        for s in shards:                       # a task that died creating its file leaves it unreadable: corrupt
            assert s["state"] in ("partial", "corrupt", "missing"), s
            if s["state"] == "partial":
                path = mnt / "run" / "shards" / f"shard-{s['index']:05d}-of-00002.h5.partial"
                with h5py.File(path, "r") as f:
                    headers[s["index"]] = int(f.attrs["n_complete"])
                assert s["rows"] <= headers[s["index"]]
                assert s["rows"] == headers[s["index"]] or "not counted" in s["reason"], s
        print("header rows", headers, "counted", {s["index"]: s["rows"] for s in shards})
        assert shards[0]["state"] == "partial" and headers[0] >= 16        # shard 0 had flushed 16 rows
        filler.unlink()
        r = _asd("submit", "--config", cfg)
        print("asd submit (rerun):\n" + r.stdout)
        assert r.returncode == 0, r.stderr
        for s in shards:                       # the rerun keeps exactly the rows status counted
            if s["reason"] and s["state"] == "partial":
                kept = f"resumed after its {s['rows']} verified row(s)" if s["rows"] else "started over"
                assert f"shard {s['index']}: partial (" in r.stdout and kept in r.stdout
        counts = same_traces(reference(tmp_path, **jobs), mnt / "run" / "traces.h5")
        print("full disk:", counts)
        assert counts == {"samples": 160, "unique": 160, "lost": 0, "duplicated": 0}


def test_a_second_submit_of_a_running_run_is_refused_and_scancel_is_one_line(tmp_path):
    # 10 batches of 1.2 s a shard: scancel's SIGTERM is ignored by submitit and SIGKILL follows ~7 s later
    jobs = dict(num_samples=160, shards=2, array_parallelism=2, batch_size=8, timeout_min=5,
                slurm_signal_delay_s=30, step_options={"delay_s": 1.2})
    cfg = write_config(tmp_path / "two.yaml", tmp_path / "two", executor="slurm", **jobs)
    first = subprocess.Popen([sys.executable, "-m", "asd", "submit", "--config", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    layout = ShardPlan(load_config(cfg)["jobs"]).layout
    _wait_rows(layout.shard(0), 8)
    folders = sorted((tmp_path / "two" / "submitit").iterdir())
    second = _asd("submit", "--config", cfg)
    line = _one_line(second.stderr)
    print("user sees (second submit):", line)
    rec = json.loads((tmp_path / "two" / "jobs.json").read_text())["submissions"]
    array, merge = rec[-1]["jobs"]["array"], rec[-1]["jobs"]["merge"]
    assert second.returncode == 2 and len(rec) == 1
    assert line.startswith(f"asd submit: error: {tmp_path / 'two'} is still queued or running from an earlier "
                           f"`asd submit` (SLURM array {array}: ")
    assert f"merge {merge}: 1 pending" in line and f"`scancel {array} {merge}`" in line and "nothing submitted" in line
    assert sorted((tmp_path / "two" / "submitit").iterdir()) == folders      # no second array was queued
    subprocess.run(["scancel", array], check=True)
    _, err = first.communicate(timeout=300)
    line = _one_line(err)
    print("user sees (after scancel):", line)
    assert first.returncode == 1
    assert line.startswith("asd submit: error: shard 0 was cancelled: scancel or the scheduler (CANCELLED by 0)")
    assert "1 more failed: shard 1 (cancelled)" in line and f"rerun `asd submit --config {cfg}` to resume" in line
    # SIGTERM is ignored, so the tasks live on after sacct says CANCELLED, until KillWait's SIGKILL: asd submit
    # returns only once squeue no longer lists them (COMPLETING), so nobody writes a shard when it says rerun
    assert [live_writer(layout.shard(i)) for i in range(2)] == [None, None]
    r = _asd("submit", "--config", cfg)
    assert r.returncode == 0, r.stderr
    counts = same_traces(reference(tmp_path, **jobs), tmp_path / "two" / "traces.h5")
    print("double submit + scancel:", counts)
    assert counts == {"samples": 160, "unique": 160, "lost": 0, "duplicated": 0}


def test_a_recorded_job_id_reused_by_another_job_does_not_block_a_submission(tmp_path):
    """A cluster whose state was wiped gives old ids to new jobs: only a live job under the recorded name counts."""
    from asd.jobs import scheduler

    job = subprocess.run(["sbatch", "--parsable", "-J", "someone-else", "-o", "/dev/null", "--wrap", "sleep 60"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        run = tmp_path / "run"
        run.mkdir()
        scheduler.record_submission(run, scheduler.submission_entry(
            "slurm", "generate", run / "submitit" / "x", {"merge": job}, {job: "asd-run-merge"}, []))
        assert scheduler.live_submission(run, "generate") is None
        scheduler.record_submission(run, scheduler.submission_entry(
            "slurm", "generate", run / "submitit" / "y", {"merge": job}, {job: "someone-else"}, []))
        live = scheduler.live_submission(run, "generate")
        assert live is not None and f"merge {job}: 1 " in live and f"`scancel {job}`" in live
        assert scheduler.live_submission(run, "evaluate") is None
    finally:
        subprocess.run(["scancel", job], check=True)
