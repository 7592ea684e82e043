"""A run's job settings (YAML section ``jobs``), its shard plan and its output folder.

The run folder (``jobs.output_dir``) holds::

    run.json                          the run's fingerprint and resolved config (written once)
    shards/shard-00003-of-00008.h5    one trace file per shard (``.partial`` while being written)
    traces.h5                         the merged traces, sorted by sample id
    submitit/<submission>/            submitit's pickles and logs, one folder per submission

The fingerprint hashes everything that decides the data (every config section, and in ``jobs`` the step,
samples, seed and shard count) but not how it runs (executor, parallelism, time limits, partition): the
same run may be resumed on another executor, and a folder holding another run is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from asd.config_loader import check_fields, to_dict

EXECUTORS = ("slurm", "local")
# jobs fields that only say how a run executes; they do not enter the fingerprint
EXECUTION_FIELDS = (
    "executor",
    "array_parallelism",
    "timeout_min",
    "partition",
    "slurm_signal_delay_s",
    "cpus_per_task",
    "mem_gb",
    "gpus_per_task",
    "max_num_timeout",
    "batch_size",
    "python",
    "setup",
    "output_dir",
    "account",
)
RUN_FILE = "run.json"
MERGED_FILE = "traces.h5"
OWN_ENTRIES = {"shards", "shards-evaluate", "logs", "submitit"}  # what a run folder may hold before run.json


@dataclass
class JobConfig:
    """YAML section ``jobs``: what each shard computes and where and how the shards run."""

    output_dir: str  # the run folder (see module docstring)
    step: str = "asd.jobs.steps:synthetic"  # "module:function"(sample_ids [B] int64, config) -> records
    evaluate_step: str | None = None  # step of the `evaluate` phase (slurm/array_evaluate)
    num_samples: int = 1000  # sample ids 0 .. num_samples-1
    seed: int = 0  # run seed; steps seed each sample from (seed, sample_id)
    shards: int = 8  # array tasks; shard i holds a contiguous id range
    batch_size: int = 64  # samples per step call; one flush per batch
    step_options: dict[str, float] = field(default_factory=dict)  # extra numbers the step reads
    executor: Literal["slurm", "local"] = "local"  # submitit backend; the same code path either way
    array_parallelism: int = 8  # array tasks running at once (slurm)
    timeout_min: int = 60  # per-task time limit (minutes); requeued on expiry
    max_num_timeout: int = 3  # requeues after time-out / preemption per task
    slurm_signal_delay_s: int = 120  # USR2 this long before the limit → checkpoint + requeue
    partition: str | None = None
    account: str | None = None
    cpus_per_task: int = 1
    mem_gb: float | None = None  # None: the cluster's default
    gpus_per_task: int | None = None  # None: the hierarchy's GPUs (sum of TP sizes, vllm), else 0
    python: str | None = None  # interpreter in sbatch templates (default: this one)
    setup: list[str] = field(default_factory=list)  # shell lines run before the task in sbatch templates

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor: unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        for name in ("shards", "num_samples", "batch_size", "array_parallelism", "timeout_min", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shards > self.num_samples:
            raise ValueError(f"shards ({self.shards}) must be <= num_samples ({self.num_samples})")
        if self.max_num_timeout < 0 or self.slurm_signal_delay_s < 0:
            raise ValueError("max_num_timeout and slurm_signal_delay_s must be >= 0")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise ValueError(f"gpus_per_task must be >= 0, got {self.gpus_per_task}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"mem_gb must be > 0, got {self.mem_gb}")
        for s in (self.step, self.evaluate_step):
            if s is not None and (s.count(":") != 1 or not all(s.split(":"))):
                raise ValueError(f"step {s!r} must be a 'module:function' string, e.g. 'asd.jobs.steps:synthetic'")


def shard_ranges(num_samples: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` sample-id ranges, sizes differing by at most one.

    Example: ``shard_ranges(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]``.
    """
    base, extra = divmod(num_samples, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def gpus_per_task(job: JobConfig, config: dict[str, Any]) -> int:
    """GPUs one array task asks for: ``jobs.gpus_per_task``, else the hierarchy's tensor-parallel layout.

    The reference hierarchy (TP 1/1/2/4 on vllm) needs 8 GPUs: one node per task.
    """
    if job.gpus_per_task is not None:
        return job.gpus_per_task
    h = config.get("hierarchy")
    if h is None or getattr(h, "backend", "hf") != "vllm":
        return 0
    return h.total_gpus()


def fingerprint(config: dict[str, Any]) -> str:
    """16 hex digits identifying the data a run produces (see module docstring)."""
    d = {name: to_dict(sec) for name, sec in config.items()}
    d["jobs"] = {k: v for k, v in d.get("jobs", {}).items() if k not in EXECUTION_FIELDS}
    text = json.dumps(d, sort_keys=True, default=lambda x: "inf" if x == math.inf else str(x))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunLayout:
    """Paths of one run folder."""

    root: Path
    shards: int

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def merged(self) -> Path:
        return self.root / MERGED_FILE

    def phase_dir(self, phase: str) -> Path:
        return self.root / ("shards" if phase == "generate" else f"shards-{phase}")

    def shard(self, index: int, phase: str = "generate") -> Path:
        return self.phase_dir(phase) / f"shard-{index:05d}-of-{self.shards:05d}.h5"

    def merged_for(self, phase: str) -> Path:
        return self.merged if phase == "generate" else self.root / f"traces-{phase}.h5"

    def submitit_dir(self) -> Path:
        return self.root / "submitit"


class ShardPlan:
    """Which sample ids each shard holds, and where its file lives."""

    def __init__(self, job: JobConfig):
        self.job = job
        self.ranges = shard_ranges(job.num_samples, job.shards)
        self.layout = RunLayout(Path(job.output_dir), job.shards)

    def __len__(self) -> int:
        return len(self.ranges)

    def sample_ids(self, index: int) -> np.ndarray:
        """[n_i] int64 ascending ids of shard ``index``; ValueError if out of range."""
        if not 0 <= index < len(self.ranges):
            raise ValueError(f"shard index {index} out of range 0..{len(self.ranges) - 1}")
        a, b = self.ranges[index]
        return np.arange(a, b, dtype=np.int64)


def prepare_output_dir(config: dict[str, Any], config_path: str | Path) -> dict:
    """Create the run folder or check that it belongs to this run; returns the run record.

    The config is validated first (``asd.config_check.validate``: a bad one writes nothing). A folder holding
    another run (different fingerprint) or unrelated files is a ValueError and nothing in it is touched.
    """
    from asd.config_check import validate
    from asd.provenance import provenance
    from asd.traces import SCHEMA_VERSION

    validate(config, source=config_path, require={"jobs": "the run folder and shards are its"})  # before any file
    job: JobConfig = config["jobs"]
    root = Path(job.output_dir)
    fp = fingerprint(config)
    run_file = root / RUN_FILE
    if run_file.is_file():
        rec = json.loads(run_file.read_text())
        if rec.get("fingerprint") != fp:
            raise ValueError(
                f"output_dir {root} holds another run (fingerprint {rec.get('fingerprint')}, "
                f"config {rec.get('config_path')}); this run's is {fp}. Choose another "
                f"jobs.output_dir or delete that folder; nothing was overwritten"
            )
        if rec.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"output_dir {root} was written with trace schema {rec.get('schema_version')}, "
                f"this asd writes {SCHEMA_VERSION}; use another jobs.output_dir"
            )
        return rec
    if root.exists():
        foreign = sorted(
            p.name for p in root.iterdir() if p.name not in OWN_ENTRIES and not p.name.startswith(RUN_FILE)
        )
        if foreign:
            raise ValueError(
                f"output_dir {root} is not empty and has no {RUN_FILE}: it holds {foreign[:5]} of "
                f"something else; choose another jobs.output_dir; nothing was overwritten"
            )
    root.mkdir(parents=True, exist_ok=True)
    rec = provenance(
        config={k: to_dict(v) for k, v in config.items()},
        schema_version=SCHEMA_VERSION,
        fingerprint=fp,
        config_path=str(Path(config_path).resolve()),
    )
    tmp = root / f"{RUN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rec, indent=1, sort_keys=True, default=str))
    try:
        os.link(tmp, run_file)  # atomic create: of array tasks starting at once, one wins
    except FileExistsError:
        tmp.unlink()
        return prepare_output_dir(config, config_path)  # compare against the winner's record
    tmp.unlink()
    return rec
