"""``asd cascade``: runs a hierarchy from a YAML file and reports the check against the final stage."""
import shutil

from asd.cli import main
from asd.models.random_init import random_family
from asd.testbed.tokenizer import TOKENIZER_DIR


def test_asd_cascade_command(tmp_path, capsys):
    dirs = random_family(tmp_path / "fam", stages=2, seed=5, noise=0.02, hidden_size=16, num_layers=1, num_heads=2,
                         num_kv_heads=1, intermediate_size=32, init_std=0.3, max_position_embeddings=512)
    tok = tmp_path / "tok"
    shutil.copytree(TOKENIZER_DIR, tok)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
hierarchy:
  name: rnd
  device: cpu
  tokenizer: {tok}
  stages:
    - {{name: a, model: {dirs[0]}, dtype: float32}}
    - {{name: b, model: {dirs[1]}, dtype: float32}}
cascade:
  max_new_tokens: 8
policy:
  name: dp
""")
    assert main(["cascade", "--config", str(cfg), "--n", "6", "--lam", "inf", "--check"]) == 0
    out = capsys.readouterr().out
    assert "final stage histogram: a=0, b=6" in out
    assert "equal to its own output: 6/6" in out
    assert main(["cascade", "--config", str(cfg), "--n", "0"]) == 2   # bad input: clear error, exit 2
