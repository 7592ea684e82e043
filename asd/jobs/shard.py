"""One array task: compute shard ``index`` of a run, resuming whatever an earlier attempt left on disk.

States of a shard file (``shard-i-of-n.h5``; ``.partial`` while written, flushed after every batch):

- final file present, marked complete, holding exactly the shard's ids → done; a rerun skips it;
- final file unreadable or short (e.g. truncated on disk) → moved aside to ``*.corrupt-<k>``, redone;
- ``.partial`` present → its first ``n_complete`` rows (the batches flushed before the task died) are copied
  to a fresh ``.partial`` and the step continues after the last id written; unreadable → moved aside, redone;
- a file of another schema version or another run → ValueError, nothing touched.

So a task killed (``kill -9``), requeued (``scontrol requeue``, preemption) or timed out loses at most the
batch in flight and never writes a sample twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from asd.jobs.plan import ShardPlan, fingerprint
from asd.traces import PARTIAL_SUFFIX, TRACES, TraceWriter, check_schema

COPY_ROWS = 4096  # rows per block when carrying a partial file's valid prefix over


def _move_aside(path: Path) -> Path:
    k = 0
    while (dest := path.with_name(f"{path.name}.corrupt-{k}")).exists():
        k += 1
    path.replace(dest)
    return dest


def _check_owner(f, path: Path, fp: str) -> None:
    """Schema version and run fingerprint of an existing shard file must be this run's."""
    check_schema(f, path)
    got = f.attrs.get("run_fingerprint")
    if isinstance(got, bytes):
        got = got.decode()
    if got != fp:
        raise ValueError(f"{path}: shard of another run (fingerprint {got}, this run {fp}); nothing was overwritten")


def progress_path(path: Path) -> Path:
    """Side file ``<shard>.progress`` holding the rows flushed so far (read by ``asd status`` while a task
    writes: HDF5 locks a file open for writing against readers)."""
    return path.with_name(path.name + ".progress")


def _write_progress(path: Path, rows: int, total: int) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"rows": rows, "samples": total, "pid": os.getpid(), "host": os.uname().nodename}))
    tmp.replace(path)


def live_writer(path: Path, max_age_s: float = 120.0) -> str | None:
    """Who is writing shard ``path`` now, judged from its progress file: a live pid on this host, or an
    update less than ``max_age_s`` ago from another host; None if nobody seems to be."""
    import time

    p = progress_path(path)
    try:
        d = json.loads(p.read_text())
        age = time.time() - p.stat().st_mtime
    except (OSError, ValueError):
        return None
    if d.get("host") == os.uname().nodename:
        try:
            os.kill(int(d["pid"]), 0)
        except (ProcessLookupError, KeyError, ValueError):
            return None
        except PermissionError:
            pass
        return f"pid {d['pid']} on {d['host']}"
    return f"pid {d.get('pid')} on {d.get('host')} ({age:.0f} s ago)" if age < max_age_s else None


def shard_state(path: Path, ids: np.ndarray, fp: str, peek: bool = False) -> tuple[str, int]:
    """``("done"|"partial"|"missing"|"corrupt", rows valid)`` of a shard's files (final, then .partial).

    ``peek``: do not open a ``.partial`` file (a live task may hold it); take the rows from its progress file.
    """
    import h5py

    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                _check_owner(f, path, fp)
                n = int(f.attrs.get("n_complete", -1))
                ok = bool(f.attrs.get("complete", False)) and n == len(ids) and np.array_equal(f["sample_id"][:n], ids)
                return ("done", n) if ok else ("corrupt", 0)
        except OSError:
            return "corrupt", 0
    if partial.exists() and peek:
        try:
            return "partial", int(json.loads(progress_path(path).read_text())["rows"])
        except (OSError, ValueError, KeyError):
            return "partial", 0
    if partial.exists():
        try:
            with h5py.File(partial, "r") as f:
                _check_owner(f, partial, fp)
                return "partial", int(f.attrs.get("n_complete", 0))
        except OSError:
            return "corrupt", 0
    return "missing", 0


def _recover_partial(partial: Path, ids: np.ndarray, fp: str) -> tuple[Path | None, int]:
    """Move the ``.partial`` file aside and return (its path, valid rows), or (None, 0) if unreadable."""
    import h5py

    old = partial.with_name(partial.name + ".resume")
    partial.replace(old)
    try:
        with h5py.File(old, "r") as f:
            _check_owner(f, partial, fp)
            n = int(f.attrs.get("n_complete", 0))
            got = f["sample_id"][:n]
            if not np.array_equal(got, ids[:n]):
                raise OSError("sample ids are not a prefix of the shard's ids")
        return old, n
    except OSError:
        _move_aside(old)
        return None, 0


def run_shard(config_path: str, index: int, phase: str = "generate", show_progress: bool = True) -> dict:
    """Compute (or finish) shard ``index``; returns ``{"index", "samples", "written", "resumed_from", "skipped"}``."""
    import h5py
    from tqdm import tqdm

    from asd.config_loader import to_dict
    from asd.jobs.steps import load_step
    from asd.provenance import provenance
    from asd.run_config import load_config

    config = load_config(config_path)
    if "jobs" not in config:
        raise ValueError(f"{config_path}: missing section 'jobs'")
    job = config["jobs"]
    plan = ShardPlan(job)
    ids = plan.sample_ids(index)
    fp = fingerprint(config)
    spec = job.step if phase == "generate" else job.evaluate_step
    if spec is None:
        raise ValueError(f"{config_path}: jobs.{phase}_step is not set; nothing to run for phase {phase!r}")
    path = plan.layout.shard(index, phase)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    state, _ = shard_state(path, ids, fp)
    stats = {"index": index, "samples": len(ids), "written": 0, "resumed_from": 0, "skipped": False}
    if state == "done":
        stats["skipped"] = True
        return stats
    if path.exists():  # corrupt final file (truncated, killed during rename…): keep it aside, redo
        _move_aside(path)
    old, n_old = (None, 0)
    if partial.exists():
        old, n_old = _recover_partial(partial, ids, fp)
    step = load_step(spec)
    schema = getattr(step, "schema", TRACES)  # the file layout the step's records follow (asd.traces.Schema)
    attrs = provenance(
        config={k: to_dict(v) for k, v in config.items()},
        schema_version=schema.version,
        run_fingerprint=fp,
        shard_index=index,
        num_shards=job.shards,
        phase=phase,
        seed=job.seed,
        step=spec,
    )
    for name in ("lam", "models", "cost_model"):
        attrs.setdefault(name, _run_attr(config, name))
    if schema.attrs is not None:
        attrs.update(schema.attrs(config))
    writer = None
    try:
        todo = ids[n_old:]
        bar = tqdm(total=len(ids), initial=n_old, desc=f"shard {index}", disable=not show_progress, mininterval=2.0)
        if old is not None:
            with h5py.File(old, "r") as f:
                K = int(f.attrs["num_stages"])
                names = json.loads(f["features"].attrs.get("feature_names", "[]"))
                writer = TraceWriter(path, K, names, attrs, schema=schema)
                for a in range(0, n_old, COPY_ROWS):
                    b = min(a + COPY_ROWS, n_old)
                    writer.append({name: f[name][a:b] for name in writer.fields})
            old.unlink()
            stats["resumed_from"] = n_old
        for a in range(0, len(todo), job.batch_size):
            batch_ids = todo[a : a + job.batch_size]
            rec = dict(step(batch_ids, config))
            names = rec.pop("feature_names", None)
            if writer is None:
                K = _num_stages(schema, rec)
                F = np.asarray(rec["features"]).shape[2] if "features" in rec else len(names or [])
                writer = TraceWriter(path, K, names or [f"f{j}" for j in range(F)], attrs, schema=schema)
            got = np.sort(np.asarray(rec["sample_id"]))
            assert np.array_equal(got, batch_ids), f"step {spec} returned ids {got[:5]}… for {batch_ids[:5]}…"
            stats["written"] += writer.append(rec)
            _write_progress(progress_path(path), writer.n, len(ids))
            bar.update(len(batch_ids))
        bar.close()
        writer.close(complete=True)
        progress_path(path).unlink(missing_ok=True)
    except BaseException:
        if writer is not None:
            writer.close(complete=False)  # keep the flushed batches for the next attempt
        raise
    return stats


def _num_stages(schema, rec: dict) -> int:
    """K of a step's records: axis 1 of the first field of the schema whose second axis is the stages."""
    for name, (_, dims, _) in schema.fields(1).items():
        if dims[:1] == ("K",) and name in rec:
            return int(np.asarray(rec[name]).shape[1])
    raise ValueError(f"the step's records hold no per-stage field of schema {schema.name!r}")


def _run_attr(config: dict[str, Any], name: str):
    """Run-level provenance the trace schema asks for (λ, models, cost model) where the config has them."""
    if name == "lam":
        pol = config.get("policy")
        return getattr(pol, "lam", None) if pol is not None else None
    if name == "models":
        h = config.get("hierarchy")
        return [s.model for s in h.stages] if h is not None else None
    return None
