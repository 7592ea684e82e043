"""A cell's prompts and how its outputs are scored (docs/evaluation.md#prompts).

Sample id i of seed s (the same in every cell of that dataset and seed):

- **testbed** (``source: testbed``): the held-out testbed prompt of the dataset's task at level
  ``levels[i % len(levels)]`` (``evaluation.levels``, all five by default: ``LEVELS[i % 5]``), drawn by
  ``asd.testbed.tasks.generate(task, 1, level, seed = s·1,000,003 + i)``, in the chat template
  (``asd.testbed.tokenizer``); scored by the testbed's task metrics (1/0).
- **benchmarks** (``source: benchmarks``): item ``perm[i]`` of the prepared copy (``asd data prepare``,
  ``asd.data.catalog.load``), ``perm`` the seeded permutation ``default_rng([s, crc32(dataset)])`` of the
  eligible items (all, or those ``heldout_filter`` keeps); the prompt of ``asd.data.prompts.build_prompt``
  (the config's ``data`` section: few-shot, chat template) tokenised by the hierarchy's tokenizer; scored by
  ``asd.eval.scoring.score_outputs`` (MMLU letter, GSM8K flexible-extract, HumanEval in the sandbox) and, for
  TruthfulQA's generations, ``asd.eval.truthfulqa_gen`` (lm-eval's rouge1_acc; no judge model).

A prompt that does not fit the hierarchy's context with the generation budget is an error naming the
sample, unless ``truncate_prompts`` (then its last tokens are kept, as lm-eval truncates on the left).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DATA: dict[tuple, Any] = {}  # (dataset, data_dir) → (items, pool), per process


@dataclass
class CellPrompts:
    """Prompts of a batch: token ids, the items behind them, and the scorer of their outputs."""

    ids: list[list[int]]  # B prompts (token ids)
    items: list  # B testbed Examples or benchmark items
    score: Callable[[Sequence[str]], np.ndarray]  # B output texts → [B] float32 scores


def testbed_level(i: int, levels: Sequence[int] | None = None) -> int:
    """The difficulty level of evaluation sample id ``i`` of a testbed dataset: levels[i % len(levels)]
    (``levels``: the evaluation's, default all five, LEVELS[i % 5])."""
    from asd.testbed import tasks

    lv = tuple(levels) if levels is not None else tasks.LEVELS
    return lv[i % len(lv)]


def draw_testbed(
    task: str, seed: int, sample_ids: Sequence[int] | np.ndarray, levels: Sequence[int] | None = None
) -> list:
    """The testbed Example of each sample id (level ``testbed_level(i, levels)``, drawn with seed s·1,000,003 + i)."""
    from asd.testbed import tasks

    return [
        tasks.generate(task, 1, testbed_level(i, levels), seed=seed * 1_000_003 + i)[0]
        for i in np.asarray(sample_ids, dtype=np.int64).tolist()
    ]


def benchmark_items(task: str, data_cfg, heldout_filter: str | None = None) -> tuple[list, Any]:
    """(eligible items of the prepared copy, the MMLU few-shot pool or None), cached per process."""
    from asd.data import catalog
    from asd.data.prompts import fewshot_index

    key = (task, data_cfg.data_dir, heldout_filter)
    if key not in _DATA:
        ds = catalog.load(task, data_cfg.data_dir)
        items = list(ds.items)
        if heldout_filter:
            from asd.registry import import_spec

            keep = import_spec(heldout_filter, "heldout_filter")
            items = [it for it in items if keep(task, it)]
        pool = None
        if task == "mmlu" and data_cfg.mmlu.num_fewshot > 0:
            if data_cfg.mmlu.fewshot_source == "dev":
                from asd.data.mmlu import load_dev

                pool = fewshot_index(load_dev(Path(data_cfg.data_dir) / "mmlu"))
            else:
                pool = fewshot_index(ds.items)
        _DATA[key] = (items, pool)
    return _DATA[key]


def item_id(item) -> str:
    """A benchmark item's name for messages (``id``, or HumanEval's ``task_id``)."""
    return str(getattr(item, "id", None) or getattr(item, "task_id", None) or item)


def draw(n_items: int, dataset: str, seed: int, count: int) -> np.ndarray:
    """[count] int64 item indices of seed ``seed``: the first ``count`` of a seeded permutation."""
    if count > n_items:
        raise ValueError(f"{dataset}: {count} samples asked, the prepared copy has {n_items} eligible items")
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode())])
    return rng.permutation(n_items)[:count].astype(np.int64)


def eos_ids(tokenizer, testbed: bool) -> tuple[int, ...]:
    """End-of-response token ids: the testbed's EOS, else the tokenizer's EOS and ``<|im_end|>`` if it has one."""
    if testbed:
        from asd.testbed import tokenizer as tk

        return (tk.EOS_ID,)
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return tuple(sorted(ids))


def fit(ids: list[int], room: int, truncate: bool, what: str) -> list[int]:
    """``ids`` if at most ``room`` tokens; else its last ``room`` tokens (``truncate``) or a ValueError."""
    if len(ids) <= room:
        return ids
    if not truncate:
        raise ValueError(
            f"{what}: the prompt has {len(ids)} tokens, the context leaves {room} beside the generation budget; "
            "shorten the few-shot prompt or set evaluation.truncate_prompts"
        )
    return ids[len(ids) - room :]


def cell_prompts(
    cell, sample_ids: Sequence[int] | np.ndarray, data_cfg, sandbox_cfg, tokenizer, room: int
) -> CellPrompts:
    """The prompts of ``sample_ids`` for ``cell`` (a CellConfig); ``room``: prompt tokens that fit the context."""
    if cell.source == "testbed":
        from asd.testbed import scoring
        from asd.testbed import tokenizer as tk

        exs = draw_testbed(cell.task, cell.seed, sample_ids, cell.levels)
        ids = [
            fit(tk.encode(tk.chat_prompt(e.prompt)), room, cell.truncate_prompts, f"{cell.dataset} sample {i}")
            for e, i in zip(exs, sample_ids)
        ]
        return CellPrompts(ids, exs, lambda texts: np.asarray(scoring.score(exs, list(texts)), np.float32))
    from asd.data.prompts import build_prompt

    items_all, pool = benchmark_items(cell.task, data_cfg, cell.heldout_filter)
    idx = draw(len(items_all), cell.dataset, cell.seed, int(max(sample_ids)) + 1)
    items = [items_all[int(idx[int(i)])] for i in sample_ids]
    ids = []
    for it in items:
        text = build_prompt(cell.task, it, data_cfg, pool=pool, tokenizer=tokenizer).text
        ids.append(fit(tokenizer.encode(text, add_special_tokens=False), room, cell.truncate_prompts, item_id(it)))
    return CellPrompts(ids, items, lambda texts: score_benchmark(cell.task, items, texts, sandbox_cfg))


def score_benchmark(task: str, items: Sequence, texts: Sequence[str], sandbox_cfg=None) -> np.ndarray:
    """[B] float32 scores of generated texts (see the module docstring)."""
    if task == "truthfulqa":
        from asd.eval import truthfulqa_gen

        return np.asarray(truthfulqa_gen.score(items, texts), np.float32)
    from asd.eval.scoring import score_outputs

    return score_outputs(task, items, list(texts), sandbox=sandbox_cfg)
