"""TruthfulQA MC1/MC2 of one model on the prepared copy (lm-eval's ``truthfulqa_mc1`` / ``truthfulqa_mc2``).

::

    python -m asd.eval.truthfulqa_mc --model testbed:s0 [--data-dir data] [--limit N] [--num-fewshot 6]
                                     [--device cpu] [--batch-size 64] [--out DIR]

Reads ``truthfulqa`` through ``asd.data.catalog.load`` (run ``asd data prepare truthfulqa --from
TruthfulQA.csv`` first), builds lm-eval's prompt (the paper's six-question QA primer, then
``"Q: {question}\\nA:"``; ``--num-fewshot`` keeps the first k primer questions, 0 = none), scores
every choice ``" " + answer`` through the model's ``Engine.score`` (``asd.models.hf.HFEngine``) and
writes ``DIR/truthfulqa_mc.json`` (per question MC1/MC2, means with 95% bootstrap intervals, config,
provenance) and ``DIR/truthfulqa_mc.png``. ``--limit N`` scores the first N questions (a labelled
subset). A prompt longer than the model's context is refused before anything runs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1


@dataclass
class MCRunConfig:
    model: str = "testbed:s0"  # a local folder, hub id or testbed:<stage>
    data_dir: str = "data"
    limit: int | None = None  # first N questions; None = all 817
    num_fewshot: int = 6  # QA-primer questions before each question (lm-eval: all 6)
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64  # (context, choice) pairs per forward

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not 0 <= self.num_fewshot <= 6:
            raise ValueError(f"num_fewshot must be in 0..6 (the QA primer has 6 questions), got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def mean_ci(x: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of x: [N] float and its percentile-bootstrap interval (seeded; stays inside the range of x)."""
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return m, float(lo), float(hi)


def _tokenizer(model: str):
    if model.startswith("testbed:"):
        from asd.testbed.tokenizer import load_tokenizer

        return load_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def run(cfg: MCRunConfig, progress: bool = True) -> dict:
    """Score the questions; returns the result record (see module docstring)."""
    from asd.data import catalog
    from asd.data.config import DataConfig, TaskPromptConfig
    from asd.data.prompts import build_prompt
    from asd.eval.loglik import encode_pair, engine_score_fn
    from asd.eval.scoring import mc_scores
    from asd.models.hf import HFEngine
    from asd.provenance import provenance

    ds = catalog.load("truthfulqa", cfg.data_dir)
    items = ds.items[: cfg.limit] if cfg.limit else ds.items
    tcfg = TaskPromptConfig(cfg.num_fewshot, "qa_primer", 64, chat_template=False)
    dcfg = DataConfig(truthfulqa=tcfg if cfg.num_fewshot else TaskPromptConfig(0, "none", 64, chat_template=False))
    contexts = [build_prompt("truthfulqa", it, dcfg).text for it in items]
    tok = _tokenizer(cfg.model)
    engine = HFEngine(cfg.model, dtype=cfg.dtype, device=cfg.device)
    longest = max(
        len(c) + len(x)
        for ctx, it in zip(contexts, items)
        for c, x in (encode_pair(tok, ctx, " " + a) for a in it.mc1_choices + it.mc2_choices)
    )
    if longest > engine.max_context:
        raise ValueError(
            f"{cfg.model}: the longest prompt + choice is {longest} tokens, more than its {engine.max_context} "
            f"positions; use fewer primer questions (--num-fewshot, now {cfg.num_fewshot})"
        )
    t0 = time.perf_counter()
    s = mc_scores("truthfulqa", items, contexts, tok, engine_score_fn(engine), cfg.batch_size, progress=progress)
    secs = time.perf_counter() - t0
    n_choices = sum(len(it.mc1_choices) + len(it.mc2_choices) for it in items)
    summary = {k: dict(zip(("mean", "ci_low", "ci_high"), mean_ci(v))) for k, v in s.items()}
    return {
        "dataset": {"source": ds.source, "sha256": ds.sha256, "rows": len(ds), "scored": len(items)},
        "subset": None if len(items) == len(ds) else f"first {len(items)} of {len(ds)} questions",
        "prompt": f"lm-eval truthfulqa_mc: QA primer, first {cfg.num_fewshot} of 6 questions, then 'Q: ...\\nA:'",
        "summary": summary,
        "choices_scored": n_choices,
        "longest_tokens": longest,
        "seconds": secs,
        "items": [{"id": it.id, "mc1": float(a), "mc2": float(b)} for it, a, b in zip(items, s["mc1"], s["mc2"])],
        "provenance": provenance(config=asdict(cfg), schema_version=SCHEMA_VERSION),
    }


def plot(rec: dict, path: Path) -> None:
    """Means with intervals, and the per-question MC2 distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    keys = ["mc1", "mc2"]
    m = [rec["summary"][k]["mean"] for k in keys]
    err = [
        [mm - rec["summary"][k]["ci_low"] for mm, k in zip(m, keys)],
        [rec["summary"][k]["ci_high"] - mm for mm, k in zip(m, keys)],
    ]
    a.bar(["MC1", "MC2"], m, yerr=err, color=["tab:blue", "tab:orange"], capsize=4)
    a.set_ylim(0, 1)
    a.set_ylabel("mean over questions (95% interval)")
    model = rec["provenance"]["config"]["model"]
    a.set_title(f"TruthfulQA MC, {model}, n = {rec['dataset']['scored']}", fontsize=9)
    b.hist([x["mc2"] for x in rec["items"]], bins=20, range=(0, 1), color="tab:orange")
    b.set_xlabel("MC2 per question (probability mass on true answers)")
    b.set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m asd.eval.truthfulqa_mc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = MCRunConfig()
    p.add_argument("--model", default=d.model)
    p.add_argument("--data-dir", default=d.data_dir)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-fewshot", type=int, default=d.num_fewshot)
    p.add_argument("--device", default=d.device)
    p.add_argument("--dtype", default=d.dtype)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--out", default="runs/truthfulqa_mc")
    a = p.parse_args(argv)
    cfg = MCRunConfig(a.model, a.data_dir, a.limit, a.num_fewshot, a.device, a.dtype, a.batch_size)
    rec = run(cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "truthfulqa_mc.json").write_text(json.dumps(rec, indent=1) + "\n")
    plot(rec, out / "truthfulqa_mc.png")
    s = {k: "{mean:.3f} [{ci_low:.3f}, {ci_high:.3f}]".format(**v) for k, v in rec["summary"].items()}
    print(
        f"{cfg.model}: {rec['dataset']['scored']} of {rec['dataset']['rows']} questions, "
        f"{rec['choices_scored']:,} choices, {rec['seconds']:.0f} s; MC1 {s['mc1']}, MC2 {s['mc2']} "
        f"-> {out}/truthfulqa_mc.json"
    )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ValueError as e:  # bad input: one line, non-zero exit
        import sys

        print(f"truthfulqa_mc: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
