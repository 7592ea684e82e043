"""asd.layout.runner on CPU: tiny stages co-located in one process (a depth-extrapolated final stage) and in a
4-rank gloo world under torchrun (TP 1/1/2/4 with shared ranks); the cost table, the record, the report."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from asd.costs_io import load_cost_model  # noqa: E402
from asd.layout.routes import load_routes  # noqa: E402
from asd.layout.schedule import alone_calls, call_summary, cascade_calls  # noqa: E402
from asd.profiler import depth_extrapolate, load_profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RANDOM_ROUTES = ROOT / "results/routes/testbed_random.json"


def tiny_stage(name, hidden, layers, heads=4, kv=4, **extra):
    shape = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
             "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": 128}
    fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
    return f"    - {{name: {name}, shape: {json.dumps(shape)}{', ' + fields if fields else ''}}}\n"


def write_config(path, stages: str, repeats: int = 1):
    path.write_text(
        f"layout:\n  name: {path.stem}\n  device: cpu\n  dtype: float32\n  replay_repeats: {repeats}\n"
        f"  stages:\n{stages}"
        "cost_profiling:\n  prefill_tokens: [8, 16, 32]\n  decode_batch_sizes: [1, 2, 4]\n  decode_context: 8\n"
        "  decode_steps: 2\n  warmup: 0\n  repeats: 2\n  compile_blocks: false\n")
    return path


def small_routes(tmp_path, n_per_batch=6):
    """The committed testbed route file (random policy: routes to every stage) cut to a few samples of each of
    its first two batches: real routes and token counts, small enough for CPU."""
    r = load_routes(RANDOM_ROUTES)
    s = r["samples"]
    keep = [i for b in (0, 1) for i in [j for j, x in enumerate(s["batch"]) if x == b][:n_per_batch]]
    sub = dict(r, samples={k: [v[i] for i in keep] for k, v in s.items()})
    path = tmp_path / "small.json"
    path.write_text(json.dumps(sub))
    return path, sub


def layout_cli(args, tmp_path, nproc: int | None = None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if nproc is None:
        cmd = [sys.executable, "-m", "asd.layout"]
    else:
        exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        if not Path(exe).exists():
            pytest.skip("torchrun not found next to this Python")
        cmd = [exe, "--standalone", "--nproc_per_node", str(nproc), "-m", "asd.layout"]
    return subprocess.run(cmd + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not RANDOM_ROUTES.exists(), reason="no committed route file")
def test_one_process_layout_with_a_depth_extrapolated_final_stage(tmp_path):
    stages = (tiny_stage("a", 32, 1, first_rank=0) + tiny_stage("b", 32, 2, first_rank=0)
              + tiny_stage("c", 64, 2, first_rank=0) + tiny_stage("d", 64, 6, first_rank=0, build_layers=2))
    cfg = write_config(tmp_path / "one.yaml", stages, repeats=2)
    routes_path, routes = small_routes(tmp_path)
    res = layout_cli(["run", "--config", str(cfg), "--routes", str(routes_path), "--out", str(tmp_path / "out")],
                     tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "out"
    model = load_cost_model(out / "one.json")
    assert [s.name for s in model.stages] == ["a", "b", "c", "d"]
    meas = model.provenance["measured"]
    assert meas["stages"][-1]["extrapolated"] and meas["stages"][-1]["layers_measured"] == [2, 1]
    assert not any(s["extrapolated"] for s in meas["stages"][:-1]) and model.provenance["co_located"]
    raw = load_profile(out / "one.measurements.json")
    d = raw["stages"][-1]
    m2, m1 = d["depth"]["measured"]["2"]["decode"], d["depth"]["measured"]["1"]["decode"]
    assert d["decode"]["seconds_per_step"] == pytest.approx(
        [depth_extrapolate(x, y, 2, 1, 6) for x, y in zip(m2["seconds_per_step"], m1["seconds_per_step"])])
    rec = json.loads((out / "one.layout.json").read_text())
    assert rec["layout"]["world"] == 1 and "replay" in rec["label"]
    assert rec["layout"]["stages"][-1]["depth_extrapolated"] and rec["memory"]["after_build"][0]["stages"] == list("abcd")
    (rep,) = rec["replays"]
    calls, alone = cascade_calls(routes), alone_calls(routes, 3)
    assert rep["routes"] == "small" and rep["work"]["cascade"] == call_summary(calls, 4)
    casc = rep["cascade"]
    assert casc["depth_extrapolated"] and casc["wall_s"] is None and len(casc["seconds_samples"]) == 2
    assert [st["calls"] for st in casc["per_stage"]] == [sum(c.stage == k for c in calls) for k in range(4)]
    assert [st["decode_steps"] for st in casc["per_stage"]] == [sum(c.decode_steps for c in calls if c.stage == k)
                                                                for k in range(4)]
    assert len(casc["calls"]) == len(calls)
    # measured calls take time; a depth-extrapolated one (stage d) is t1 + (t1 − t2)·4 of two timings, which a
    # loaded machine can make negative: only finite is certain
    assert all(c["seconds"] > 0 if c["stage"] != "d" else math.isfinite(c["seconds"]) for c in casc["calls"])
    assert sum(st["seconds"] for st in casc["per_stage"]) == pytest.approx(sum(c["seconds"] for c in casc["calls"]))
    assert [c["stage"] for c in rep["alone"]["calls"]] == ["d"] * len(alone)
    assert math.isfinite(rep["alone"]["seconds"])  # stage d alone: extrapolated too
    # the report: tables, the cost table's estimate of each replay, the figure
    res = layout_cli(["report", str(out / "one.layout.json"), "--routes", str(routes_path), "--costs",
                      str(out / "one.json"), "--plot", str(out / "one.png")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "depth-extrapolated" in res.stdout and "cost-table estimate: cascade" in res.stdout
    assert (out / "one.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo not available")
@pytest.mark.skipif(not RANDOM_ROUTES.exists(), reason="no committed route file")
def test_four_ranks_gloo_reference_layout_shape(tmp_path):
    """The 8-GPU reference in small: TP 1 on rank 0, TP 1 on rank 1, TP 2 on ranks 2-3, TP 4 over all four
    (sharing ranks with the others): every rank holds its shards, costs per stage, the replay hands off."""
    stages = (tiny_stage("a", 32, 1) + tiny_stage("b", 32, 2) + tiny_stage("c", 64, 2, tensor_parallel=2)
              + tiny_stage("d", 64, 3, tensor_parallel=4, first_rank=0))
    cfg = write_config(tmp_path / "four.yaml", stages)
    routes_path, routes = small_routes(tmp_path, n_per_batch=4)
    res = layout_cli(["run", "--config", str(cfg), "--routes", str(routes_path), "--out", str(tmp_path / "out")],
                     tmp_path, nproc=4)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rec = json.loads((tmp_path / "out/four.layout.json").read_text())
    assert rec["layout"]["world"] == 4
    assert [s["ranks"] for s in rec["layout"]["stages"]] == [[0], [1], [2, 3], [0, 1, 2, 3]]
    assert [m["stages"] for m in rec["memory"]["after_build"]] == [["a", "d"], ["b", "d"], ["c", "d"], ["c", "d"]]
    est = rec["memory"]["estimate"]
    assert [e["stages"] for e in est] == [["a", "d"], ["b", "d"], ["c", "d"], ["c", "d"]]
    model = load_cost_model(tmp_path / "out/four.json")
    assert [s["devices"] for s in model.provenance["measured"]["stages"]] == [1, 1, 2, 4]
    casc = rec["replays"][0]["cascade"]
    calls = cascade_calls(routes)
    assert len(casc["calls"]) == len(calls) and casc["wall_s"] > 0 and not casc["depth_extrapolated"]
    assert rec["replays"][0]["alone"]["seconds"] > 0


def test_a_route_file_for_another_hierarchy_is_refused_before_any_build(tmp_path):
    stages = tiny_stage("a", 32, 1, first_rank=0) + tiny_stage("b", 32, 2, first_rank=0)
    cfg = write_config(tmp_path / "two.yaml", stages)
    routes_path, _ = small_routes(tmp_path, n_per_batch=2) if RANDOM_ROUTES.exists() else (None, None)
    if routes_path is None:
        pytest.skip("no committed route file")
    res = layout_cli(["run", "--config", str(cfg), "--routes", str(routes_path), "--out", str(tmp_path / "out")],
                     tmp_path)
    assert res.returncode == 2 and "route file small: 4 stages, the layout has 2" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _gpu_stages(tp_last: int = 1) -> str:
    """Three tiny stages on GPU 0 and a final one at TP ``tp_last`` (depth-extrapolated on one GPU)."""
    last = {"build_layers": 2} if tp_last == 1 else {}
    return (tiny_stage("a", 64, 1, first_rank=0) + tiny_stage("b", 64, 2, first_rank=0)
            + tiny_stage("c", 128, 2, first_rank=0)
            + tiny_stage("d", 128, 4, tensor_parallel=tp_last, first_rank=0, **last))


def _gpu_config(path, stages):
    path.write_text(
        f"layout:\n  name: {path.stem}\n  device: cuda\n  dtype: bfloat16\n  replay_repeats: 1\n"
        f"  memory_reserve_gib: 1\n  stages:\n{stages}"
        "cost_profiling:\n  prefill_tokens: [16, 64]\n  decode_batch_sizes: [1, 8]\n  decode_context: 16\n"
        "  decode_steps: 4\n  warmup: 1\n  repeats: 2\n  compile_blocks: true\n")
    return path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not RANDOM_ROUTES.exists(), reason="no committed route file")
def test_gpu_one_device_layout_smoke(tmp_path):
    """The CUDA path of the runner on tiny bf16 stages: graphs in one shared pool, compiled decode blocks,
    a depth-extrapolated final stage; run before the real layout to catch a CUDA-only failure in seconds."""
    cfg = _gpu_config(tmp_path / "gpu1.yaml", _gpu_stages())
    routes_path, _ = small_routes(tmp_path)
    res = layout_cli(["run", "--config", str(cfg), "--routes", str(routes_path), "--out", str(tmp_path / "out")],
                     tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rec = json.loads((tmp_path / "out/gpu1.layout.json").read_text())
    assert rec["complete"] and rec["layout"]["device"] != "cpu" and rec["memory"]["after_build"][0]["used_bytes"] > 0
    assert all(st["graphs"] and st["compiled"] for st in load_profile(tmp_path / "out/gpu1.measurements.json")["stages"])
    assert rec["replays"][0]["cascade"]["seconds"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.skipif(not RANDOM_ROUTES.exists(), reason="no committed route file")
def test_gpu_two_device_layout_smoke(tmp_path):
    """NCCL: a TP 2 final stage (graphs with collectives inside) beside TP 1 stages on GPU 0."""
    cfg = _gpu_config(tmp_path / "gpu2.yaml", _gpu_stages(tp_last=2))
    routes_path, _ = small_routes(tmp_path)
    res = layout_cli(["run", "--config", str(cfg), "--routes", str(routes_path), "--out", str(tmp_path / "out")],
                     tmp_path, nproc=2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rec = json.loads((tmp_path / "out/gpu2.layout.json").read_text())
    assert rec["complete"] and [s["ranks"] for s in rec["layout"]["stages"]][-1] == [0, 1]
