"""Shared helpers of the job tests: write a run config, compare traces dataset by dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from asd.traces import FIELDS, read_traces


def write_config(path: Path, output_dir: Path, **jobs) -> Path:
    """A run config with a ``jobs`` section (synthetic step) at ``path``."""
    sec = {"output_dir": str(output_dir), "num_samples": 120, "shards": 4, "batch_size": 8, "seed": 7}
    sec.update(jobs)
    path.write_text(yaml.safe_dump({"jobs": sec}))
    return path


def reference(tmp: Path, **jobs) -> Path:
    """The uninterrupted run, in-process: its merged traces.h5."""
    from asd.run_config import load_config
    from asd.jobs.merge import merge_run
    from asd.jobs.plan import prepare_output_dir
    from asd.jobs.shard import run_shard

    jobs = {**jobs, "executor": "local"}
    jobs.get("step_options", {}).pop("delay_s", None)
    cfg = write_config(tmp / "ref.yaml", tmp / "ref", **jobs)
    prepare_output_dir(load_config(cfg), cfg)
    for i in range(jobs.get("shards", 4)):
        run_shard(str(cfg), i, show_progress=False)
    return Path(merge_run(str(cfg))["path"])


def same_traces(a: Path, b: Path) -> dict:
    """Assert every dataset of ``a`` equals ``b`` (NaN == NaN; vlen tokens/text element by element) and the
    seed and schema agree (attrs hold timestamps, paths and the step's delay, so they are not compared).
    Returns ``{"samples", "unique", "lost", "duplicated"}`` of ``b`` against ``a``."""
    ta, tb = read_traces(a), read_traces(b)
    assert ta.attrs["seed"] == tb.attrs["seed"] and ta.attrs["schema_version"] == tb.attrs["schema_version"]
    assert ta.feature_names == tb.feature_names
    for name, (kind, _, _) in FIELDS.items():
        x, y = ta.data[name], tb.data[name]
        assert x.shape == y.shape, name
        if kind == "vlen_int32":
            assert all(np.array_equal(u, v) for u, v in zip(x, y)), name
        elif kind == "str":
            assert list(x) == list(y), name
        else:
            assert x.dtype == y.dtype, name
            assert np.array_equal(x, y, equal_nan=np.issubdtype(x.dtype, np.floating)), name
    ids_a, ids_b = ta.data["sample_id"], tb.data["sample_id"]
    return {"samples": int(len(ids_b)), "unique": int(len(np.unique(ids_b))),
            "lost": int(len(np.setdiff1d(ids_a, ids_b))), "duplicated": int(len(ids_b) - len(np.unique(ids_b)))}
