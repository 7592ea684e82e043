"""A cell's testbed prompts: sample i at the evaluation's levels[i % len(levels)], the same prompt wherever drawn."""
import json

import numpy as np
import pytest

from asd.cli import main as cli
from asd.evaluation.config import CellConfig
from asd.evaluation import prompts
from asd.evaluation.prompts import cell_prompts, draw_testbed
from asd.traces import read_traces

from .helpers import write_config


def test_levels_pick_each_samples_level_and_keep_its_draw():
    ids = np.arange(12)
    default = draw_testbed("mmlu", 3, ids)
    assert [e.level for e in default] == [i % 5 + 1 for i in range(12)]  # all five: the study's mix
    assert [prompts.testbed_level(i) for i in range(12)] == [i % 5 + 1 for i in range(12)]
    hard = draw_testbed("mmlu", 3, ids, [4, 5])
    assert [e.level for e in hard] == [4, 5] * 6
    # a sample whose level is the same under both draws is the same prompt (its seed is s·1,000,003 + i)
    same = [i for i in range(12) if default[i].level == hard[i].level]
    assert same and all(default[i] == hard[i] for i in same)
    cell = CellConfig(id="c", dataset="testbed/mmlu", task="mmlu", seed=3, levels=[4, 5])
    got = cell_prompts(cell, ids, None, None, None, room=10_000)
    assert got.items == hard and len(got.ids) == 12
    with pytest.raises(ValueError, match=r"levels: distinct testbed levels, at least one; valid: 1, 2, 3, 4, 5"):
        CellConfig(id="c", dataset="testbed/mmlu", task="mmlu", levels=[0])


def test_a_grid_of_one_level_runs_that_levels_prompts(tmp_path, capsys):
    """``evaluation.levels: [5]`` online: every cell's config carries it, and the traces score the level-5 prompts
    (recomputed here from their texts); replay refuses it (the traces' rows hold every level)."""
    from asd.testbed import scoring

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "grid.yaml", run, samples=4, policies=["single"], levels=[5])
    assert cli(["evaluate", "--config", str(cfg), "--no-progress"]) == 0
    grid = json.loads((run / "grid.json").read_text())
    exs = draw_testbed("gsm8k", 0, np.arange(4), [5])
    for c in grid["cells"]:
        t = read_traces(run / "cells" / c["cell"] / "traces.h5")
        assert t.attrs["config"]["cell"]["levels"] == [5]
        texts = t.data["text"].tolist()
        np.testing.assert_array_equal(t.data["score"], scoring.score(exs, texts))
    assert cli(["evaluate", "--config", str(cfg), "--mode", "replay", "--replay-data", str(cfg),
                "--output-dir", str(tmp_path / "rep"), "--no-progress"]) == 2
    assert "evaluation.levels" in capsys.readouterr().err and not (tmp_path / "rep").exists()
