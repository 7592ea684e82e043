"""The grid's array task: jobs-layer shards of evaluation cells, run through submitit (slurm | local).

``GridTask()(items, cpus)`` runs ``asd.jobs.shard.run_shard(config, index)`` for each (cell config, shard
index) of ``items`` in turn and appends each one's wall time to ``<run>/timing/<cell>/shard-<i>.jsonl`` (the
CPU/GPU-hours of grid.json). On SLURM each array task holds one item; with the local executor each of the
``array_parallelism`` tasks holds a share, so that a laptop runs a few processes, each loading the models
once. A ``Checkpointable``: requeued on time-out or preemption, it is called again with the same items and
``run_shard`` skips the shards already done and resumes the partial one. Torch uses ``cpus`` threads (at most
the CPUs this process may run on); ``cpus`` × wall time is what the task's line counts as CPU time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import submitit

from asd.jobs.shard import run_shard


def timing_path(config_path: str | Path, index: int) -> Path:
    """Where the wall times of shard ``index`` of the cell whose config is ``<run>/configs/<id>.yaml`` go."""
    p = Path(config_path)
    return p.parent.parent / "timing" / p.stem / f"shard-{index:05d}.jsonl"


class GridTask(submitit.helpers.Checkpointable):
    """One array task of the grid: ``GridTask()(items, cpus)`` → the shards' ``run_shard`` statistics."""

    def __call__(self, items: list[tuple[str, int]], cpus: int = 1, gpus: int = 0) -> list[dict]:
        cpus = max(1, min(cpus, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus))
        os.environ.setdefault("OMP_NUM_THREADS", str(cpus))
        try:
            import torch

            torch.set_num_threads(max(1, cpus))
        except ImportError:
            pass
        out = []
        for config_path, index in items:
            t0 = time.perf_counter()
            stats = run_shard(config_path, index, show_progress=False)
            stats["wall_s"] = time.perf_counter() - t0
            tp = timing_path(config_path, index)
            tp.parent.mkdir(parents=True, exist_ok=True)
            line = {**stats, "cpus": cpus, "gpus": gpus, "host": socket.gethostname(), "pid": os.getpid()}
            with tp.open("a") as f:
                f.write(json.dumps(line) + "\n")
            out.append(stats)
        return out
