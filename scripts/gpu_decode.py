"""Device run (one GPU): fast decode path vs eager vs bandwidth floor, and the Qwen2.5 cost profile (docs/gpu.md).

One process, one model in memory at a time (random bf16 weights built on the GPU). Per size:
greedy equality of the graph path with a plain HF eager loop; the profiler's measurements (prefill vs
tokens, graph decode at the configured batch sizes, HF eager decode at batch 1 and 8); optionally the
graph path with torch.compile'd element-wise blocks. The copy bandwidth is measured in the same run.
Writes the profile (asd.profiler format plus ``checks``) as JSON to --out and prints a table last; refit it
with ``asd profile --from-measurements``. Usually run through scripts/gpu_profile.sh (or gpu_attention.sh,
gpu_tp_table.sh), which set the environment; by hand, on the GPU machine from the repository root:

    PYTHONPATH=. python3 scripts/gpu_decode.py --out $OUT/profile.json [--sizes 7b,14b,32b] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import traceback


def hf_greedy(model, prompt, n):
    """Plain transformers eager greedy loop (DynamicCache): tokens and first-step logits [V]."""
    import torch

    dev = next(model.parameters()).device
    ids = torch.tensor([prompt], device=dev)
    res = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = getattr(res, "past_key_values", None) or getattr(res, "cache")
    logits0 = res.logits[0, -1].float()
    out = [int(res.logits[0, -1].argmax())]
    for _ in range(n - 1):
        res = model(input_ids=torch.tensor([[out[-1]]], device=dev), past_key_values=cache, use_cache=True)
        out.append(int(res.logits[0, -1].argmax()))
    return out, logits0


def check_equal(model, n_new=8):
    """Greedy tokens: HF eager (one prompt at a time) vs StaticDecoder with graphs (batched)."""
    import torch

    from asd.models.cuda_graph import StaticDecoder

    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, model.config.vocab_size, (n,), generator=g).tolist() for n in (24, 17)]
    with torch.no_grad():
        ref = [hf_greedy(model, p, n_new) for p in prompts]
        dec = StaticDecoder(model, max_batch=2, max_len=64)
        lg0 = dec.prefill(torch.tensor([prompts[0]]), [len(prompts[0])])[0].float()
        out = dec.generate_greedy(prompts, n_new)
    rel = float((lg0 - ref[0][1]).norm() / ref[0][1].norm())
    top2 = ref[0][1].topk(2).values
    del dec
    rec = {"dtype": str(next(model.parameters()).dtype), "equal": [r[0] == o for r, o in zip(ref, out)],
           "hf": [r[0] for r in ref], "graph": out,
           "first_logits_rel_err": rel, "first_top1_top2_gap": float(top2[0] - top2[1])}
    # noise floor of the eager path itself: HF with its "eager" attention instead of "sdpa"
    impl = model.config._attn_implementation
    try:
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            alt = [hf_greedy(model, p, n_new) for p in prompts]
        rec["hf_eager_attn_vs_sdpa"] = {"equal": [a[0] == r[0] for a, r in zip(alt, ref)],
                                        "first_logits_rel_err": float((alt[0][1] - ref[0][1]).norm()
                                                                      / ref[0][1].norm())}
    finally:
        model.config._attn_implementation = impl
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="7b,14b,32b")
    ap.add_argument("--deep", default="72b:36:18", help="size:layers:layers measured by depth extrapolation")
    ap.add_argument("--fp32-checks", default="7b,14b", help="sizes whose greedy equality is checked in fp32")
    ap.add_argument("--eager-batch", default="1,8")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="dry run: a tiny random Qwen2 and a small config")
    ap.add_argument("--quick", action="store_true", help="re-check: prefill 512 only, batch 1 and 8, 5 repeats")
    ap.add_argument("--decode-batch", default=None, help="decode batch sizes, e.g. 1,4,8,16 (default: the config's)")
    ap.add_argument("--prefill-path", default=None, choices=["graph", "eager"],
                    help="how prefill is timed (default: the config's, graph)")
    args = ap.parse_args(argv)

    import torch

    from asd.config_loader import to_dict
    from asd.profiler import (SCHEMA_VERSION, build_model, copy_bandwidth, measure_decode, profile_stage,
                              save_profile)
    from asd.profiler_config import ProfilerConfig
    from asd.provenance import provenance
    import transformers  # noqa: F401  (recorded in provenance)

    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = ProfilerConfig()   # the configs/cost_profiling.yaml defaults
    if args.quick:
        cfg = ProfilerConfig(prefill_tokens=[512], decode_batch_sizes=[1, 8], repeats=5)
    if args.tiny:
        cfg = ProfilerConfig(prefill_tokens=[8, 16, 32], decode_batch_sizes=[1, 2], decode_context=16,
                             decode_steps=4, warmup=1, repeats=3)
    if args.decode_batch or args.prefill_path:
        cfg = ProfilerConfig(**{**to_dict(cfg),
                                **({"decode_batch_sizes": [int(b) for b in args.decode_batch.split(",")]}
                                   if args.decode_batch else {}),
                                **({"prefill_path": args.prefill_path} if args.prefill_path else {})})
    eager_bs = [int(b) for b in args.eager_batch.split(",") if b]
    dev = torch.device(args.device)
    if dev.type == "cuda":
        print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, "cuda", torch.version.cuda,
              flush=True)
    bw = copy_bandwidth(dev, nbytes=(2 << 30) if not args.tiny else (64 << 20))
    print(f"copy bandwidth {bw / 1e12:.3f} TB/s", flush=True)
    prof = {"schema_version": SCHEMA_VERSION, "copy_bandwidth_Bps": bw, "stages": [], "checks": {},
            "checks_fp32": {}}
    for size in [x for x in args.sizes.split(",") if x]:
        t0 = time.time()
        if args.tiny:
            from transformers import Qwen2Config, Qwen2ForCausalLM

            model = Qwen2ForCausalLM(Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128,
                                                 num_hidden_layers=2, num_attention_heads=4,
                                                 num_key_value_heads=2)).to(dev).eval()
        else:
            model = build_model(f"Qwen/Qwen2.5-{size.upper()}-Instruct", "bfloat16", args.device, True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
            print(f"[{size}] built in {time.time() - t0:.1f}s, {torch.cuda.memory_allocated() / 1e9:.1f} GB",
                  flush=True)
        try:
            prof["checks"][size] = check_equal(model)
            print(f"[{size}] greedy equal: {prof['checks'][size]['equal']} rel err "
                  f"{prof['checks'][size]['first_logits_rel_err']:.2e}", flush=True)
        except Exception:  # noqa: BLE001 — report and go on measuring
            traceback.print_exc()
            prof["checks"][size] = {"error": traceback.format_exc()}
        rec = {"name": size, "model": f"Qwen/Qwen2.5-{size.upper()}-Instruct", "dtype": "bfloat16",
               "random_weights": True, "devices": 1, **profile_stage(model, cfg, bw, eager_bs)}
        prof["stages"].append(rec)
        d, e = rec["decode"], rec.get("eager_decode", {"seconds_per_step": [], "batch_sizes": []})
        print(f"[{size}] floor {rec['floor_s'] * 1e3:.2f} ms; graph ms/step "
              f"{[round(s * 1e3, 2) for s in d['seconds_per_step']]} at {d['batch_sizes']}; eager "
              f"{[round(s * 1e3, 2) for s in e['seconds_per_step']]} at {e['batch_sizes']}", flush=True)
        try:   # the graph path without compiled blocks, same run (the table's middle column)
            if eager_bs:
                rec["decode_plain_graph"] = measure_decode(model, eager_bs, cfg.decode_context, cfg.decode_steps,
                                                           cfg.warmup, cfg.repeats, compile_blocks=False)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        if rec["decode"].get("attention") != "sdpa":
            try:   # the same graph path with SDPA attention instead of the split-K kernel, same run
                rec["decode_sdpa"] = measure_decode(model, cfg.decode_batch_sizes, cfg.decode_context,
                                                    cfg.decode_steps, cfg.warmup, cfg.repeats, compile_blocks=True,
                                                    attention="sdpa")
            except Exception:  # noqa: BLE001
                traceback.print_exc()
        del model
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        print(f"[{size}] done in {time.time() - t0:.1f}s", flush=True)
        prof["provenance"] = provenance(config={"cost_profiling": to_dict(cfg)}, schema_version=SCHEMA_VERSION,
                                        script="scripts/gpu_decode.py")
        save_profile(prof, args.out)   # after every size: a later failure keeps what was measured

    if args.deep:
        deep(args.deep, cfg, bw, prof, args.out, args.device)
    for size in [x for x in args.fp32_checks.split(",") if x]:
        t0 = time.time()
        try:
            model = build_model(f"Qwen/Qwen2.5-{size.upper()}-Instruct", "float32", args.device, True)
            prof["checks_fp32"][size] = check_equal(model)
            print(f"[{size} fp32] greedy equal: {prof['checks_fp32'][size]['equal']} rel err "
                  f"{prof['checks_fp32'][size]['first_logits_rel_err']:.2e} ({time.time() - t0:.0f}s)", flush=True)
            del model
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            prof["checks_fp32"][size] = {"error": traceback.format_exc()}
        gc.collect()
        torch.cuda.empty_cache()
        save_profile(prof, args.out)

    print("\nsize | floor ms | batch | graph ms/step | x floor | eager ms/step | eager x floor")
    for rec in prof["stages"]:
        f = rec["floor_s"]
        ed = rec.get("eager_decode", {"batch_sizes": [], "seconds_per_step": []})
        eager = dict(zip(ed["batch_sizes"], ed["seconds_per_step"]))
        for b, s in zip(rec["decode"]["batch_sizes"], rec["decode"]["seconds_per_step"]):
            es = eager.get(b)
            print(f"{rec['name']} | {f * 1e3:.2f} | {b} | {s * 1e3:.2f} | {s / f:.2f} | "
                  f"{'' if es is None else f'{es * 1e3:.2f}'} | {'' if es is None else f'{es / f:.2f}'}")
        print(f"{rec['name']} decode attention: {rec['decode'].get('attention')}")
        sd = rec.get("decode_sdpa")
        if sd:
            print(f"{rec['name']} graph + compiled blocks with SDPA attention: "
                  f"{[round(x * 1e3, 2) for x in sd['seconds_per_step']]} ms at {sd['batch_sizes']}")
        pg = rec.get("decode_plain_graph")
        if pg:
            print(f"{rec['name']} plain graph (no compiled blocks): "
                  f"{[round(x * 1e3, 2) for x in pg['seconds_per_step']]} ms at {pg['batch_sizes']}")
    return 0


def deep(spec, cfg, bw, prof, out, device="cuda"):
    """A model too large for one device: built with L1 layers, timed at L1 and L2, extrapolated in depth
    (asd.profiler.profile_stage_by_depth). Appended to ``stages`` with ``extrapolated: True``."""
    import torch

    from asd.profiler import build_model, profile_stage_by_depth, save_profile

    size, l1, l2 = spec.split(":")
    model_id = f"Qwen/Qwen2.5-{size.upper()}-Instruct"
    t0 = time.time()
    model = build_model(model_id, "bfloat16", device, True, layers=int(l1))
    print(f"[{size}:{l1} layers] built in {time.time() - t0:.1f}s", flush=True)
    from asd.models.shapes import known_shape

    rec = profile_stage_by_depth(model, known_shape(model_id)["num_hidden_layers"], cfg, bw, short=int(l2))
    prof["stages"].append({"name": size, "model": model_id, "dtype": "bfloat16", "random_weights": True,
                           "devices": 1, **rec})
    prof["extrapolated_stages"] = prof.get("extrapolated_stages", []) + [size]
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    save_profile(prof, out)
    print(f"[{size}] extrapolated in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
