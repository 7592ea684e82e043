"""Progress of a run, per shard, read from its folder (no scheduler needed): what ``asd status RUN`` prints.

Every count is verified: finished shards and the merged file against their checksums, partial shards by the
rows that match theirs."""

from __future__ import annotations

import json
from pathlib import Path

from asd.jobs.plan import MERGED_FILE, RUN_FILE, ShardPlan


def run_status(run_dir: str | Path, phase: str = "generate") -> dict:
    """``{"run_dir", "fingerprint", "shards": [{"index", "state", "rows", "samples", "ids", "reason"}], "done",
    "rows", "samples", "merged", "merged_problem"}`` for the run folder ``run_dir``.

    States: done, running, partial, missing, corrupt, damaged (:func:`asd.jobs.shard.check_shard`). Every
    finished shard and the merged file are read back against their checksums; a partial shard counts only the
    rows that match theirs (what a resume keeps), so a header that claims more (a writer stopped by a full
    disk) is not counted as progress.
    """
    import h5py

    from asd.config_loader import from_dict
    from asd.jobs.plan import JobConfig
    from asd.jobs.shard import check_shard
    from asd.traces import check_schema, verify_checksums

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
            c = check_shard(plan.layout.shard(i, phase), ids, rec["fingerprint"], peek=True)
            state, rows, reason = c.state, c.rows, c.reason
        except ValueError as e:  # another schema version / run: show it, do not fail the whole table
            state, rows, reason = "foreign", 0, str(e)
        shards.append(
            {
                "index": i,
                "state": state,
                "rows": rows,
                "samples": len(ids),
                "ids": [int(ids[0]), int(ids[-1])],
                "reason": reason,
            }
        )
    merged = plan.layout.merged_for(phase)
    problem = None
    if merged.is_file():
        try:
            with h5py.File(merged, "r") as f:
                check_schema(f, merged)
                n_ok, problem = verify_checksums(f)
                if problem is None and n_ok != job.num_samples:
                    problem = f"holds {n_ok} rows, the run has {job.num_samples} samples"
        except (OSError, RuntimeError, ValueError) as e:
            problem = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return {
        "run_dir": str(root),
        "fingerprint": rec["fingerprint"],
        "phase": phase,
        "shards": shards,
        "done": sum(s["state"] == "done" for s in shards),
        "rows": sum(s["rows"] for s in shards),
        "samples": job.num_samples,
        "merged": merged.is_file() and problem is None,
        "merged_problem": problem,
    }


REDO = {"corrupt": "a rerun redoes it", "damaged": "a rerun redoes it"}


def format_status(st: dict) -> str:
    """A table: one line per shard (a note after the bar says why a shard is corrupt, damaged, running or
    short of its header's rows), then the totals."""
    lines = [
        f"run {st['run_dir']}  fingerprint {st['fingerprint']}  phase {st['phase']}",
        f"{'shard':>5}  {'ids':>17}  {'state':<8}  {'rows':>14}  progress",
    ]
    for s in st["shards"]:
        frac = s["rows"] / s["samples"] if s["samples"] else 1.0
        bar = "#" * round(20 * frac) + "." * (20 - round(20 * frac))
        note = s.get("reason") or ""
        if s["state"] in REDO:
            note = f"{note}; {REDO[s['state']]}"
        lines.append(
            f"{s['index']:>5}  {s['ids'][0]:>8}-{s['ids'][1]:<8}  {s['state']:<8}  "
            f"{s['rows']:>6}/{s['samples']:<7}  {bar} {100 * frac:5.1f}%" + (f"  {note}" if note else "")
        )
    name = MERGED_FILE if st["phase"] == "generate" else "traces-" + st["phase"] + ".h5"
    merged = "yes" if st["merged"] else "no"
    if st.get("merged_problem"):
        merged = f"DAMAGED ({st['merged_problem']}; a rerun merges again)"
    lines.append(
        f"shards done {st['done']}/{len(st['shards'])}, samples {st['rows']}/{st['samples']}, merged {name}: {merged}"
    )
    return "\n".join(lines)
