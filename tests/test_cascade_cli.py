"""``asd cascade``: runs a hierarchy from a YAML file and reports the check against the final stage."""
from random_hierarchy import two_stage_config

from asd.cli import main


def test_asd_cascade_command(tmp_path, capsys):
    cfg = two_stage_config(tmp_path, """cascade:
  max_new_tokens: 8
policy:
  name: dp
""")
    assert main(["cascade", "--config", str(cfg), "--n", "6", "--lam", "inf", "--check"]) == 0
    out = capsys.readouterr().out
    assert "final stage histogram: a=0, b=6" in out
    assert "equal to its own output: 6/6" in out
    assert main(["cascade", "--config", str(cfg), "--n", "0"]) == 2   # bad input: clear error, exit 2
