"""scripts/compact_predictor_data.py: the compacted file (no tokens) loads as the trainer's data, unchanged."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asd.predictor.data import TRAINING_FIELDS, load_training_set
from asd.predictor_data.schema import read_predictor_data

from .datagen import write_predictor_data

ROOT = Path(__file__).resolve().parents[2]


def test_compacted_file_loads_with_the_same_columns(tmp_path):
    src = Path(write_predictor_data(tmp_path / "full.h5", N=60, seed=4))
    dst = tmp_path / "compact.h5"
    p = subprocess.run([sys.executable, str(ROOT / "scripts/compact_predictor_data.py"), str(src), str(dst)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["dropped"] == ["tokens_0", "tokens_1", "tokens_2", "tokens_3"]
    a, b = load_training_set(src), load_training_set(dst)
    for name in TRAINING_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert (a.feature_names, a.stage_names) == (b.feature_names, b.stage_names)
    src_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert a.sha256 == src_sha != b.sha256  # the trainer records the file it read: the compacted one
    assert json.loads(b.attrs["compacted_from"]) == {"sha256": src_sha, "name": "full.h5",
                                                     "dropped": ["tokens_0", "tokens_1", "tokens_2", "tokens_3"]}
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['tokens_0', .*a compacted file"):
        read_predictor_data(dst)  # every field asked for: the tokens are not there
