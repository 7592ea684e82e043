"""One array task: compute shard ``index`` of a run, resuming whatever an earlier attempt left on disk.

States of a shard file (``shard-i-of-n.h5``; ``.partial`` while written, flushed after every batch):

- final file present, marked complete, holding exactly the shard's ids, data matching its checksums → done;
  a rerun skips it;
- final file unreadable or short (e.g. truncated on disk) → corrupt; data not matching its checksums (bytes
  changed on disk) → damaged; either is moved aside to ``*.<state>-<k>`` and redone;
- ``.partial`` present → its rows that match their checksums (the batches flushed before the task died; after a
  full disk the header may claim a batch that never reached the disk: the flush before is used then) are
  copied to a fresh ``.partial`` and the step continues after the last id kept; nothing valid → moved aside;
- a file of another schema version or another run → ValueError, nothing touched.

So a task killed (``kill -9``), requeued (``scontrol requeue``, preemption), timed out or stopped by a full
disk loses at most the batches in flight and never writes a sample twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asd.jobs.plan import ShardPlan, fingerprint
from asd.traces import PARTIAL_SUFFIX, TRACES, TraceWriter, check_schema, verify_checksums
from asd.tracking import annotate_h5

COPY_ROWS = 4096  # rows per block when carrying a partial file's valid prefix over
STATES = ("done", "running", "partial", "missing", "corrupt", "damaged")


class StepError(RuntimeError):
    """The step raised: names the step, the exception and the sample ids of the batch."""


class OutOfDisk(OSError):
    """No space left (or quota exceeded) while writing a shard."""


def _move_aside(path: Path, why: str = "corrupt") -> Path:
    k = 0
    while (dest := path.with_name(f"{path.name}.{why}-{k}")).exists():
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
    try:
        tmp.write_text(json.dumps({"rows": rows, "samples": total, "pid": os.getpid(), "host": os.uname().nodename}))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


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


@dataclass
class ShardCheck:
    """What is on disk for one shard: ``state`` (one of :data:`STATES`), ``rows`` it counts (done: all; partial:
    the rows a resume keeps, i.e. those matching their checksums; running: what the live writer reports) and
    ``reason`` (why corrupt or damaged, who is writing, or why a partial's newest rows are not counted)."""

    state: str
    rows: int
    reason: str = ""


def _h5_error(e: BaseException) -> str:
    """The message of ``e`` on one line, at most 200 characters (HDF5's messages hold line breaks)."""
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:200]


def _partial_rows(f, ids: np.ndarray) -> tuple[int, str]:
    """Rows of an open ``.partial`` file a resume can keep: those its checksums vouch for whose ids are the
    shard's first ids; and why the header's ``n_complete`` is not all of them ("" if it is)."""
    rows, problem = verify_checksums(f)
    if rows and not np.array_equal(f["sample_id"][:rows], ids[:rows]):
        return 0, "its sample ids are not the shard's first ids"
    if problem is None:
        return rows, ""
    return rows, f"{int(f.attrs.get('n_complete', 0)) - rows} row(s) not counted: {problem}"


def check_shard(path: Path, ids: np.ndarray, fp: str, peek: bool = False, verify: bool = True) -> ShardCheck:
    """State of shard ``path`` (final file, else ``.partial``) holding ``ids`` [n] of the run ``fp``.

    ``verify``: read a finished file's data back against its checksums (else only its header and ids).
    ``peek``: for readers beside a running task (``asd status``, ``asd submit``): a ``.partial`` with a live
    writer (:func:`live_writer`) is not opened (``running``, rows from its progress file); one without is
    opened and its rows verified like a resume would. Raises ValueError for a file of another schema version
    or run.
    """
    import h5py

    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                _check_owner(f, path, fp)
                n = int(f.attrs.get("n_complete", -1))
                if not bool(f.attrs.get("complete", False)):
                    return ShardCheck("corrupt", 0, "not marked complete")
                if n != len(ids) or not np.array_equal(f["sample_id"][:n], ids):
                    return ShardCheck("corrupt", 0, f"holds {n} rows, not the shard's {len(ids)} ids")
                if verify:
                    rows, problem = verify_checksums(f)
                    if problem is not None or rows != n:
                        return ShardCheck("damaged", 0, str(problem))
                return ShardCheck("done", n)
        except (OSError, RuntimeError, KeyError) as e:
            return ShardCheck("corrupt", 0, f"unreadable ({_h5_error(e)})")
    if not partial.exists():
        return ShardCheck("missing", 0)
    if peek and (who := live_writer(path)):
        try:
            rows = int(json.loads(progress_path(path).read_text())["rows"])
        except (OSError, ValueError, KeyError):
            rows = 0
        return ShardCheck("running", rows, f"written by {who}")
    try:
        with h5py.File(partial, "r") as f:
            _check_owner(f, partial, fp)
            rows, why = _partial_rows(f, ids)
            return ShardCheck("partial", rows, why)
    except (OSError, RuntimeError, KeyError) as e:
        if peek and "lock" in str(e).lower():  # HDF5's lock: a writer holds it, on another host
            return ShardCheck("running", 0, f"locked by its writer ({_h5_error(e)})")
        return ShardCheck("corrupt", 0, f"unreadable ({_h5_error(e)})")


def shard_state(path: Path, ids: np.ndarray, fp: str, peek: bool = False) -> tuple[str, int]:
    """``(state, rows)`` of :func:`check_shard`."""
    c = check_shard(path, ids, fp, peek=peek)
    return c.state, c.rows


def _recover_partial(partial: Path, ids: np.ndarray, fp: str) -> tuple[Path | None, int]:
    """Move the ``.partial`` file aside and return (its path, rows to keep), or (None, 0) if none are valid
    (the file is then kept aside as ``*.corrupt-<k>``)."""
    import h5py

    old = partial.with_name(partial.name + ".resume")
    partial.replace(old)
    try:
        with h5py.File(old, "r") as f:
            _check_owner(f, partial, fp)
            n, _ = _partial_rows(f, ids)
        if n:
            return old, n
    except (OSError, RuntimeError, KeyError):
        pass
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
    check = check_shard(path, ids, fp)
    stats: dict[str, Any] = {"index": index, "samples": len(ids), "written": 0, "resumed_from": 0, "skipped": False}
    if check.state == "done":
        stats["skipped"] = True
        return stats
    if path.exists():  # corrupt (truncated, killed during rename…) or damaged final file: keep it aside, redo
        _move_aside(path, check.state)
        stats["redone"] = f"{check.state}: {check.reason}"
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
            try:
                rec = dict(step(batch_ids, config))
            except Exception as e:
                raise StepError(
                    f"step {spec} raised {_h5_error_line(e)} on samples {batch_ids[0]}-{batch_ids[-1]}"
                ) from e
            names = rec.pop("feature_names", None)
            if writer is None:
                K = _num_stages(schema, rec)
                F = np.asarray(rec["features"]).shape[2] if "features" in rec else len(names or [])
                writer = TraceWriter(path, K, names or [f"f{j}" for j in range(F)], attrs, schema=schema)
            got = np.sort(np.asarray(rec["sample_id"]))
            if not np.array_equal(got, batch_ids):
                raise StepError(f"step {spec} returned sample ids {got[:5]}… for {batch_ids[:5]}…")
            stats["written"] += writer.append(rec)
            _write_progress(progress_path(path), writer.n, len(ids))
            bar.update(len(batch_ids))
        bar.close()
        assert writer is not None  # a shard holds >= 1 id: copied or computed, some row was written
        annotate_h5(writer.f)  # this attempt's resources so far (asd.tracking; no-op when untracked)
        writer.close(complete=True)
        progress_path(path).unlink(missing_ok=True)
    except BaseException as e:
        if writer is not None:
            # keep the flushed batches for the next attempt; on a full disk closing fails too: the error
            # that stopped the task is the one to report
            with contextlib.suppress(Exception):
                writer.close(complete=False)
        if isinstance(e, Exception) and not isinstance(e, OutOfDisk) and is_out_of_disk(e):
            quota = "quota" in str(e).lower() or any(getattr(x, "errno", None) == 122 for x in (e, e.__cause__))
            raise OutOfDisk(
                f"{'disk quota exceeded' if quota else 'no space left on the device'} writing shard {index} "
                f"({path.parent}: {_free(path.parent)} free)"
            ) from e
        raise
    return stats


def _h5_error_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {_h5_error(e)}"


OUT_OF_DISK_MARKS = ("No space left on device", "errno = 28", "[Errno 28]", "Disk quota exceeded", "errno = 122")


def is_out_of_disk(e: BaseException) -> bool:
    """The exception (or one it came from) says the disk or the quota is full (h5py reports it in text)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (28, 122):
            return True
        if any(m in str(seen) for m in OUT_OF_DISK_MARKS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _free(folder: Path) -> str:
    import shutil

    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "? MiB"


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
