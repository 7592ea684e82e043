"""Submit a run as a submitit array (``slurm`` on a cluster, ``local`` elsewhere: the same code path).

    sub = submit_run("configs/run.yaml")      # array of jobs.shards tasks + a merge job depending on it
    sub.wait()                                # → merge stats; raises if a task failed (rerun resumes it)

Array tasks get small arguments (the config path and a shard index), never models or tensors. Each task
is a :class:`ShardTask` (``submitit.helpers.Checkpointable``): on time-out or preemption (USR2) submitit
checkpoints it and requeues it, and the requeued task resumes from the batches it flushed. On SLURM the
merge job waits with ``--dependency=afterok:<array>``; locally it is submitted when the array has finished.
Every submission gets its own submitit folder (job ids restart at 1 after a cluster's state is wiped).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from asd.jobs.merge import merge_run
from asd.jobs.plan import JobConfig, ShardPlan, gpus_per_task, prepare_output_dir
from asd.jobs.shard import live_writer, run_shard, shard_state
from asd.tracking import track_array, track_shard


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

    def wait(self) -> dict:
        """Wait for every shard (raises on a failed task: rerun to resume), then the merge; → merge stats."""
        results = [j.result() for j in self.shard_jobs]
        if self.merge_job is None:  # local executor (or nothing pending): the merge runs after the array
            ex = make_executor(self.job, self.config, self.folder, f"{_name(self.job)}-merge", gpus=0)
            self.merge_job = ex.submit(MergeTask(), self.config_path, self.phase)
        stats = self.merge_job.result()
        stats["shards_run"] = results
        stats["shards_skipped"] = self.skipped
        return stats


def _name(job: JobConfig) -> str:
    return f"asd-{Path(job.output_dir).name}"


def submit_run(config_path: str | Path, phase: str = "generate", executor: str | None = None) -> Submission:
    """Check the run folder, then submit the shards not yet done as one array (+ merge job on slurm).

    ``executor`` overrides ``jobs.executor`` (it is not part of the run's identity)."""
    from asd.run_config import load_config

    config_path = str(Path(config_path).resolve())
    config = load_config(config_path)
    if "jobs" not in config:
        raise ValueError(f"{config_path}: missing section 'jobs' (asd.jobs.plan.JobConfig)")
    job: JobConfig = config["jobs"]
    if executor is not None:
        job = config["jobs"] = JobConfig(**{**vars(job), "executor": executor})
    prepare_output_dir(config, config_path)
    plan = ShardPlan(job)
    from asd.jobs.plan import fingerprint

    fp = fingerprint(config)
    pending, skipped = [], []
    for i in range(len(plan)):  # raises on a shard of another schema version / run before submitting anything
        path = plan.layout.shard(i, phase)
        state, _ = shard_state(path, plan.sample_ids(i), fp, peek=True)
        if state == "partial" and (who := live_writer(path)):
            raise ValueError(
                f"shard {i} of {job.output_dir} is being written by {who}: an earlier submission "
                f"still runs (asd status {job.output_dir}; scancel it) — nothing submitted"
            )
        if state == "done":
            skipped.append(i)
        else:
            pending.append(i)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = plan.layout.submitit_dir() / f"{stamp}-{os.getpid()}-{phase}"
    sub = Submission(config_path, job, config, folder, phase, skipped=skipped)
    ex = make_executor(job, config, folder, f"{_name(job)}-{phase}")
    if pending:
        sub.shard_jobs = ex.map_array(ShardTask(), [config_path] * len(pending), pending, [phase] * len(pending))
        sub.indices = pending
    if job.executor == "slurm":
        mex = make_executor(job, config, folder, f"{_name(job)}-merge", gpus=0)
        extra = {"requeue": True, "open-mode": "append", "kill-on-invalid-dep": "yes"}
        if pending:
            array_id = sub.shard_jobs[0].job_id.split("_")[0]
            extra["dependency"] = f"afterok:{array_id}"
        mex.update_parameters(slurm_additional_parameters=extra)
        sub.merge_job = mex.submit(MergeTask(), config_path, phase)
    return sub
