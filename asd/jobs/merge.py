"""Merge shard trace files into one file per run, sorted by sample id, streaming in blocks of rows.

Memory: the sample ids of every shard (8 bytes each) plus one block of rows per shard touched by the block
being written; 100,000 samples × 4 stages merge in far under 2 GB (benchmarks/test_bench_merge.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from asd.traces import (
    CHECKSUM_ATTRS,
    TraceDamaged,
    TraceWriter,
    check_schema,
    decode_attrs,
    schema_name,
    schema_of,
    verify_checksums,
)

BLOCK_ROWS = 8192


class ShardDamaged(TraceDamaged):
    """The merge found a shard whose data do not match their checksums; nothing was merged."""

    def __init__(self, index: int, path: str | Path, problem: str):
        ValueError.__init__(self, f"shard {index} is damaged: {problem} ({path}); nothing merged")
        self.index, self.path, self.problem = index, str(path), problem

    def __reduce__(self):
        return type(self), (self.index, self.path, self.problem)


SHARD_ATTRS = (
    "shard_index",
    "num_shards",
    "n_complete",
    "complete",
    "created_utc",
    "environment",
    "num_stages",
    "num_features",
    "schema_version",
    CHECKSUM_ATTRS,
)


def merge_files(
    inputs: Iterable[str | Path],
    out: str | Path,
    block_rows: int = BLOCK_ROWS,
    expected_ids: np.ndarray | None = None,
    attrs: dict | None = None,
) -> dict:
    """Merge complete trace files ``inputs`` into ``out`` (written as ``out.partial``, then renamed).

    Rows are ordered by sample id across all inputs (a k-way merge of the already sorted files). Refuses:
    a file of another schema version, an incomplete file, a damaged file (data not matching its checksums:
    :class:`asd.traces.TraceDamaged`, checked before anything is written), files disagreeing on K or feature
    names, duplicate sample ids, and (if ``expected_ids`` [N] int64 is given) any id missing or extra.
    Returns ``{"samples", "files", "duplicates": 0, "missing": 0}``.
    """
    import h5py

    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("merge: no input files")
    files = [h5py.File(p, "r") for p in paths]
    try:
        Ks, names, ids, schemas = set(), set(), [], set()
        for p, f in zip(paths, files):
            check_schema(f, p)
            schemas.add(schema_name(f))
            if not bool(f.attrs.get("complete", False)):
                raise ValueError(f"{p}: shard is incomplete; finish it (rerun the job) before merging")
            n_ok, problem = verify_checksums(f)
            if problem is not None or n_ok != int(f.attrs["n_complete"]):
                raise TraceDamaged(p, str(problem))
            Ks.add(int(f.attrs["num_stages"]))
            names.add(f["features"].attrs.get("feature_names", "[]"))
            ids.append(f["sample_id"][: int(f.attrs["n_complete"])])
        if len(Ks) != 1 or len(names) != 1 or len(schemas) != 1:
            raise ValueError(f"merge: shards disagree on stages {sorted(Ks)}, features or schema {sorted(schemas)}")
        all_ids = np.concatenate(ids)
        src = np.concatenate([np.full(len(x), i, np.int32) for i, x in enumerate(ids)])  # [N] file of each row
        pos = np.concatenate([np.arange(len(x), dtype=np.int64) for x in ids])  # [N] row in that file
        order = np.argsort(all_ids, kind="stable")
        sorted_ids = all_ids[order]
        dup = np.unique(sorted_ids[1:][np.diff(sorted_ids) == 0])
        if len(dup):
            raise ValueError(f"merge: {len(dup)} sample id(s) appear in more than one shard, e.g. {dup[:5].tolist()}")
        if expected_ids is not None:
            missing = np.setdiff1d(expected_ids, sorted_ids)
            extra = np.setdiff1d(sorted_ids, expected_ids)
            if len(missing) or len(extra):
                raise ValueError(
                    f"merge: {len(missing)} expected sample id(s) missing (e.g. {missing[:5].tolist()}),"
                    f" {len(extra)} unexpected (e.g. {extra[:5].tolist()})"
                )
        base = decode_attrs(files[0].attrs)
        run_attrs = {k: v for k, v in base.items() if k not in SHARD_ATTRS}
        run_attrs.update(attrs or {})
        run_attrs["merged_from"] = len(paths)
        K = Ks.pop()
        feature_names = json.loads(names.pop())
        schema = schema_of(files[0])
        fields = schema.fields(K)
        with TraceWriter(out, K, feature_names, run_attrs, chunk_rows=min(block_rows, 4096), schema=schema) as w:
            for a in range(0, len(order), block_rows):
                blk = order[a : a + block_rows]
                bsrc, bpos = src[blk], pos[blk]
                parts: dict[str, list] = {name: [] for name in fields}
                where = []
                for i in np.unique(bsrc):
                    sel = np.nonzero(bsrc == i)[0]
                    lo, hi = int(bpos[sel].min()), int(bpos[sel].max()) + 1  # one contiguous slice per file
                    rows = bpos[sel] - lo
                    for name in fields:
                        parts[name].append(files[i][name][lo:hi][rows])
                    where.append(sel)
                inv = np.argsort(np.concatenate(where), kind="stable")
                w.append({name: np.concatenate(v)[inv] for name, v in parts.items()})
        return {"samples": len(order), "files": len(paths), "duplicates": 0, "missing": 0}
    finally:
        for f in files:
            f.close()


def merge_run(config_path: str, phase: str = "generate") -> dict:
    """Merge a run's shards (all must be done, their data matching their checksums) into ``traces.h5``; the
    array's dependent job. A damaged shard stops it (:class:`ShardDamaged`): a rerun redoes that shard."""
    from asd.jobs.plan import ShardPlan, fingerprint
    from asd.jobs.shard import check_shard
    from asd.run_config import load_config
    from asd.tracking import array_attrs

    config = load_config(config_path)
    plan = ShardPlan(config["jobs"])
    fp = fingerprint(config)
    paths: list[Path] = []
    not_done: list[str] = []
    for i in range(len(plan)):
        p = plan.layout.shard(i, phase)
        c = check_shard(p, plan.sample_ids(i), fp, verify=False)  # merge_files verifies the data
        if c.state == "done":
            paths.append(p)
        else:
            not_done.append(f"{i} ({c.state}, {c.rows} rows)")
    if not_done:
        raise ValueError(f"merge: {len(not_done)} shard(s) not done: {', '.join(not_done[:10])}; rerun the job")
    out = plan.layout.merged_for(phase)
    try:
        stats = merge_files(
            paths,
            out,
            expected_ids=np.arange(config["jobs"].num_samples, dtype=np.int64),
            attrs={
                "run_fingerprint": fp,
                "phase": phase,
                **array_attrs(plan.layout.root, phase),
            },
        )
    except TraceDamaged as e:
        index = next(i for i in range(len(plan)) if plan.layout.shard(i, phase) == Path(e.path))
        raise ShardDamaged(index, e.path, e.problem) from e
    stats["path"] = str(out)
    return stats
