"""Submit a run as a submitit array (``slurm`` on a cluster, ``local`` elsewhere: the same code path).

    sub = submit_run("configs/run.yaml")      # array of jobs.shards tasks + a merge job depending on it
    sub.wait()                                # → merge stats; RunFailed (one line) if a task failed

Array tasks get small arguments (the config path and a shard index), never models or tensors. Each task
is a :class:`ShardTask` (``submitit.helpers.Checkpointable``): on time-out or preemption (USR2) submitit
checkpoints it and requeues it, and the requeued task resumes from the batches it flushed. On SLURM the
merge job waits with ``--dependency=afterok:<array>``; locally it is submitted when the array has finished.
Every submission gets its own submitit folder (job ids restart at 1 after a cluster's state is wiped) and is
recorded in the run folder (``jobs.json``, :mod:`asd.jobs.scheduler`): a second submission of a run whose
jobs are still queued or running is refused. :meth:`Submission.wait` watches the tasks itself (result files
every second, ``sacct`` every few seconds) and turns every failure into one line (:mod:`asd.jobs.failures`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from asd.jobs import scheduler
from asd.jobs.failures import RunFailed, TaskFailure, from_traceback, without_result
from asd.jobs.merge import merge_run
from asd.jobs.plan import JobConfig, ShardPlan, gpus_per_task, prepare_output_dir
from asd.jobs.shard import ShardCheck, check_shard, run_shard
from asd.tracking import track_array, track_shard

RESULT_GRACE_S = 3.0  # a task the scheduler reports ended may still be writing its result file
COMPLETED_GRACE_S = 15.0  # ... longer when it ended well (a slow shared file system)


class RunInProgress(ValueError):
    """An earlier submission of the run is still queued or running; nothing was submitted."""


class ShardTask(submitit.helpers.Checkpointable):
    """The array task: ``ShardTask()(config_path, index)``; requeued with the same arguments on USR2."""

    def __call__(self, config_path: str, index: int, phase: str = "generate") -> dict:
        with track_shard(config_path, index, phase):  # a resource record per attempt (asd.tracking)
            return run_shard(config_path, index, phase, show_progress=False)


class MergeTask(submitit.helpers.Checkpointable):
    def __call__(self, config_path: str, phase: str = "generate") -> dict:
        with track_array(config_path, phase):  # sums the attempts' records into the array's record
            return merge_run(config_path, phase)


def make_executor(
    job: JobConfig, config: dict[str, Any], folder: Path, name: str, gpus: int | None = None
) -> submitit.AutoExecutor:
    """An AutoExecutor for ``job.executor`` with the node resources of the run (``gpus`` overrides)."""
    ex = submitit.AutoExecutor(folder=str(folder), cluster=job.executor, slurm_max_num_timeout=job.max_num_timeout)
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": job.timeout_min,
        "cpus_per_task": job.cpus_per_task,
        "nodes": 1,
        "tasks_per_node": 1,
    }
    gpus = gpus_per_task(job, config) if gpus is None else gpus
    if gpus:
        params["gpus_per_node"] = gpus
    if job.mem_gb is not None:
        params["mem_gb"] = job.mem_gb
    if job.executor == "slurm":
        params.update(
            slurm_array_parallelism=job.array_parallelism,
            slurm_signal_delay_s=job.slurm_signal_delay_s,
            slurm_additional_parameters={"requeue": True, "open-mode": "append"},
        )
        if job.partition:
            params["slurm_partition"] = job.partition
        if job.account:
            params["slurm_additional_parameters"]["account"] = job.account
    ex.update_parameters(**params)
    return ex


@dataclass
class Submission:
    """The jobs of one submission: the array (pending shards only) and the merge job (slurm) if any."""

    config_path: str
    job: JobConfig
    config: dict[str, Any]
    folder: Path
    phase: str
    shard_jobs: list = field(default_factory=list)  # submitit jobs, one per pending shard
    indices: list[int] = field(default_factory=list)  # shard index of each job in shard_jobs
    skipped: list[int] = field(default_factory=list)  # shards already done (never redone)
    merge_job: Any = None
    checks: dict[int, ShardCheck] = field(default_factory=dict)  # what was on disk for each pending shard
    rerun: str = ""  # the command that resumes the run (in RunFailed's line)

    def wait(self, poll_s: float = 1.0) -> dict:
        """Wait for every shard, then the merge; → merge stats. Raises :class:`RunFailed` (one line: what
        failed, which shard, its log, how to resume) once every shard has ended, if any failed."""
        outcomes = self._wait_jobs({f"shard {i}": j for i, j in zip(self.indices, self.shard_jobs)}, poll_s)
        failures = [o for i in self.indices if isinstance(o := outcomes[f"shard {i}"], TaskFailure)]
        if failures:
            if self.merge_job is not None:  # its afterok dependency can no longer be met
                with contextlib.suppress(Exception):
                    self.merge_job.cancel(check=False)
                self._wait_ended({"the merge": self.merge_job})
            raise RunFailed(failures, self.rerun)
        results = [outcomes[f"shard {i}"] for i in self.indices]
        if self.merge_job is None:  # local executor (or nothing pending): the merge runs after the array
            ex = make_executor(self.job, self.config, self.folder, f"{_name(self.job)}-merge", gpus=0)
            self.merge_job = ex.submit(MergeTask(), self.config_path, self.phase)
            with contextlib.suppress(OSError):  # the record is a guard against double submission, not the run
                scheduler.add_processes(Path(self.job.output_dir), self.folder, _local_pids([self.merge_job]))
        merged = self._wait_jobs({"the merge": self.merge_job}, poll_s)["the merge"]
        if isinstance(merged, TaskFailure):
            raise RunFailed([merged], self.rerun)
        stats = dict(merged)
        stats["shards_run"] = results
        stats["shards_skipped"] = self.skipped
        return stats

    def _wait_jobs(self, jobs: dict[str, Any], poll_s: float) -> dict[str, Any]:
        """{label: result or TaskFailure} once every job of ``jobs`` has ended. Result files are looked for
        every ``poll_s``; the scheduler is asked every 2 s at first, then less often (at most every 30 s)."""
        out: dict[str, Any] = {}
        remaining = dict(jobs)
        ended: dict[str, tuple[tuple[str, str, str], float]] = {}  # label → ((state, exit code, reason), seen)
        start = next_ask = time.monotonic()
        while remaining:
            for label, job in list(remaining.items()):
                res = _result(label, job)
                if res is not None:
                    out[label] = res
                    del remaining[label]
                    ended.pop(label, None)
            now = time.monotonic()
            if remaining and now >= next_ask:
                for label, info in self._ended_states(remaining).items():
                    ended.setdefault(label, (info, now))
                next_ask = now + min(30.0, 2.0 + (now - start) / 20)
            for label, (info, seen) in list(ended.items()):
                grace = COMPLETED_GRACE_S if info[0] in ("COMPLETED", "FINISHED") else RESULT_GRACE_S
                if label in remaining and now - seen >= grace:
                    again = self._ended_states({label: remaining[label]})  # still ended, still no result
                    if label in again and _result(label, remaining[label]) is None:
                        state, code, reason = again[label]
                        out[label] = without_result(
                            label,
                            state,
                            code,
                            _log(remaining[label]),
                            Path(self.job.output_dir),
                            self.job.timeout_min,
                            reason,
                        )
                        del remaining[label]
                    ended.pop(label)
            if remaining:
                time.sleep(poll_s)
        self._wait_ended(jobs)
        return out

    def _wait_ended(self, jobs: dict[str, Any], timeout_s: float = 60.0) -> None:
        """Until the scheduler reports every job of ``jobs`` ended and, on SLURM, no longer lists it as
        COMPLETING (a task that wrote its result may still be exiting; a cancelled one that ignores SIGTERM
        lives until SLURM's KillWait ends it, still holding its shard): when ``asd submit`` returns, nothing it
        submitted still runs, and a rerun is not refused."""
        deadline = time.monotonic() + timeout_s
        left = dict(jobs)
        while left and time.monotonic() < deadline:
            for label in self._ended_states(left):
                del left[label]
            if left:
                time.sleep(1.0)
        while self.job.executor == "slurm" and self._still_completing(jobs) and time.monotonic() < deadline:
            time.sleep(1.0)

    @staticmethod
    def _still_completing(jobs: dict[str, Any]) -> dict[str, Any]:
        """The jobs of ``jobs`` that squeue still lists (COMPLETING: their processes are being ended)."""
        try:
            listed = scheduler.squeue_live([job.job_id for job in jobs.values()], completing=True)
        except scheduler.SchedulerError:
            return {}  # cannot tell: sacct said ended
        return {label: job for label, job in jobs.items() if job.job_id in listed}

    def _ended_states(self, jobs: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
        """{label: (state, exit code, reason)} of the jobs that the scheduler reports ended."""
        if self.job.executor == "local":
            out = {}
            for label, job in jobs.items():
                proc = getattr(job, "_process", None)
                if proc is not None and proc.poll() is not None:
                    out[label] = ("INTERRUPTED" if proc.returncode < 0 else "FINISHED", str(proc.returncode), "")
            return out
        ids = [job.job_id for job in jobs.values()]
        try:
            states = scheduler.sacct_states(ids)
        except scheduler.SchedulerError:  # no accounting: a job squeue no longer lists has ended
            try:
                live = scheduler.squeue_live(ids)
            except scheduler.SchedulerError:
                return {}  # asked again at the next poll
            return {label: ("UNKNOWN", "?", "sacct failed") for label, job in jobs.items() if job.job_id not in live}
        return {
            label: states[job.job_id]
            for label, job in jobs.items()
            if job.job_id in states and states[job.job_id][0].split()[0] in scheduler.ENDED_STATES
        }


def _log(job) -> str | None:
    try:
        return str(job.paths.stderr)
    except (AttributeError, ValueError):
        return None


def _result(label: str, job) -> Any:
    """The task's result, a TaskFailure from the exception it stored, or None while it has no result file."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.exists():
        return None
    try:
        outcome, value = pickle_load(path)
    except (EOFError, OSError, ValueError):  # being written
        return None
    if outcome == "success":
        return value
    return from_traceback(label, str(value), _log(job))


def _local_pids(jobs: list) -> list[int]:
    return [p.pid for j in jobs if (p := getattr(j, "_process", None)) is not None]


def _name(job: JobConfig) -> str:
    return f"asd-{Path(job.output_dir).name}"


def submit_run(config_path: str | Path, phase: str = "generate", executor: str | None = None) -> Submission:
    """Check the run folder, then submit the shards not yet done as one array (+ merge job on slurm).

    ``executor`` overrides ``jobs.executor`` (it is not part of the run's identity). Refused
    (:class:`RunInProgress`, nothing submitted) while an earlier submission of the run is queued or running.
    Finished shards whose data fail their checksums are submitted again (the task moves the file aside)."""
    from asd.jobs.plan import fingerprint
    from asd.run_config import load_config

    given = str(config_path)
    config_path = str(Path(config_path).resolve())
    config = load_config(config_path)
    if "jobs" not in config:
        raise ValueError(f"{config_path}: missing section 'jobs' (asd.jobs.plan.JobConfig)")
    job: JobConfig = config["jobs"]
    if executor is not None:
        job = config["jobs"] = JobConfig(**{**vars(job), "executor": executor})
    prepare_output_dir(config, config_path)
    plan = ShardPlan(job)
    fp = fingerprint(config)
    root = Path(job.output_dir)
    rerun = f"asd submit --config {given}" + (f" --executor {executor}" if executor else "")
    rerun += f" --phase {phase}" if phase != "generate" else ""
    with scheduler.submit_lock(root):
        try:
            live = scheduler.live_submission(root, phase)
        except scheduler.SchedulerError as e:
            raise ValueError(
                f"cannot tell whether the last submission of {root} still runs ({e}); nothing submitted"
            ) from e
        if live:
            raise RunInProgress(live)
        pending, skipped, checks = [], [], {}
        for i in range(len(plan)):  # raises on a shard of another schema version / run before submitting anything
            c = check_shard(plan.layout.shard(i, phase), plan.sample_ids(i), fp, peek=True)
            if c.state == "running":
                raise RunInProgress(
                    f"shard {i} of {job.output_dir} is being {c.reason}: an earlier submission "
                    f"still runs (asd status {job.output_dir}; scancel it) — nothing submitted"
                )
            if c.state == "done":
                skipped.append(i)
            else:
                pending.append(i)
                checks[i] = c
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        folder = plan.layout.submitit_dir() / f"{stamp}-{os.getpid()}-{phase}"
        sub = Submission(config_path, job, config, folder, phase, skipped=skipped, checks=checks, rerun=rerun)
        ex = make_executor(job, config, folder, f"{_name(job)}-{phase}")
        ids: dict[str, str] = {}
        names: dict[str, str] = {}
        if pending:
            sub.shard_jobs = ex.map_array(ShardTask(), [config_path] * len(pending), pending, [phase] * len(pending))
            sub.indices = pending
        if job.executor == "slurm":
            mex = make_executor(job, config, folder, f"{_name(job)}-merge", gpus=0)
            extra = {"requeue": True, "open-mode": "append", "kill-on-invalid-dep": "yes"}
            if pending:
                ids["array"] = sub.shard_jobs[0].job_id.split("_")[0]
                names[ids["array"]] = f"{_name(job)}-{phase}"
                extra["dependency"] = f"afterok:{ids['array']}"
            mex.update_parameters(slurm_additional_parameters=extra)
            sub.merge_job = mex.submit(MergeTask(), config_path, phase)
            ids["merge"] = sub.merge_job.job_id
            names[ids["merge"]] = f"{_name(job)}-merge"
        entry = scheduler.submission_entry(job.executor, phase, folder, ids, names, _local_pids(sub.shard_jobs))
        with contextlib.suppress(OSError):  # e.g. a full disk: the jobs are queued, waiting for them matters more
            scheduler.record_submission(root, entry)
    return sub
