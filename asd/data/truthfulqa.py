"""TruthfulQA (Lin et al., 2022): 817 questions that some humans answer falsely.

Formats read:

- ``csv``: the release's ``TruthfulQA.csv`` with columns Type, Category, Question,
  Best Answer, Correct Answers, Incorrect Answers, Source (answers separated by
  ``"; "``; the 2025 revision's extra "Best Incorrect Answer" column is accepted);
- ``mc``: the multiple-choice ``mc_task.json``: a JSON list of ``{"question",
  "mc1_targets": {answer: 0|1}, "mc2_targets": {answer: 0|1}}`` (the Hugging Face
  ``truthful_qa/multiple_choice`` form ``{"choices": [...], "labels": [...]}`` too).

MC1: one true answer among the choices; MC2: several true and false answers. From
the CSV alone, ``mc_from_csv`` builds MC1 (best answer vs. the incorrect answers)
and MC2 (correct vs. incorrect answers), as the original paper describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from asd.data.base import DataError, Dataset, check_size, content_sha256, read_csv, read_text

PUBLISHED_SIZE = 817
CSV_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")


@dataclass(frozen=True)
class TruthfulQAItem:
    id: str  # "truthfulqa/<row>"
    question: str
    category: str | None = None
    best_answer: str | None = None
    correct_answers: tuple[str, ...] = ()
    incorrect_answers: tuple[str, ...] = ()
    mc1_choices: tuple[str, ...] = ()  # exactly one label is 1
    mc1_labels: tuple[int, ...] = ()
    mc2_choices: tuple[str, ...] = ()  # labels 1 (true) and 0 (false)
    mc2_labels: tuple[int, ...] = ()


def _split(s: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in s.split(";") if a.strip())


def load_csv(path: str | Path, subset: str | None = None) -> Dataset:
    rows = cast("list[dict[str, Any]]", read_csv(path, header=CSV_COLUMNS, optional=("Best Incorrect Answer",)))
    items = []
    for n, r in enumerate(rows):
        if not r["Question"].strip() or not r["Best Answer"].strip():
            raise DataError(f"{path}:{r['__line__']}: empty Question or Best Answer")
        items.append(
            mc_from_csv(
                TruthfulQAItem(
                    f"truthfulqa/{n}",
                    r["Question"],
                    r["Category"] or None,
                    r["Best Answer"].strip(),
                    _split(r["Correct Answers"]),
                    _split(r["Incorrect Answers"]),
                )
            )
        )
    check_size("TruthfulQA", path, len(items), PUBLISHED_SIZE, subset)
    return Dataset("truthfulqa", tuple(items), str(path), content_sha256(items), PUBLISHED_SIZE, subset)


def _close(answer: str) -> str:
    """The release's own MC preparation ends every answer with a period."""
    return answer if answer.endswith(".") else answer + "."


def mc_from_csv(item: TruthfulQAItem) -> TruthfulQAItem:
    """MC1 = best answer + incorrect answers; MC2 = correct answers (best included) + incorrect answers.

    As the release's utilities do: answers split on ``;``, stripped, closed with a period.
    """
    assert item.best_answer is not None, "MC sets are built from a CSV row, which always has a best answer"
    correct = tuple(dict.fromkeys(_close(a) for a in (item.best_answer, *item.correct_answers)))
    inc = tuple(dict.fromkeys(_close(a) for a in item.incorrect_answers if _close(a) not in correct))
    return replace(
        item,
        mc1_choices=(_close(item.best_answer), *inc),
        mc1_labels=(1,) + (0,) * len(inc),
        mc2_choices=correct + inc,
        mc2_labels=(1,) * len(correct) + (0,) * len(inc),
    )


def _targets(where: str, t) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if isinstance(t, dict) and set(t) == {"choices", "labels"}:
        choices, labels = t["choices"], t["labels"]
    elif isinstance(t, dict):
        choices, labels = list(t), list(t.values())
    else:
        raise DataError(f"{where}: targets must be a mapping, got {type(t).__name__}")
    if len(choices) != len(labels) or not choices or any(v not in (0, 1) for v in labels) or 1 not in labels:
        raise DataError(f"{where}: targets need choices with labels 0/1 and at least one 1")
    return tuple(map(str, choices)), tuple(int(v) for v in labels)


def load_mc(path: str | Path, subset: str | None = None) -> Dataset:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of questions, got {type(data).__name__}")
    items = []
    for n, r in enumerate(data):
        where = f"{path}: item {n}"
        if not isinstance(r, dict) or not {"question", "mc1_targets", "mc2_targets"} <= set(r):
            raise DataError(f"{where}: needs 'question', 'mc1_targets', 'mc2_targets'")
        c1, l1 = _targets(f"{where} mc1_targets", r["mc1_targets"])
        c2, l2 = _targets(f"{where} mc2_targets", r["mc2_targets"])
        if sum(l1) != 1:
            raise DataError(f"{where} mc1_targets: exactly one answer must be labelled 1, got {sum(l1)}")
        items.append(
            TruthfulQAItem(
                f"truthfulqa/{n}", r["question"], mc1_choices=c1, mc1_labels=l1, mc2_choices=c2, mc2_labels=l2
            )
        )
    check_size("TruthfulQA", path, len(items), PUBLISHED_SIZE, subset)
    return Dataset("truthfulqa", tuple(items), str(path), content_sha256(items), PUBLISHED_SIZE, subset)
