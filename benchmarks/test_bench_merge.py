"""Merge of 100,000 samples × 4 stages (8 shard files) into one traces.h5: wall time and peak RSS.

The merge runs in a fresh subprocess so that its peak resident memory (``ru_maxrss`` of that process) is
the merge's own; goal: < 2 GB. Each sample carries F = 32 features per stage, ~128 tokens and ~300
characters of text (about 1.4 KB per sample, ~140 MB of traces). Results: results/benchmarks/merge.json.

    .venv/bin/python -m pytest benchmarks/test_bench_merge.py --benchmark-only \
        --benchmark-json=results/benchmarks/merge.json
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from asd.traces import TraceWriter

N, K, F, SHARDS = 100_000, 4, 32, 8
RSS_LIMIT_MB = 2048


def _write_shard(path, ids, rng):
    """Random but schema-valid rows for ``ids`` [n] int64, written in batches of 2,048 (one flush each)."""
    with TraceWriter(path, K, [f"f{j}" for j in range(F)], {"seed": 0, "config": {"bench": True}}) as w:
        for a in range(0, len(ids), 2048):
            b = ids[a:a + 2048]
            n = len(b)
            lens = rng.integers(32, 224, n)
            w.append({
                "sample_id": b, "dataset": ["gsm8k"] * n, "prompt_len": rng.integers(16, 512, n),
                "ran": rng.random((n, K)) < 0.6, "draft_len": rng.integers(0, 256, (n, K)),
                "accepted_len": rng.integers(0, 256, (n, K)), "latency_s": rng.random((n, K)),
                "decision": rng.integers(-2, K, (n, K)), "predictions": rng.random((n, K, K), np.float32),
                "features": rng.standard_normal((n, K, F), np.float32), "final_stage": rng.integers(0, K, n),
                "tokens": [rng.integers(0, 152064, m).astype(np.int32) for m in lens],
                "text": ["x" * int(m) + " é" for m in lens + 70], "score": rng.random(n, np.float32),
            })


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(SHARDS):   # strided ids: every output block interleaves all 8 files (the harder merge)
        ids = np.arange(i, N, SHARDS, dtype=np.int64)
        p = tmp / f"shard-{i}.h5"
        _write_shard(p, ids, rng)
        paths.append(p)
    return tmp, paths


CHILD = """
import json, resource, sys, time
import numpy as np
from asd.jobs.merge import merge_files
t = time.perf_counter()
stats = merge_files(json.loads(sys.argv[1]), sys.argv[2], expected_ids=np.arange(int(sys.argv[3])))
stats["merge_s"] = time.perf_counter() - t
stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(stats))
"""


def test_merge_100k_samples_peak_rss_under_2gb(benchmark, shards):
    tmp, paths = shards
    out = tmp / "traces.h5"
    results = []

    def run():
        out.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps([str(p) for p in paths]), str(out), str(N)],
                           capture_output=True, text=True, check=True)
        results.append(json.loads(r.stdout))

    benchmark.pedantic(run, rounds=2, iterations=1)
    peak = max(r["peak_rss_mb"] for r in results)
    benchmark.extra_info.update(samples=N, stages=K, features=F, shards=SHARDS, peak_rss_mb=round(peak, 1),
                                merge_s=[round(r["merge_s"], 2) for r in results],
                                input_mb=round(sum(p.stat().st_size for p in paths) / 2**20, 1),
                                output_mb=round(out.stat().st_size / 2**20, 1))
    print(json.dumps(benchmark.extra_info))
    assert results[-1]["samples"] == N and results[-1]["duplicates"] == 0 and results[-1]["missing"] == 0
    assert peak < RSS_LIMIT_MB, f"merge peak RSS {peak:.0f} MB >= {RSS_LIMIT_MB} MB"
