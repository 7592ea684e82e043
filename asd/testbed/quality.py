"""Quality of the testbed hierarchy: greedy outputs of every stage on held-out prompts, and the tables.

``evaluate(cfg, hierarchy)`` generates greedily with every stage on the same
``n_per_cell`` prompts per (task, level) cell and returns a JSON-able record:
accuracy overall / per level / per task per stage, the agreement table
P(stage k's output == final stage's output) per stage and level, the same numbers for
the reproducibility sample (first ``sample_per_cell`` of every cell), and provenance.
``calibrate`` does the same per knowledge-base frequency bucket (used once, after
training, to map buckets to levels: docs/testbed.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asd.testbed import tasks as T
from asd.testbed import tokenizer as tk
from asd.testbed.scoring import score

SCHEMA_VERSION = 1


def load_model(folder: str | Path, dtype: str = "float32", device: str = "cpu"):
    """``Qwen2ForCausalLM.from_pretrained(folder)`` offline, in ``dtype`` on ``device``, eval mode."""
    import torch
    from transformers import Qwen2ForCausalLM

    m: Any = Qwen2ForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, dtype), local_files_only=True)
    return m.to(device).eval()


def generate_outputs(
    model,
    prompts: Sequence[str],
    batch_size: int = 64,
    max_new_tokens: int = 32,
    device: str = "cpu",
    desc: str = "generate",
) -> list[str]:
    """Greedy completion text (up to ``<|im_end|>``, specials removed) of each user prompt."""
    import torch
    from tqdm import tqdm

    enc = [tk.encode(tk.chat_prompt(p)) for p in prompts]
    order = np.argsort([len(e) for e in enc], kind="stable")
    out: list[str] = [""] * len(prompts)
    inv = {v: k for k, v in tk.vocab().items()}
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=None, mininterval=5):
        idx = order[s : s + batch_size]
        L = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), L), tk.PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(idx), L), dtype=torch.long)
        for r, i in enumerate(idx):  # left padding
            ids[r, L - len(enc[i]) :] = torch.tensor(enc[i])
            mask[r, L - len(enc[i]) :] = 1
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=tk.EOS_ID,
                pad_token_id=tk.PAD_ID,
            )
        for r, i in enumerate(idx):
            toks = gen[r, L:].tolist()
            if tk.EOS_ID in toks:
                toks = toks[: toks.index(tk.EOS_ID)]
            out[i] = "".join(inv[t] for t in toks if t >= len(tk.SPECIALS))
    return out


def _pct(x) -> float:
    return round(100.0 * float(np.mean(x)), 2) if len(x) else float("nan")


def tables(
    examples: Sequence[T.Example], correct: np.ndarray, same: np.ndarray, stages: list[str], key=lambda e: e.level
) -> dict:
    """Accuracy (%) overall / per key / per task, and agreement with the final stage (%) per key.

    correct: [K, N] bool, stage k's output scored right; same: [K, N] bool, equal to the final stage's.
    """
    groups: dict = defaultdict(list)
    by_task: dict = defaultdict(list)
    for i, e in enumerate(examples):
        groups[key(e)].append(i)
        by_task[e.task].append(i)
    keys = sorted(groups)
    return {
        "stages": stages,
        "n": len(examples),
        "overall": {s: _pct(correct[k]) for k, s in enumerate(stages)},
        "per_level": {str(g): {s: _pct(correct[k, groups[g]]) for k, s in enumerate(stages)} for g in keys},
        "per_task": {t: {s: _pct(correct[k, ix]) for k, s in enumerate(stages)} for t, ix in by_task.items()},
        "agreement_with_final": {str(g): {s: _pct(same[k, groups[g]]) for k, s in enumerate(stages)} for g in keys},
        "agreement_overall": {s: _pct(same[k]) for k, s in enumerate(stages)},
    }


def run_stages(
    folders: dict[str, Path],
    examples: Sequence[T.Example],
    batch_size: int,
    max_new_tokens: int,
    device: str,
    dtype: str = "float32",
) -> tuple[dict[str, list[str]], np.ndarray, np.ndarray, dict]:
    """Outputs per stage, correct [K, N], same-as-final [K, N], seconds per stage."""
    outputs, secs = {}, {}
    for name, folder in folders.items():
        t0 = time.time()
        model = load_model(folder, dtype, device)
        outputs[name] = generate_outputs(
            model, [e.prompt for e in examples], batch_size, max_new_tokens, device, desc=f"generate {name}"
        )
        secs[name] = round(time.time() - t0, 1)
        del model
    names = list(folders)
    correct = np.array([score(examples, outputs[s]) for s in names], dtype=bool)
    final = outputs[names[-1]]
    same = np.array([[a == b for a, b in zip(outputs[s], final)] for s in names], dtype=bool)
    return outputs, correct, same, secs


def evaluate(config_path: str, device: str | None = None, out: str | None = None) -> dict:
    """The quality record of the hierarchy in ``config_path`` (sections ``hierarchy`` and ``testbed``)."""
    from asd.config_loader import to_dict
    from asd.provenance import provenance
    from asd.run_config import load_section
    from asd.testbed.weights import resolve_model

    hier = load_section(config_path, "hierarchy")
    cfg = load_section(config_path, "testbed")
    dev = device or cfg.device
    folders = {s.name: Path(resolve_model(s.model)) for s in hier.stages}
    dtype = hier.stages[0].dtype
    examples = T.generate_mix(cfg.n_per_cell, cfg.seed)
    outputs, correct, same, secs = run_stages(folders, examples, cfg.batch_size, cfg.max_new_tokens, dev, dtype)
    names = list(folders)
    sample = [i for i, e in enumerate(examples) if int(e.id.rsplit("-", 1)[1]) < cfg.sample_per_cell]
    rec = provenance(
        config={"testbed": to_dict(cfg), "hierarchy": to_dict(hier)},
        schema_version=SCHEMA_VERSION,
        device=dev,
        generate_seconds=secs,
        level_buckets={str(k): list(v) for k, v in T.LEVEL_BUCKETS.items()},
    )
    rec["full"] = tables(examples, correct, same, names)
    rec["sample"] = tables([examples[i] for i in sample], correct[:, sample], same[:, sample], names)
    rec["outputs_sha256"] = {s: _digest(outputs[s]) for s in names}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def calibrate(weights_dir: Path, n: int, seed: int, device: str, batch_size: int, max_new_tokens: int = 32) -> dict:
    """Accuracy per stage and knowledge-base bucket (level 1 reported as bucket -1)."""
    from asd.testbed import kb

    folders = {p.name: p for p in sorted(Path(weights_dir).iterdir()) if (p / "config.json").is_file()}
    examples = [e for t in T.TASKS for e in T.generate(t, n, 1, seed)]
    for b in range(kb.NUM_BUCKETS):
        examples += [e for t in T.TASKS for e in T.generate(t, n, 2, seed, level_buckets={2: (b,)})]
    _, correct, same, secs = run_stages(folders, examples, batch_size, max_new_tokens, device)
    rec = tables(examples, correct, same, list(folders), key=lambda e: e.meta["bucket"])
    rec["per_task_bucket"] = {
        t: tables(
            [e for e in examples if e.task == t],
            correct[:, [i for i, e in enumerate(examples) if e.task == t]],
            same[:, [i for i, e in enumerate(examples) if e.task == t]],
            list(folders),
            key=lambda e: e.meta["bucket"],
        )["per_level"]
        for t in T.TASKS
    }
    rec["seconds"] = secs
    return rec


def _digest(texts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="testbed quality / calibration")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    rec = calibrate(Path(a.weights), a.n, 12345, a.device, a.batch_size)
    Path(a.out).write_text(json.dumps(rec, indent=1) + "\n")
    for g, row in rec["per_level"].items():
        print(g, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
