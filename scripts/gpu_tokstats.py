#!/usr/bin/env python3
"""Device run (one GPU) for token_stats CUDA (docs/token_stats.md): build asd._C with CUDA, run the token_stats
tests, then time the kernel at [256, 152064] bf16 against torch eager and a device-to-device copy
of the same logits, all in this one process on one card.

Usage on the device machine, from the repository root:
    OUT=/some/dir python3 scripts/gpu_tokstats.py [--no-build] [--no-tests]
Writes $OUT/gpu_token_stats.json (card named) and $OUT/*.log (OUT defaults to results/gpu/<UTC time>/);
prints a short table last. Committed records: results/benchmarks/gpu_token_stats*.json.

Method (see docs/token_stats.md): inputs rotate among enough sets to exceed 4× the L2; each
variant is captured in a CUDA graph of `calls` launches and replayed `reps` times between CUDA
events after warm-up; the median per launch is reported. Bandwidths: the kernel reads the logits
once (N·V·2 bytes); the copy moves them twice (read + write).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N, V = 256, 152_064


def sh(cmd: list[str], log: Path, env: dict | None = None, timeout: int = 400) -> tuple[int, str]:
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    text = p.stdout + p.stderr
    log.write_text(text)
    print(f"$ {' '.join(cmd)}  -> rc {p.returncode} in {time.time() - t0:.0f}s", flush=True)
    return p.returncode, text


def build(out: Path) -> None:
    env = dict(os.environ, ASD_BUILD_CUDA="on", ASD_CUDA_ARCHS=os.environ.get("ASD_CUDA_ARCHS", "90"))
    rc, text = sh([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--build-temp", "/tmp/asd-build"],
                  out / "build.log", env)
    if rc != 0:
        print(text[-4000:])
        sys.exit("build failed")


def sass_summary(out: Path) -> dict:
    so = next(iter(sorted((ROOT / "asd").glob("_C*.so"))), None)
    try:
        text = subprocess.run(["cuobjdump", "--dump-sass", str(so)], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    (out / "sass.txt").write_text(text[:8_000_000])
    counts = {}
    for key in ("LDG.E.128", "LDG.E.EF.128", "LDG.E.64", "LDG.E.U16", "LDG.E ", "MUFU.EX2", "LDL", "STL"):
        counts[key.strip()] = text.count(key)
    return counts


def time_graph(torch, fn, n_sets: int, calls: int, reps: int) -> dict:
    """Median/min ms per launch of fn(i) (i rotating over the input sets), replayed from a CUDA graph."""
    for i in range(2 * n_sets):
        fn(i % n_sets)
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(n_sets):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i % n_sets)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / calls)
    del g
    return {"median_ms": statistics.median(times), "min_ms": min(times), "mode": "graph"}


def time_calls(torch, fn, n_sets: int, calls: int, reps: int) -> dict:
    """Plain back-to-back calls between events (includes the Python/launch overhead if it dominates)."""
    for i in range(2 * n_sets):
        fn(i % n_sets)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(calls):
            fn(i % n_sets)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / calls)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "mode": "calls"}


def bench(out: Path) -> dict:
    import torch

    from asd._ext import get_ext
    from asd.provenance import git_revision
    from asd.tokstats import DTYPE_BF16, DTYPE_F32, token_stats, token_stats_ref

    ext = get_ext()
    assert ext is not None and ext.WITH_CUDA, "asd._C without CUDA kernels"
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 50 << 20))
    res: dict = {
        "schema_version": 1, "git_revision": git_revision(), "card": torch.cuda.get_device_name(dev),
        "sm_count": props.multi_processor_count, "l2_bytes": l2, "torch": torch.__version__,
        "cuda": torch.version.cuda, "timing": {}, "errors": {},
    }
    try:
        res["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    except OSError:
        pass
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731

    def run_case(n, v, dtype, variants_pieces, with_copy, tag):
        nbytes = n * v * torch.finfo(dtype).bits // 8
        n_sets = max(2, math.ceil(4 * l2 / nbytes))
        n_sets = min(n_sets, 64)
        g = torch.Generator(device=dev).manual_seed(n + v)
        xs = [(torch.randn(n, v, generator=g, device=dev) * 4).to(dtype) for _ in range(n_sets)]
        cs = [torch.randint(0, v, (n,), generator=g, device=dev) for _ in range(n_sets)]
        outs = [torch.empty(n, 5, device=dev) for _ in range(n_sets)]
        code = DTYPE_BF16 if dtype == torch.bfloat16 else DTYPE_F32
        calls = max(n_sets, 8 if nbytes > (16 << 20) else 64)
        case = {"shape": [n, v], "dtype": str(dtype), "bytes_read": nbytes, "rotating_sets": n_sets, "variants": {}}

        def ours(pieces, variant=0):
            return lambda i: ext.token_stats_cuda(xs[i].data_ptr(), n, v, v, code, cs[i].data_ptr(),
                                                  outs[i].data_ptr(), stream(), 0, pieces, variant)

        fns = {f"ours pieces={p or 'auto'}": ours(p) for p in variants_pieces}
        if dtype != torch.float32:
            fns["ours float scan (v2), pieces=auto"] = ours(0, 1)
        fns["ours via token_stats()"] = lambda i: token_stats(xs[i], cs[i], validate=False)
        fns["torch eager"] = lambda i: token_stats_ref(xs[i], cs[i])
        if with_copy:
            dst = [torch.empty_like(x) for x in xs]
            fns["d2d copy"] = lambda i: dst[i].copy_(xs[i])
        for name, fn in fns.items():
            try:
                r = time_graph(torch, fn, n_sets, calls, reps=20)
            except Exception as e:  # noqa: BLE001 - record and fall back to plain calls
                r = time_calls(torch, fn, n_sets, calls, reps=20)
                r["graph_error"] = repr(e)[:300]
            case["variants"][name] = r
        # plain-call latency of the public wrapper (Python + launch overhead, validate=True syncs)
        case["variants"]["token_stats() plain calls, validate=True"] = time_calls(
            torch, lambda i: token_stats(xs[i], cs[i]), n_sets, calls, reps=10)
        case["variants"]["torch eager plain calls"] = time_calls(
            torch, lambda i: token_stats_ref(xs[i], cs[i]), n_sets, calls, reps=10)
        # accuracy of the auto kernel on two sets, vs the float64 twin on the same values
        errs = {}
        for i in range(min(2, n_sets)):
            got = token_stats(xs[i], cs[i]).double()
            want = token_stats_ref(xs[i].double(), cs[i]).double()
            errs.setdefault("nan_in_output", 0)
            errs["nan_in_output"] += int(torch.isnan(got).sum())
            errs["argmax_mismatch"] = errs.get("argmax_mismatch", 0) + int((got[:, 4] != want[:, 4]).sum())
            for k, col in enumerate(("entropy", "max_prob", "margin", "logprob")):
                e = float((got[:, k] - want[:, k]).norm() / want[:, k].norm())
                errs[f"rel_err_{col}"] = max(errs.get(f"rel_err_{col}", 0.0), e)
        case["errors"] = errs
        t = {k: v_["median_ms"] for k, v_ in case["variants"].items()}
        best = min((v_ for k, v_ in t.items() if k.startswith("ours pieces")), default=None)
        auto = t.get("ours pieces=auto")
        case["read_GBps_auto"] = nbytes / (auto * 1e-3) / 1e9 if auto else None
        if with_copy:
            copy_bw = 2 * nbytes / (t["d2d copy"] * 1e-3) / 1e9
            case["copy_GBps_read_plus_write"] = copy_bw
            case["fraction_of_copy_bandwidth_auto"] = case["read_GBps_auto"] / copy_bw
            case["fraction_of_copy_bandwidth_best"] = nbytes / (best * 1e-3) / 1e9 / copy_bw
        case["speedup_vs_torch_eager_graph"] = t["torch eager"] / auto
        case["speedup_vs_torch_eager_calls"] = t["torch eager plain calls"] / auto
        res["timing"][tag] = case
        del xs, outs
        torch.cuda.empty_cache()

    run_case(N, V, torch.bfloat16, [0, 1, 2, 4], True, "bf16_256")
    run_case(N, V, torch.float32, [0, 1, 2], True, "fp32_256")
    for n in (1, 8, 64):
        run_case(n, V, torch.bfloat16, [0, 1], False, f"bf16_{n}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-tests", action="store_true")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT") or ROOT / "results/gpu" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem",
                          "--format=csv"], capture_output=True, text=True).stdout, flush=True)
    if not args.no_build:
        build(out)
    sass = sass_summary(out)
    tests = {}
    if not args.no_tests:
        rc, text = sh([sys.executable, "-m", "pytest", "tests/test_tokstats_cuda.py", "tests/test_tokstats.py",
                       "-q", "-p", "no:cacheprovider", "-x"], out / "pytest.log", timeout=300)
        tests = {"rc": rc, "summary": text.strip().splitlines()[-1] if text.strip() else ""}
        print(text[-3000:], flush=True)
        if rc < 0:  # crashed: a native backtrace (cuda-gdb also debugs host code; there is no gdb)
            _, bt = sh(["cuda-gdb", "-batch", "-ex", "run", "-ex", "bt", "--args", sys.executable, "-m", "pytest",
                        "tests/test_tokstats.py", "-q", "-p", "no:cacheprovider", "-x"], out / "backtrace.log",
                       timeout=240)
            print(bt[-4000:], flush=True)
    res = bench(out)
    res["sass"] = sass
    res["tests"] = tests
    (out / "gpu_token_stats.json").write_text(json.dumps(res, indent=2))
    print(f"\ncard: {res['card']}  sass: {sass}  tests: {tests.get('summary')}")
    for tag, case in res["timing"].items():
        print(f"-- {tag} {case['shape']} sets={case['rotating_sets']} errors={case['errors']}")
        for k, v in case["variants"].items():
            extra = f" graph_error={v['graph_error'][:80]}" if "graph_error" in v else ""
            print(f"   {k:45s} {v['median_ms'] * 1e3:9.1f} us (min {v['min_ms'] * 1e3:.1f}) {v['mode']}{extra}")
        keys = ("read_GBps_auto", "copy_GBps_read_plus_write", "fraction_of_copy_bandwidth_auto",
                "fraction_of_copy_bandwidth_best", "speedup_vs_torch_eager_graph", "speedup_vs_torch_eager_calls")
        print("   " + "  ".join(f"{k}={case[k]:.3g}" for k in keys if case.get(k) is not None))


if __name__ == "__main__":
    main()
