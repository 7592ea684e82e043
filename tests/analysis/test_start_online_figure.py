"""scripts/start_online_figure.py: dp frontiers of several runs from their analysis records, PNG + JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "results/experiments/testbed_difficulty"


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts/start_online_figure.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_points_are_the_records_rows(tmp_path):
    a, b = RUNS / "levels123/analysis.json", RUNS / "levels_all/analysis.json"
    p = _run(a, b, "--names", "easy", "all", "--out", tmp_path / "fig")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "fig.json").read_text())
    for run, path in enumerate((a, b)):
        rows = {r["label"]: r for r in json.loads(path.read_text())["groups"]["all"]["rows"]
                if not r["ablation"] and r["policy"] in ("dp", "single")}
        pts = {q["label"]: q for q in data["points"] if q["run"] == run}
        assert set(pts) == set(rows)
        for label, q in pts.items():
            r = rows[label]
            assert q["loss_points"] == pytest.approx(-100 * r["accuracy_diff_vs_final"]["mean"])
            assert q["speedup"] == pytest.approx(r["speedup"]["s3"]["mean"])


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    a = RUNS / "levels123/analysis.json"
    p = _run(a, "--names", "x", "y", "--out", tmp_path / "fig")
    assert p.returncode == 2 and "--names" in p.stderr and not (tmp_path / "fig.png").exists()
    (tmp_path / "bad.json").write_text("{}")
    p = _run(tmp_path / "bad.json", "--out", tmp_path / "fig")
    assert p.returncode == 2 and "not an asd analysis record" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fig.png").exists()
