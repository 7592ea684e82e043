"""``asd cascade --config FILE``: run the draft-verify cascade on testbed prompts and print what it did.

Sections used: ``hierarchy`` (the stages), ``cascade`` (generation; defaults if absent), ``policy``
(defaults: DP at λ = 1 if absent), ``predictor`` (default: the prior). ``--lam`` / ``--policy`` override the
policy. With ``--check`` the final stage also generates alone and the command reports how many samples that
ended at the final stage match it token for token (λ = ∞: all of them).

    asd cascade --config configs/testbed.yaml --n 32 --lam inf --check
"""

from __future__ import annotations

import argparse
import time

MAX_PROMPTS = 1_000_000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cascade",
        help="run the cascade on generated testbed prompts; print a summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML with a hierarchy section, e.g. configs/testbed.yaml")
    p.add_argument("--n", type=int, default=32, help="prompts (spread over the testbed tasks and levels)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated prompts")
    p.add_argument(
        "--policy", default=None, help="policy name (dp, single, fixed_depth, threshold, speculative, random, oracle)"
    )
    p.add_argument("--lam", type=float, default=None, help="λ of the DP (inf: always end at the final stage)")
    p.add_argument("--check", action="store_true", help="compare with the final stage's own output")
    p.set_defaults(func=main)


def main(args) -> int:
    import dataclasses

    import numpy as np

    from asd.cascade import Cascade, CascadeConfig
    from asd.config_check import validate
    from asd.core.dp import PolicyConfig
    from asd.models.base import GenerationParams
    from asd.models.loading import load_engines, load_tokenizer
    from asd.run_config import load_config
    from asd.testbed import tasks
    from asd.testbed import tokenizer as tk

    if not 1 <= args.n <= MAX_PROMPTS:
        raise ValueError(f"--n must be in 1..{MAX_PROMPTS:,}, got {args.n}")
    sections = load_config(args.config, validate=False)  # validated below, with the command line's policy
    ccfg = sections.get("cascade", CascadeConfig())
    pol = sections.get("policy", PolicyConfig())
    over = {k: v for k, v in (("name", args.policy), ("lam", args.lam)) if v is not None}
    try:
        pol = sections["policy"] = dataclasses.replace(pol, **over)
    except ValueError as e:
        raise ValueError(f"--policy/--lam: {e}") from None
    if pol.name == "oracle":
        raise ValueError("policy 'oracle' needs every prompt's outcome at every stage; asd cascade has none")
    validate(sections, source=args.config, require={"hierarchy": "asd cascade runs the stages it lists"})
    hier = sections["hierarchy"]
    from asd.predictor.checkpoint import predictor_for

    predictor = predictor_for(sections)  # section `predictor` (default: the prior), checked before loading
    engines = load_engines(hier)
    tok = load_tokenizer(hier)
    cells = [(t, lv) for t in tasks.TASKS for lv in tasks.LEVELS]
    per = -(-args.n // len(cells))
    exs = [e for t, lv in cells for e in tasks.generate(t, per, lv, args.seed)][: args.n]
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in exs]
    casc = Cascade(engines, ccfg, pol, predictor=predictor, tokenizer=tok, eos_token_ids=(tk.EOS_ID,))
    t0 = time.perf_counter()
    rec = casc.run(prompts, progress=True)
    secs = time.perf_counter() - t0
    K = len(engines)
    hist = np.bincount(rec["final_stage"], minlength=K)
    print(f"policy {pol.name} λ={pol.lam}: {len(prompts)} prompts in {secs:.2f} s")
    print("final stage histogram: " + ", ".join(f"{s.name}={h}" for s, h in zip(hier.stages, hist)))
    ran = rec["ran"].sum(0)
    acc = rec["accepted_len"].sum(0)
    print("stage runs: " + ", ".join(f"{s.name}={r}" for s, r in zip(hier.stages, ran)))
    print("accepted tokens per stage: " + ", ".join(f"{s.name}={a}" for s, a in zip(hier.stages, acc)))
    if args.check:
        P = GenerationParams(ccfg.max_new_tokens, eos_token_ids=(tk.EOS_ID,))
        t0 = time.perf_counter()
        own = engines[-1].generate(prompts, P)
        alone = time.perf_counter() - t0
        at_final = rec["final_stage"] == K - 1
        same = sum(rec["tokens"][i].tolist() == own.tokens[i].tolist() for i in np.flatnonzero(at_final))
        print(
            f"final stage alone: {alone:.2f} s; samples ending at the final stage equal to its own output: "
            f"{same}/{int(at_final.sum())}"
        )
    return 0
