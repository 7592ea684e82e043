"""Progress of a run, per shard, read from its folder (no scheduler needed): what ``asd status RUN`` prints."""

from __future__ import annotations

import json
from pathlib import Path

from asd.jobs.plan import MERGED_FILE, RUN_FILE, ShardPlan


def run_status(run_dir: str | Path, phase: str = "generate") -> dict:
    """``{"run_dir", "fingerprint", "shards": [{"index", "state", "rows", "samples"}], "done", "rows",
    "samples", "merged"}`` for the run folder ``run_dir`` (states: done, partial, missing, corrupt)."""
    from asd.config_loader import from_dict
    from asd.jobs.plan import JobConfig
    from asd.jobs.shard import shard_state

    root = Path(run_dir)
    run_file = root / RUN_FILE
    if not run_file.is_file():
        raise ValueError(f"{root}: not a run folder (no {RUN_FILE}); pass the jobs.output_dir of a submitted run")
    rec = json.loads(run_file.read_text())
    job = from_dict(JobConfig, rec["config"]["jobs"], source=str(run_file), path="config.jobs")
    job.output_dir = str(root)  # the folder may have moved since
    plan = ShardPlan(job)
    shards = []
    for i in range(len(plan)):
        ids = plan.sample_ids(i)
        try:
            state, rows = shard_state(plan.layout.shard(i, phase), ids, rec["fingerprint"], peek=True)
        except ValueError as e:  # another schema version / run: show it, do not fail the whole table
            state, rows = f"foreign ({e})", 0
        shards.append(
            {"index": i, "state": state, "rows": rows, "samples": len(ids), "ids": [int(ids[0]), int(ids[-1])]}
        )
    merged = plan.layout.merged_for(phase)
    return {
        "run_dir": str(root),
        "fingerprint": rec["fingerprint"],
        "phase": phase,
        "shards": shards,
        "done": sum(s["state"] == "done" for s in shards),
        "rows": sum(s["rows"] for s in shards),
        "samples": job.num_samples,
        "merged": merged.is_file(),
    }


def format_status(st: dict) -> str:
    """A table: one line per shard, then the totals."""
    lines = [
        f"run {st['run_dir']}  fingerprint {st['fingerprint']}  phase {st['phase']}",
        f"{'shard':>5}  {'ids':>17}  {'state':<8}  {'rows':>14}  progress",
    ]
    for s in st["shards"]:
        frac = s["rows"] / s["samples"] if s["samples"] else 1.0
        bar = "#" * round(20 * frac) + "." * (20 - round(20 * frac))
        lines.append(
            f"{s['index']:>5}  {s['ids'][0]:>8}-{s['ids'][1]:<8}  {s['state']:<8}  "
            f"{s['rows']:>6}/{s['samples']:<7}  {bar} {100 * frac:5.1f}%"
        )
    lines.append(
        f"shards done {st['done']}/{len(st['shards'])}, samples {st['rows']}/{st['samples']}, "
        f"merged {MERGED_FILE if st['phase'] == 'generate' else 'traces-' + st['phase'] + '.h5'}: "
        f"{'yes' if st['merged'] else 'no'}"
    )
    return "\n".join(lines)
