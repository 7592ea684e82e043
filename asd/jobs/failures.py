"""Why a submitted task failed, in one line: what happened, to which shard, where its log is.

A task ends in one of three ways the job layer can see: a result (success), an exception written by submitit
into its result file (the step raised, the disk filled up, the merge found a damaged shard), or no result at
all (killed, cancelled, timed out, out of memory, or a full disk that left no room for the result file). The
scheduler's final state and exit code (``sacct``; the process's return code for the local executor) and the
free space of the run folder tell the last apart. :class:`RunFailed` joins the failures of a submission into
the one line ``asd submit`` prints, ending with the command that resumes the run.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from asd.jobs.shard import OUT_OF_DISK_MARKS

FULL_DISK_BYTES = 64 * 2**20  # a run folder with less free space than this is taken as out of disk


@dataclass
class TaskFailure:
    """One failed task: ``label`` ("shard 3", "the merge"), ``kind`` (killed, cancelled, timed out, out of
    memory, out of disk, shard damaged, exception, failed), ``detail`` (one line) and its ``log`` path."""

    label: str
    kind: str
    detail: str
    log: str | None = None

    def line(self) -> str:
        what = {
            "killed": "was killed",
            "cancelled": "was cancelled",
            "timed out": "timed out",
            "out of memory": "ran out of memory",
            "out of disk": "ran out of disk",
            "shard damaged": "stopped",
            "exception": "failed",
        }.get(self.kind, "failed")
        log = f" (log: {self.log})" if self.log else ""
        return f"{self.label} {what}: {self.detail}{log}"


class RunFailed(RuntimeError):
    """Tasks of a submission failed; ``str(e)`` is one line: the first failure in full, the others by kind,
    and the command that resumes the run."""

    def __init__(self, failures: list[TaskFailure], rerun: str):
        self.failures, self.rerun = failures, rerun
        first, rest = failures[0], failures[1:]
        text = first.line()
        if rest:
            others = ", ".join(f"{f.label} ({f.kind})" for f in rest[:8]) + (" …" if len(rest) > 8 else "")
            text += f"; {len(rest)} more failed: {others}"
        super().__init__(f"{text}; rerun `{rerun}` to resume (finished shards and flushed rows are kept)")

    def __reduce__(self):
        return type(self), (self.failures, self.rerun)


def from_traceback(label: str, trace: str, log: str | None) -> TaskFailure:
    """A failure from the traceback submitit stored for a task that raised: its last line, classified."""
    lines = [ln for ln in trace.strip().splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else "an exception without a message"
    head, sep, msg = last.partition(": ")
    if sep and re.fullmatch(r"[\w.]+", head):
        name = head.rsplit(".", 1)[-1]  # the exception's class, without its module
    else:
        name, msg = (last, "") if re.fullmatch(r"[\w.]+", last) else ("", last)
    if name == "OutOfDisk" or any(mark in trace for mark in OUT_OF_DISK_MARKS):
        return TaskFailure(label, "out of disk", msg if name == "OutOfDisk" else last, log)
    if name in ("ShardDamaged", "TraceDamaged"):
        return TaskFailure(label, "shard damaged", msg, log)
    if name == "StepError":
        return TaskFailure(label, "exception", msg, log)
    return TaskFailure(label, "exception", f"raised {last}"[:400], log)


def _log_says_out_of_disk(log: str | None) -> bool:
    if not log:
        return False
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 20000))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(mark in tail for mark in OUT_OF_DISK_MARKS)


def _disk_full(folder: Path) -> str | None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    return f"{free / 2**20:.1f} MiB free in {folder}" if free < FULL_DISK_BYTES else None


def without_result(
    label: str,
    state: str,
    exit_code: str,
    log: str | None,
    run_dir: Path,
    limit_min: int | None = None,
    reason: str = "",
) -> TaskFailure:
    """A failure from the scheduler's final ``state`` (SLURM names; ``INTERRUPTED``/``FINISHED`` for local
    processes), ``exit_code`` (``"code:signal"``, or a local return code) and ``reason`` (SLURM's last pending
    reason) of a task that left no result."""
    code, _, sig = exit_code.partition(":")
    signal = int(sig) if sig.isdigit() else 0
    rc = int(code) if code.lstrip("-").isdigit() else 0
    if rc < 0:  # a local process's return code: -N = killed by signal N
        signal, rc = -rc, 0
    if rc > 128 and not signal:  # a shell or srun reporting a child killed by signal rc - 128
        signal = rc - 128
    if rc == 9 and not signal:  # srun passes its SIGKILLed task on as exit code 9 (sacct "9:0"; seen on Slurm 22.05)
        signal, rc = 9, 0
    where = f"state {state}, exit code {exit_code}"
    if state.startswith("CANCELLED") and reason == "Dependency":  # --kill-on-invalid-dep
        return TaskFailure(label, "cancelled", f"a job it depends on did not complete ({state}, reason {reason})", log)
    if state.startswith("CANCELLED"):
        return TaskFailure(label, "cancelled", f"scancel or the scheduler ({state})", log)
    if state == "TIMEOUT":
        limit = f"the {limit_min}-minute limit" if limit_min else "its time limit"
        return TaskFailure(label, "timed out", f"over {limit} after its requeues ({where})", log)
    if state == "OUT_OF_MEMORY":
        return TaskFailure(label, "out of memory", where, log)
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return TaskFailure(label, "failed", f"its node failed ({where})", log)
    full = _disk_full(run_dir)
    if full or _log_says_out_of_disk(log):
        return TaskFailure(label, "out of disk", f"no space left ({full or 'the log says so'}; {where})", log)
    if signal:
        name = {9: "SIGKILL", 15: "SIGTERM", 2: "SIGINT", 6: "SIGABRT", 11: "SIGSEGV"}.get(signal, f"signal {signal}")
        return TaskFailure(label, "killed", f"by {name} ({where})", log)
    return TaskFailure(label, "failed", f"ended without a result ({where})", log)
