"""GSM8K (Cobbe et al., 2021) test split: 1,319 grade-school word problems.

The release's ``test.jsonl``: ``question`` and ``answer``, the worked solution (with
``<<a*b=c>>`` calculator annotations) ending in a line ``#### N``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asd.data.base import DataError, Dataset, check_size, content_sha256, read_jsonl, require

PUBLISHED_SIZE = 1319
_FINAL = re.compile(r"####\s*(.+?)\s*$")


@dataclass(frozen=True)
class GSM8KItem:
    id: str  # "gsm8k/<row>"
    question: str
    solution: str  # the full reference answer text, ending in "#### N"
    answer: str  # N as written after "####", commas removed, e.g. "1800"


def load(path: str | Path, subset: str | None = None) -> Dataset:
    rows = read_jsonl(path)
    items = []
    for n, r in enumerate(rows):
        require(path, r, {"question": str, "answer": str})
        m = _FINAL.search(r["answer"].strip().splitlines()[-1] if r["answer"].strip() else "")
        if not m:
            raise DataError(f"{path}:{r['__line__']}: answer does not end in a line '#### N'")
        items.append(GSM8KItem(f"gsm8k/{n}", r["question"], r["answer"], m.group(1).replace(",", "")))
    check_size("GSM8K", path, len(items), PUBLISHED_SIZE, subset)
    return Dataset("gsm8k", tuple(items), str(path), content_sha256(items), PUBLISHED_SIZE, subset)
