"""Shared helpers of the job tests: write a run config, compare traces dataset by dataset, damage files on
disk (flipped bytes, a full file system) and write a step that fails."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
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


def flip_chunk_byte(path: Path, dataset: str, at: int = 8) -> int:
    """Invert byte ``at`` of the first chunk of ``dataset`` in the HDF5 file ``path`` (on disk, as a bad
    sector or a stray write would); returns the file offset."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset + at
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    return offset


def overwrite_text(path: Path, needle: bytes, replacement: bytes) -> int:
    """Overwrite the first occurrence of ``needle`` in the file's bytes (e.g. inside a variable-length string,
    which HDF5 keeps in its global heap, out of reach of filters) with ``replacement`` of the same length."""
    assert len(needle) == len(replacement)
    data = path.read_bytes()
    offset = data.index(needle)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(replacement)
    return offset


@contextlib.contextmanager
def small_tmpfs(size: str = "4m"):
    """A real tmpfs of ``size`` mounted on a fresh folder (root only; skips the test otherwise)."""
    import tempfile

    import pytest

    mnt = Path(tempfile.mkdtemp(prefix="asd-tmpfs-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        mnt.rmdir()


def fill_disk(folder: Path) -> Path:
    """Write a file in ``folder`` until the file system is full (ENOSPC); returns it (delete it to free)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    try:
        while True:  # the last pages
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    os.close(fd)
    return filler


FAILING_STEP = '''
import numpy as np
from asd.jobs.steps import synthetic

def step(sample_ids, config):
    """The synthetic step, except that sample {fail_at} raises."""
    if {fail_at} in sample_ids:
        raise ValueError("sample {fail_at} has no prompt")
    return synthetic(sample_ids, config)
'''


def failing_step_module(folder: Path, fail_at: int) -> str:
    """Write ``failstep.py`` (a step raising on sample ``fail_at``) into ``folder``; returns its step spec.
    The folder must be on the tasks' PYTHONPATH."""
    (folder / "failstep.py").write_text(FAILING_STEP.format(fail_at=fail_at))
    return "failstep:step"
