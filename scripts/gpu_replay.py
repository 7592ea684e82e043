"""One-GPU replay of a run's recorded call sequence on Qwen2.5 7B/14B/32B random-weight stages (asd.analysis.replay).

Step 1, here (CPU; reads the run folder):
    PYTHONPATH=. python scripts/gpu_replay.py extract RUN --out results/gpu/replay_calls.json \
        [--cells '*--dp-lam1--seed0' ...] [--seeds 0] [--max-batches 4]
Step 2, on the GPU machine (one H200; torch + transformers, no h5py or run folder needed):
    OUT=/some/dir PYTHONPATH=. python scripts/gpu_replay.py replay results/gpu/replay_calls.json \
        --table configs/costs/h200-qwen2.5-tp4.json --out $OUT/replay_h200.json
Step 3, here: copy the record into RUN/replay/ (asd report RUN shows it) and results/gpu/.
Optional, here: price the same measured calls with another table, e.g. one measured on the replaying machine:
    python scripts/gpu_replay.py table PROFILE_JSON --final-from configs/costs/h200-qwen2.5-tp4.json --out T.json
    python scripts/gpu_replay.py reprice CALLS_JSON REPLAY_JSON --table T.json --out REPRICED_JSON

``replay --tiny`` runs the same code on CPU with three tiny Qwen2 shapes (the tests do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TINY = [
    {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "max_position_embeddings": 4096,
    },
    {
        "hidden_size": 96,
        "intermediate_size": 192,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "max_position_embeddings": 4096,
    },
    {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "max_position_embeddings": 4096,
    },
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="the call list of chosen cells of a run folder (CPU)")
    e.add_argument("run")
    e.add_argument("--out", required=True)
    e.add_argument(
        "--cells", nargs="+", default=None, help="glob patterns of cell ids (default: dp λ=1, lossless, single s0-s2)"
    )
    e.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds (default: the first)")
    e.add_argument("--max-batches", type=int, default=4, help="first N batches of each cell (default 4; 0 = all)")
    r = sub.add_parser("replay", help="replay a call list on the stages, timed, against the cost table")
    r.add_argument("calls")
    r.add_argument("--table", default="configs/costs/h200-qwen2.5-tp4.json")
    r.add_argument("--stages", default=",".join(["Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-32B"]))
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="bfloat16")
    r.add_argument("--no-compile", action="store_true", help="no torch.compile'd element-wise blocks")
    r.add_argument("--repeats", type=int, default=3, help="timed runs per call; the median is kept (default 3)")
    r.add_argument("--tiny", action="store_true", help="three tiny Qwen2 shapes on CPU (float32): a smoke test")
    r.add_argument("--out", required=True)
    p = sub.add_parser("reprice", help="price a replay record's measured calls with another cost table (CPU)")
    p.add_argument("calls")
    p.add_argument("record")
    p.add_argument("--table", required=True)
    p.add_argument("--out", required=True)
    t = sub.add_parser("table", help="a cost table: the stages of a profile, the final stage from another table")
    t.add_argument("profile", help="a profile JSON (scripts/gpu_decode.py --out)")
    t.add_argument("--final-from", required=True, help="the table whose last stage completes the hierarchy")
    t.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from asd.analysis import replay as R

    if a.cmd == "extract":
        from asd.analysis.run import load_run

        run = load_run(a.run)
        seeds = a.seeds if a.seeds is not None else [run.seeds[0]]
        cells = R.select_cells(run, a.cells or list(R.DEFAULT_CELLS), seeds)
        doc = R.extract_calls(run, cells, a.max_batches or None)
        Path(a.out).write_text(json.dumps(doc, indent=None))
        n = sum(len(c["calls"]["batch"]) for c in doc["cells"])
        print(f"{a.out}: {len(cells)} cells, {n} calls")
        return 0
    from asd.costs_io import load_cost_model, save_cost_model

    if a.cmd == "table":
        from dataclasses import replace

        from asd.profiler import fit_cost_model, load_profile

        fitted = fit_cost_model(load_profile(a.profile))
        final = load_cost_model(a.final_from)
        model = replace(fitted, stages=(*fitted.stages, final.stages[-1]), batch_size=final.batch_size)
        save_cost_model(model, a.out, final_stage_from=str(a.final_from), stages_from=str(a.profile))
        print(f"{a.out}: stages {[s.name for s in model.stages]} (the last from {a.final_from})")
        return 0
    doc = json.loads(Path(a.calls).read_text())
    table = load_cost_model(a.table)
    if a.cmd == "reprice":
        rec = R.reprice(doc, json.loads(Path(a.record).read_text()), table)
        Path(a.out).write_text(json.dumps(rec, indent=1))
        _print(rec)
        return 0
    if a.tiny:
        stages, device, dtype = TINY, "cpu", "float32"
    else:
        stages, device, dtype = a.stages.split(","), a.device, a.dtype
    rec = R.replay(
        doc,
        stages,
        table,
        device=device,
        dtype=dtype,
        compile_blocks=False if a.no_compile else None,
        repeats=a.repeats,
    )
    Path(a.out).write_text(json.dumps(rec, indent=1))
    _print(rec)
    return 0


def _print(rec: dict) -> None:
    s = rec["summary"]
    print(
        f"{rec['device']}: {s['replayed_calls']} calls replayed; measured {s['measured_s']:.3f} s vs estimated "
        f"{s['estimated_s']:.3f} s (ratio {s['measured_over_estimated']:.3f}; within 15%: {s['within_15_percent']})"
    )
    for b in rec["by_stage"]:
        if b.get("replayed_calls"):
            print(
                f"  stage {b['stage']} {b['model']}: {b['replayed_calls']} calls, measured/estimated total "
                f"{b['ratio_total']:.3f}, median per call {b['ratio_median']:.3f} "
                f"[{b['ratio_q1']:.3f}, {b['ratio_q3']:.3f}]; pass {b.get('pass_ratio_total') or float('nan'):.3f}, "
                f"decode steps {b.get('decode_ratio_total') or float('nan'):.3f}"
            )
        else:
            print(
                f"  stage {b['stage']} {b['model']}: not replayed ({b['skipped_calls']} calls, estimated "
                f"{b['skipped_estimated_s']:.3f} s)"
            )


if __name__ == "__main__":
    sys.exit(main())
