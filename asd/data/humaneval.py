"""HumanEval (Chen et al., 2021): 164 Python problems, ``HumanEval.jsonl.gz`` of the release.

Each line: ``task_id``, ``prompt`` (signature + docstring), ``entry_point``,
``canonical_solution`` (the body), ``test`` (a ``check(candidate)`` function).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asd.data.base import Dataset, check_size, content_sha256, read_jsonl, require

PUBLISHED_SIZE = 164
FIELDS: dict[str, type | tuple] = {
    "task_id": str,
    "prompt": str,
    "entry_point": str,
    "canonical_solution": str,
    "test": str,
}


@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str  # "HumanEval/0"
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str

    def program(self, completion: str) -> str:
        """The program the reference harness runs: prompt + completion + tests + ``check(entry_point)``."""
        return f"{self.prompt}{completion}\n{self.test}\ncheck({self.entry_point})\n"


def load(path: str | Path, subset: str | None = None) -> Dataset:
    rows = read_jsonl(path)
    for r in rows:
        require(path, r, FIELDS)
    items = tuple(HumanEvalProblem(**{k: r[k] for k in FIELDS}) for r in rows)
    check_size("HumanEval", path, len(items), PUBLISHED_SIZE, subset)
    return Dataset("humaneval", items, str(path), content_sha256(items), PUBLISHED_SIZE, subset)
