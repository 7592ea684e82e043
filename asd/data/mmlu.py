"""MMLU (Hendrycks et al., 2021) test split: 14,042 four-choice questions in 57 subjects.

Formats read:

- ``csv``: the original release, ``<dir>/test/<subject>_test.csv`` (or the CSVs directly
  in ``<dir>``), no header, six fields: question, A, B, C, D, answer letter;
- ``parquet``: the Hugging Face ``cais/mmlu`` layout (columns ``question``, ``subject``,
  ``choices`` (4 strings), ``answer`` (0-3)); needs pyarrow, which is optional;
- ``evals``: OpenAI evals' sandbagging samples (``{"question": "...\\nA. ..\\nD. ..\\nAnswer:",
  "answer": "C", "topic"?: subject}``): 1,331 questions, always a labelled subset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asd.data.base import DataError, Dataset, check_size, content_sha256, read_csv, read_jsonl, require

PUBLISHED_SIZE = 14042
N_SUBJECTS = 57
LETTERS = "ABCD"


@dataclass(frozen=True)
class MMLUItem:
    id: str  # "<subject>/<row>" or "evals/<n>"
    subject: str | None  # e.g. "abstract_algebra"; None when the source does not say
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # index of the right choice, 0..3 (A..D)


def _csv_files(root: Path) -> list[Path]:
    sub = root / "test"
    files = sorted((sub if sub.is_dir() else root).glob("*_test.csv"))
    if not files:
        raise DataError(f"{root}: no MMLU CSVs (<subject>_test.csv) in {root} or {sub}")
    return files


def load_csv(root: str | Path, subset: str | None = None) -> Dataset:
    """The original release's per-subject CSVs under ``root``."""
    root = Path(root)
    files = _csv_files(root)
    items = []
    for f in files:
        subject = f.name[: -len("_test.csv")]
        for i, row in enumerate(read_csv(f, ncols=6)):
            *fields, line = row
            q, a, b, c, d, ans = fields
            if ans.strip() not in LETTERS:
                raise DataError(f"{f}:{line}: answer must be one of A, B, C, D, got {ans!r}")
            items.append(MMLUItem(f"{subject}/{i}", subject, q, (a, b, c, d), LETTERS.index(ans.strip())))
    check_size("MMLU", root, len(items), PUBLISHED_SIZE, subset)
    if subset is None and len(files) != N_SUBJECTS:
        raise DataError(f"{root}: {len(files)} subject files, the release has {N_SUBJECTS}")
    return Dataset("mmlu", tuple(items), str(root), content_sha256(items), PUBLISHED_SIZE, subset)


def load_parquet(path: str | Path, subset: str | None = None) -> Dataset:
    """A parquet file (or a directory of them, read in sorted order) in the ``cais/mmlu`` layout."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or use the CSV release") from e
    p = Path(path)
    files = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
    items = []
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:
            raise DataError(f"{f}: not a readable parquet file ({e})") from e
        need = {"question", "subject", "choices", "answer"}
        if not need <= set(table.column_names):
            raise DataError(f"{f}: wrong columns {table.column_names}; expected {sorted(need)}")
        for i, r in enumerate(table.to_pylist()):
            ch = r["choices"]
            if not isinstance(ch, list) or len(ch) != 4 or r["answer"] not in (0, 1, 2, 3):
                raise DataError(f"{f}: row {i}: need 4 choices and answer 0-3, got {ch!r}, {r['answer']!r}")
            items.append(MMLUItem(f"{r['subject']}/{i}", r["subject"], r["question"], tuple(ch), r["answer"]))
    check_size("MMLU", p, len(items), PUBLISHED_SIZE, subset)
    return Dataset("mmlu", tuple(items), str(p), content_sha256(items), PUBLISHED_SIZE, subset)


_OPTION = re.compile(r"\n\s*([ABCD])\.\s")


def split_question(text: str, where: str = "") -> tuple[str, tuple[str, str, str, str]]:
    """``"Q\\nA. a\\nB. b\\nC. c\\nD. d\\nAnswer:"`` → ``("Q", ("a", "b", "c", "d"))``."""
    body = text.rstrip()
    if body.endswith("Answer:"):
        body = body[: -len("Answer:")].rstrip()
    marks = list(_OPTION.finditer(body))
    # the last A., B., C., D. markers in order (a question may itself contain "A." lines)
    pos = {}
    for m in marks:
        pos[m.group(1)] = m
    if list(pos) != list(LETTERS) and sorted(pos) != list(LETTERS):
        raise DataError(f"{where}: cannot find options A-D in the question text")
    order = [pos[k] for k in LETTERS]
    if any(order[i].start() >= order[i + 1].start() for i in range(3)):
        raise DataError(f"{where}: options A-D are out of order in the question text")
    q = body[: order[0].start()].strip()
    ch = tuple(body[order[i].end() : (order[i + 1].start() if i < 3 else len(body))].strip() for i in range(4))
    return q, ch  # type: ignore[return-value]


def load_evals(path: str | Path, subset: str | None = None) -> Dataset:
    """OpenAI evals' sandbagging-style JSON lines (prepared by ``asd data prepare``)."""
    rows = read_jsonl(path)
    items = []
    for n, r in enumerate(rows):
        require(path, r, {"question": str, "answer": str})
        where = f"{path}:{r['__line__']}"
        if r["answer"] not in LETTERS:
            raise DataError(f"{where}: answer must be one of A, B, C, D, got {r['answer']!r}")
        q, ch = split_question(r["question"], where)
        subject = r.get("topic") or None
        subject = subject.replace(" ", "_") if subject else None
        items.append(MMLUItem(f"evals/{n}", subject, q, ch, LETTERS.index(r["answer"])))
    if subset is None:
        subset = f"{len(items):,} of {PUBLISHED_SIZE:,} MMLU test questions (OpenAI evals sandbagging samples)"
    check_size("MMLU", path, len(items), PUBLISHED_SIZE, subset)
    return Dataset("mmlu", tuple(items), str(path), content_sha256(items), PUBLISHED_SIZE, subset)


def load_release_split(root: str | Path, split: str) -> list[MMLUItem]:
    """A split of the release format (``<root>/<split>/<subject>_<split>.csv``, no header: question, four options,
    answer letter), subjects in name order; [] when the folder holds none. Items are ``<subject>/<split>/<i>``."""
    d = Path(root) / split
    items = []
    for f in sorted(d.glob(f"*_{split}.csv")) if d.is_dir() else []:
        subject = f.name[: -len(f"_{split}.csv")]
        for i, (*fields, line) in enumerate(read_csv(f, ncols=6)):
            q, a, b, c, dd, ans = fields
            if ans.strip() not in LETTERS:
                raise DataError(f"{f}:{line}: answer must be one of A, B, C, D, got {ans!r}")
            items.append(MMLUItem(f"{subject}/{split}/{i}", subject, q, (a, b, c, dd), LETTERS.index(ans.strip())))
    return items


def load_dev(root: str | Path) -> list[MMLUItem]:
    """The release's dev split (``<root>/dev/<subject>_dev.csv``, five per subject): few-shot exemplars."""
    d = Path(root) / "dev"
    if not any(d.glob("*_dev.csv")):
        raise DataError(f"{d}: no MMLU dev CSVs (<subject>_dev.csv); MMLU 5-shot needs them")
    return load_release_split(root, "dev")
