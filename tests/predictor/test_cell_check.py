"""scripts/predictor_cell_check.py: its refusal of a missing file (its logistic fit: test_headroom.py)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/predictor_cell_check.py"
spec = importlib.util.spec_from_file_location("predictor_cell_check", SCRIPT)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)


def test_missing_data_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert mod.main(["--data", str(tmp_path / "none.h5"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"predictor_cell_check: --data {tmp_path / 'none.h5'}: no such file\n"
    assert not out.exists()
