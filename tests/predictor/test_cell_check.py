"""scripts/predictor_cell_check.py: the logistic fit it relies on and its refusal of a missing file."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/predictor_cell_check.py"
spec = importlib.util.spec_from_file_location("predictor_cell_check", SCRIPT)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)


def test_fit_logistic_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    X = np.concatenate([np.ones((40_000, 1)), rng.normal(size=(40_000, 2))], 1)
    beta = np.array([0.3, 1.5, -2.0])
    y = (rng.random(40_000) < 1 / (1 + np.exp(-(X @ beta)))).astype(np.float64)
    np.testing.assert_allclose(mod.fit_logistic(X, y), beta, atol=0.06)


def test_missing_data_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert mod.main(["--data", str(tmp_path / "none.h5"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"predictor_cell_check: --data {tmp_path / 'none.h5'}: no such file\n"
    assert not out.exists()
