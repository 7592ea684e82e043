"""Copy the training columns of a predictor training set into a smaller, gzip-compressed HDF5 file.

Usage: python scripts/compact_predictor_data.py SRC.h5 DST.h5

Why: the 100,000-sample file of `asd generate-data` (docs/predictor_data.md) is ~150 MB, most of it the
responses' tokens; the device machine returns files of at most 16 MiB. `asd train-predictor` reads only the
features, the labels and the keys, so this script keeps those datasets (every one but ``tokens_*``), stores
them with HDF5's shuffle + gzip filters (h5ls/h5py/pandas read them transparently), and keeps every root
attribute of the source, adding ``compacted_from`` (the source's sha256 and the datasets left out). The
per-dataset checksum attributes of the source cover the dropped datasets too, so they are not copied: the
trainer records the sha256 of the file it reads instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py

from asd.data.base import file_sha256
from asd.traces import CHECKSUM_ATTRS  # covers the dropped datasets too: not copied


def compact(src: Path, dst: Path) -> dict:
    if dst.exists():
        raise SystemExit(f"{dst}: exists; remove it first")
    tmp = dst.with_name(dst.name + ".partial")
    dropped: list[str] = []
    with h5py.File(src, "r") as f, h5py.File(tmp, "w") as g:
        if not bool(f.attrs.get("complete", False)):
            raise SystemExit(f"{src}: incomplete file (its writer did not finish)")
        for k, v in f.attrs.items():
            if k not in CHECKSUM_ATTRS:
                g.attrs[k] = v
        for name, ds in f.items():
            if name.startswith("tokens_"):
                dropped.append(name)
                continue
            out = g.create_dataset(
                name, data=ds[()], dtype=ds.dtype, chunks=True, compression="gzip", compression_opts=6, shuffle=True
            )
            for k, v in ds.attrs.items():
                out.attrs[k] = v
        g.attrs["compacted_from"] = json.dumps({"sha256": file_sha256(src), "name": src.name, "dropped": dropped})
    tmp.replace(dst)
    return {"src_bytes": src.stat().st_size, "dst_bytes": dst.stat().st_size, "dropped": dropped}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    print(json.dumps(compact(Path(sys.argv[1]), Path(sys.argv[2]))))
