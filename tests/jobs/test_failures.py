"""What a failed task's one line says, from the scheduler's final state and the traceback submitit stored."""
from __future__ import annotations

import pickle

from asd.jobs.failures import RunFailed, TaskFailure, from_traceback, without_result


def test_states_without_a_result(tmp_path):
    def line(state, code="0:0", reason="None", **kw):
        return without_result("shard 3", state, code, "/logs/9_3_0_log.err", tmp_path, 240, reason, **kw).line()

    assert line("FAILED", "0:9") == ("shard 3 was killed: by SIGKILL (state FAILED, exit code 0:9) "
                                     "(log: /logs/9_3_0_log.err)")
    assert line("FAILED", "137:0").startswith("shard 3 was killed: by SIGKILL")      # a shell's 128 + 9
    assert line("FAILED", "9:0").startswith("shard 3 was killed: by SIGKILL")        # srun passing on its task's 9
    assert line("INTERRUPTED", "-15").startswith("shard 3 was killed: by SIGTERM")    # a local process
    assert line("CANCELLED by 1000").startswith("shard 3 was cancelled: scancel or the scheduler (CANCELLED by 1000)")
    assert line("CANCELLED", reason="Dependency").startswith(
        "shard 3 was cancelled: a job it depends on did not complete (CANCELLED, reason Dependency)")
    assert line("TIMEOUT").startswith("shard 3 timed out: over the 240-minute limit after its requeues")
    assert line("OUT_OF_MEMORY", "0:125").startswith("shard 3 ran out of memory")
    assert line("NODE_FAIL").startswith("shard 3 failed: its node failed")
    assert line("FAILED", "1:0") == ("shard 3 failed: ended without a result (state FAILED, exit code 1:0) "
                                     "(log: /logs/9_3_0_log.err)")          # tmp_path has room: not a full disk
    log = tmp_path / "log.err"
    log.write_text("...\nOSError: [Errno 28] No space left on device\n")
    f = without_result("shard 3", "FAILED", "1:0", str(log), tmp_path)
    assert f.kind == "out of disk" and "the log says so" in f.detail


def test_tracebacks():
    tb = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in step\nValueError: boom\n\nThe above "
          "exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
          "asd.jobs.shard.StepError: step m:f raised ValueError: boom on samples 8-15\n")
    f = from_traceback("shard 1", tb, "/l")
    assert (f.kind, f.line()) == ("exception", "shard 1 failed: step m:f raised ValueError: boom on samples 8-15 (log: /l)")
    f = from_traceback("shard 1", "Traceback...\nasd.jobs.shard.OutOfDisk: no space left on the device writing "
                                  "shard 1 (/r/shards: 0.0 MiB free)\n", None)
    assert f.line() == "shard 1 ran out of disk: no space left on the device writing shard 1 (/r/shards: 0.0 MiB free)"
    f = from_traceback("the merge", "Traceback...\nasd.jobs.merge.ShardDamaged: shard 2 is damaged: dataset 'text' "
                                    "does not match its sha256 checksum (rows 0-29) (/r/s.h5); nothing merged\n", None)
    assert f.kind == "shard damaged" and f.line().startswith("the merge stopped: shard 2 is damaged: dataset 'text'")
    f = from_traceback("shard 0", "Traceback...\nKeyError: 'ran'\n", None)
    assert f.line() == "shard 0 failed: raised KeyError: 'ran'"


def test_run_failed_is_one_line_and_survives_pickling():
    fs = [TaskFailure("shard 0", "killed", "by SIGKILL (state FAILED, exit code 0:9)", "/l0"),
          TaskFailure("shard 4", "cancelled", "scancel or the scheduler (CANCELLED by 0)", "/l4")]
    e = RunFailed(fs, "asd submit --config run.yaml")
    assert "\n" not in str(e)
    assert str(e) == ("shard 0 was killed: by SIGKILL (state FAILED, exit code 0:9) (log: /l0); 1 more failed: "
                      "shard 4 (cancelled); rerun `asd submit --config run.yaml` to resume (finished shards and "
                      "flushed rows are kept)")
    assert str(pickle.loads(pickle.dumps(e))) == str(e)
