"""Device run (one GPU): the cascade end to end on a GPU, lossless check included (docs/gpu.md, "End to end").

Stages: the committed testbed weights when present (configs/testbed.yaml), else a random 4-stage family
of testbed-like shapes (asd.models.random_init.random_family: the final stage random, smaller stages
perturbed copies, so drafts are partly accepted). HFEngine on CUDA in fp32. Checks, on ragged prompts:

- the cascade at λ = ∞ (gamma 0 and 4) and the two-model speculative policy return exactly the final
  stage's own greedy output (lossless);
- the cascade at λ = 1 with the H100 cost table (configs/costs/h100-qwen2.5.json, 4 stages) runs and
  records where it stops;
- StaticDecoder (CUDA graphs) greedy on the final stage == the engine's greedy, and their times.

Writes the JSON record (card, revision, every check and time) to --out; scripts/gpu_final.sh runs it.

    PYTHONPATH=. python3 scripts/gpu_e2e.py --out $OUT/e2e.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--max-new", type=int, default=32)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from asd.cascade import Cascade, CascadeConfig
    from asd.core.dp import PolicyConfig
    from asd.costs_io import load_cost_model
    from asd.models.base import GenerationParams
    from asd.models.cuda_graph import StaticDecoder
    from asd.models.hf import HFEngine
    from asd.provenance import provenance

    EOS = 2
    rec = {"checks": {}, "timing_s": {}}
    tb = Path("asd/testbed/weights/s3")
    if tb.is_dir():
        from asd.run_config import load_section
        from asd.models.loading import load_engines

        hier = load_section("configs/testbed.yaml", "hierarchy")
        engines = load_engines(hier, device=args.device)
        from asd.testbed import tasks
        from asd.testbed import tokenizer as tk

        exs = [e for t in tasks.TASKS for lv in (1, 3, 5) for e in tasks.generate(t, 4, lv, seed=7)]
        prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in exs][: args.n]
        EOS = tk.EOS_ID
        rec["stages"] = "testbed weights"
    else:
        from asd.models.random_init import random_family

        root = Path(tempfile.mkdtemp())
        dirs = random_family(root, stages=4, seed=3, noise=0.05, vocab_size=512, hidden_size=256, num_layers=4,
                             num_heads=8, num_kv_heads=4, intermediate_size=512, init_std=0.3)
        engines = [HFEngine(d, dtype="float32", device=args.device, name=f"s{k}", max_context=512)
                   for k, d in enumerate(dirs)]
        g = np.random.default_rng(5)
        prompts = [g.integers(3, 512, size=int(n)).tolist() for n in g.integers(4, 40, size=args.n)]
        rec["stages"] = "random family (testbed weights absent): 4 stages, hidden 256, 4 layers, vocab 512"
    cuda = args.device.startswith("cuda")
    rec["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    print("stages:", rec["stages"], "| device:", rec["device"], flush=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()


    final = engines[-1]
    params = GenerationParams(args.max_new, eos_token_ids=(EOS,))
    final.generate(prompts[:2], params)                                   # warm-up
    t0 = time.perf_counter()
    ref = [t.tolist() for t in final.generate(prompts, params).tokens]
    sync()
    rec["timing_s"]["final_engine_generate"] = time.perf_counter() - t0

    cost = load_cost_model("configs/costs/h100-qwen2.5.json")
    runs = [("dp_inf_g0", PolicyConfig(name="dp", lam=math.inf), 0, None),
            ("dp_inf_g4", PolicyConfig(name="dp", lam=math.inf), 4, None),
            ("speculative_g4", PolicyConfig(name="speculative"), 4, None),
            ("dp_lam1_h100_costs", PolicyConfig(name="dp", lam=1.0), 0, cost)]
    for name, pol, gamma, cm in runs:
        c = Cascade(engines, CascadeConfig(max_new_tokens=args.max_new, gamma=gamma, batch_size=len(prompts)), pol,
                    cost_model=cm, eos_token_ids=(EOS,))
        t0 = time.perf_counter()
        out = c.run(prompts)
        sync()
        rec["timing_s"][name] = time.perf_counter() - t0
        toks = [t.tolist() for t in out["tokens"]]
        same = sum(a == b for a, b in zip(toks, ref))
        rec["checks"][name] = {"equal_to_final": same, "n": len(ref),
                               "final_stage_hist": np.bincount(out["final_stage"], minlength=4).tolist()}
        print(f"{name}: {same}/{len(ref)} equal to the final stage alone; stops at "
              f"{rec['checks'][name]['final_stage_hist']}; {rec['timing_s'][name]:.2f}s", flush=True)

    dec = StaticDecoder(final.model, max_batch=len(prompts), max_len=max(map(len, prompts)) + args.max_new)
    dec.generate_greedy(prompts, args.max_new, eos_token_id=EOS)          # capture
    t0 = time.perf_counter()
    fast = dec.generate_greedy(prompts, args.max_new, eos_token_id=EOS)
    sync()
    rec["timing_s"]["static_decoder_generate"] = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(fast, ref))
    rec["checks"]["static_decoder_vs_engine"] = {"equal": same, "n": len(ref)}
    print(f"StaticDecoder greedy == engine greedy: {same}/{len(ref)}; "
          f"{rec['timing_s']['static_decoder_generate']:.3f}s vs {rec['timing_s']['final_engine_generate']:.3f}s",
          flush=True)
    rec["provenance"] = provenance(script="scripts/gpu_e2e.py")
    Path(args.out).write_text(json.dumps(rec, indent=1, default=str) + "\n")
    lossless = all(rec["checks"][k]["equal_to_final"] == len(ref) for k in ("dp_inf_g0", "dp_inf_g4", "speculative_g4"))
    print("LOSSLESS" if lossless else "NOT LOSSLESS", flush=True)
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())
