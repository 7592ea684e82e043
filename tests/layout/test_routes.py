"""asd.layout.routes: route files from real HDF5 traces (asd.traces), batches from the run config, refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

from asd.layout.routes import (ROUTES_SCHEMA_VERSION, load_routes, recorded_batches, routes_from_traces,  # noqa: E402
                               sample_route, save_routes)
from asd.traces import NOT_RUN, STOP, TraceWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
K = 4


def run_config(n=10, shards=2, step_batch=3, rows=2, gamma=0, policy="dp"):
    return {"jobs": {"num_samples": n, "shards": shards, "batch_size": step_batch},
            "cascade": {"batch_size": rows, "gamma": gamma}, "policy": {"name": policy}}


def write_traces(path, routes, config, ids=None):
    """A trace file whose samples follow ``routes`` [(route, draft_len per route stage, accepted per stage)]."""
    N = len(routes)
    rec = {
        "sample_id": np.arange(N, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
        "prompt_len": np.arange(N, dtype=np.int32) + 20,
        "ran": np.zeros((N, K), bool),
        "draft_len": np.zeros((N, K), np.int32),
        "accepted_len": np.zeros((N, K), np.int32),
        "decision": np.full((N, K), NOT_RUN, np.int8),
    }
    for i, (route, dl, al) in enumerate(routes):
        for j, k in enumerate(route):
            rec["ran"][i, k] = True
            rec["draft_len"][i, k] = dl[j]
            rec["accepted_len"][i, k] = al[j]
            rec["decision"][i, k] = route[j + 1] if j + 1 < len(route) else STOP
    with TraceWriter(path, K, ["x"], {"config": config, "git_revision": "abc1234", "models": ["a", "b", "c", "d"]}) as w:
        w.append(rec)
    return path


ROUTES = [([0, 3], [5, 5], [0, 5]), ([0, 2], [6, 8], [0, 3]), ([0], [4], [0]), ([0, 1, 3], [4, 5, 5], [0, 2, 5]),
          ([0, 3], [7, 7], [0, 7]), ([0, 1], [3, 3], [0, 3]), ([0, 3], [5, 9], [0, 1]), ([0], [2], [0]),
          ([0, 2], [5, 5], [0, 5]), ([0, 3], [6, 6], [0, 6])]


def test_batches_follow_shards_step_batches_and_cascade_rows():
    # 10 ids, 2 shards (0-4, 5-9), steps of 3 ids, cascade rows of 2: [0,1] [2] [3,4] | [5,6] [7] [8,9]
    got = recorded_batches(np.arange(10), run_config())
    assert got.tolist() == [0, 0, 1, 2, 2, 3, 3, 4, 5, 5]
    with pytest.raises(ValueError, match="hold 9 sample ids, the run planned 10"):
        recorded_batches(np.arange(9), run_config())
    with pytest.raises(ValueError, match="lacks 'cascade'"):
        recorded_batches(np.arange(10), {"jobs": run_config()["jobs"]})


def test_sample_route_follows_the_decisions():
    ran = np.array([True, False, True, True])
    assert sample_route(ran, np.array([2, NOT_RUN, 3, STOP])) == [0, 2, 3]
    with pytest.raises(ValueError, match="stages \\[0, 2, 3\\] ran"):
        sample_route(ran, np.array([3, NOT_RUN, STOP, STOP]))
    with pytest.raises(ValueError, match="no stage ran"):
        sample_route(np.zeros(4, bool), np.full(4, NOT_RUN))


def test_route_file_from_real_traces_round_trips(tmp_path):
    path = write_traces(tmp_path / "t.h5", ROUTES, run_config())
    r = routes_from_traces(path)
    s = r["samples"]
    assert s["route"] == [x[0] for x in ROUTES] and s["draft_len"] == [x[1] for x in ROUTES]
    assert s["accepted_len"] == [x[2] for x in ROUTES] and s["prompt_len"] == list(range(20, 30))
    assert s["batch"] == [0, 0, 1, 2, 2, 3, 3, 4, 5, 5] and r["stages"] == ["a", "b", "c", "d"]
    assert r["decision_mix"] == {"0>3": 4, "0>2": 2, "0": 2, "0>1>3": 1, "0>1": 1}
    assert r["source"]["git_revision"] == "abc1234" and r["source"]["config"]["jobs"]["shards"] == 2
    out = save_routes(r, tmp_path / "r.json")
    back = load_routes(out)
    assert back["samples"] == s and back["schema_version"] == ROUTES_SCHEMA_VERSION and "provenance" in back


def test_runs_the_replay_cannot_model_are_refused(tmp_path):
    with pytest.raises(ValueError, match="gamma 2.*plain regeneration"):
        routes_from_traces(write_traces(tmp_path / "g.h5", ROUTES, run_config(gamma=2)))
    with pytest.raises(ValueError, match="policy 'speculative'"):
        routes_from_traces(write_traces(tmp_path / "s.h5", ROUTES, run_config(policy="speculative")))
    bad = [(r, d, a) for r, d, a in ROUTES]
    bad[1] = ([0, 2], [6, 8], [0, 6])   # all 6 accepted, yet 8 tokens after: impossible
    with pytest.raises(ValueError, match="sample 1: hop 1: accepted 6 of 6"):
        routes_from_traces(write_traces(tmp_path / "b.h5", bad, run_config()))
    with pytest.raises(ValueError, match="planned 12"):
        routes_from_traces(write_traces(tmp_path / "n.h5", ROUTES, run_config(n=12)))


def test_load_routes_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="route file not found"):
        load_routes(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ValueError, match="x.json: line 1: not valid JSON"):
        load_routes(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version 99"):
        load_routes(tmp_path / "y.json")


def test_cli_writes_the_route_file_and_reports_bad_input(tmp_path):
    path = write_traces(tmp_path / "t.h5", ROUTES, run_config())
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "asd.layout", "routes", str(path), "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "10 samples" in res.stdout, res.stderr
    assert load_routes(tmp_path / "r.json")["samples"]["batch"][-1] == 5
    res = subprocess.run([sys.executable, "-m", "asd.layout", "routes", str(tmp_path / "none.h5"), "--out",
                          str(tmp_path / "s.json")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("asd.layout routes: error:") and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


def test_committed_route_files_name_their_testbed_run():
    """The route files under results/routes/ come from real testbed runs (make demo's config, and the same run
    with the random policy): 160 samples in 4 batches of 40, the run's revision and config recorded."""
    files = sorted((ROOT / "results/routes").glob("*.json"))
    if not files:
        pytest.skip("no committed route files")
    for f in files:
        r = load_routes(f)
        src = r["source"]
        assert src["config"]["hierarchy"]["stages"][0]["model"] == "testbed:s0" and src["git_revision"]
        assert len(r["samples"]["sample_id"]) == 160 and sorted(set(r["samples"]["batch"])) == [0, 1, 2, 3]
        assert "replay" in r["label"] and r["provenance"]["git_revision"]
