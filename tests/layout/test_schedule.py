"""asd.layout.schedule: the recorded cascade's calls, the final stage alone's, and their cost-table estimate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asd.core.costs import CostModel, LinearFit, StageCost
from asd.layout.routes import load_routes
from asd.layout.schedule import (Call, alone_calls, bucket, call_summary, cascade_calls, decode_segments,
                                 estimate_seconds)

ROOT = Path(__file__).resolve().parents[2]
ROUTE_FILES = sorted((ROOT / "results/routes").glob("*.json"))


def routes(samples: list[tuple], K: int = 4) -> dict:
    """A route file's content from (batch, prompt_len, route, draft_len, accepted_len) tuples."""
    cols = ("batch", "prompt_len", "route", "draft_len", "accepted_len")
    s = {c: [x[i] for x in samples] for i, c in enumerate(cols)}
    s["sample_id"] = list(range(len(samples)))
    return {"stages": [f"s{k}" for k in range(K)], "samples": s}


def test_decode_segments_follow_the_engines_compaction_rule():
    assert decode_segments([3, 1, 0, 0], 4) == ((2, 1), (1, 2))
    assert decode_segments([5] * 8, 8) == ((8, 5),)
    assert decode_segments([2, 9, 9, 1], 4) == ((4, 2), (2, 7))      # 3 of 4 active: no compaction yet
    assert decode_segments([0, 0], 2) == ()
    assert decode_segments([4], 1) == ((1, 4),)
    with pytest.raises(ValueError, match="3 non-negative"):
        decode_segments([1, 2], 3)


def test_cascade_calls_of_a_hand_made_run():
    """Batch 0: two samples 0→3 (one accepts all 5 tokens, one accepts 2 and ends with 6), one stops at 0;
    batch 1: one sample 0→1→3."""
    r = routes([
        (0, 10, [0, 3], [5, 5], [0, 5]),
        (0, 12, [0, 3], [5, 6], [0, 2]),
        (0, 8, [0], [3], [0]),
        (1, 7, [0, 1, 3], [4, 4, 4], [0, 1, 4]),
    ])
    calls = cascade_calls(r)
    assert [(c.batch, c.hop, c.stage, c.kind) for c in calls] == [
        (0, 0, 0, "draft"), (0, 1, 3, "verify"), (1, 0, 0, "draft"), (1, 1, 1, "verify"), (1, 2, 3, "verify")]
    d0, v0, _, v1, v2 = calls
    # draft: 3 rows, longest prompt 12, steps 4/4/2; after 2 steps 2 of 3 rows are active: no compaction
    # (2·2 > 3), so all 4 steps run at batch 3
    assert (d0.rows, d0.tokens, d0.keep, d0.context, d0.segments) == (3, 12, 1, 12, ((3, 4),))
    # verify on s3: rows 2, tokens max(10+5, 12+5), keep 5+1; only the second regenerates 6-2-1 = 3 steps
    # from 12 + 2 slots; 1 of 2 active → compacted to 1 row
    assert (v0.rows, v0.tokens, v0.keep, v0.context, v0.segments) == (2, 17, 6, 14, ((1, 3),))
    # s1 verifies 4 tokens, accepts 1, ends with 4: 2 steps; s3 verifies those 4, accepts 4 (all): none
    assert (v1.tokens, v1.keep, v1.context, v1.segments) == (11, 5, 8, ((1, 2),))
    assert (v2.tokens, v2.keep, v2.segments, v2.decode_steps) == (11, 5, (), 0)
    assert v0.max_slots == max(17, 14 + 3 + 1)
    alone = alone_calls(r, 3)
    assert [(c.batch, c.stage, c.kind, c.rows, c.tokens) for c in alone] == [(0, 3, "alone", 3, 12), (1, 3, "alone", 1, 7)]
    # returned lengths 5, 6, 3 → 4, 5, 2 steps: 4 at batch 3 (2 of 3 active after 2: kept), then 1 of 3: one row
    assert alone[0].segments == ((3, 4), (1, 1))
    summ = call_summary(calls, 4)
    assert summ[0]["calls"]["draft"] == 2 and summ[3]["calls"]["verify"] == 2 and summ[2]["calls"] == {
        "draft": 0, "verify": 0, "alone": 0}
    assert summ[3]["pass_tokens"] == 2 * 17 + 11 and summ[3]["decode_steps"] == 3


def test_cascade_calls_merge_arrivals_and_cut_at_the_call_size():
    """One window of 6 in calls of 2 (``cascade.batch_size`` of the run config): s3 is reached from s0 directly
    (samples 0, 1, 4) and through s1 (samples 2, 3): the schedule verifies all five at s3 after s1, in calls of
    2, 2 and 1 in sample order, each row with its own incoming response."""
    r = routes([
        (0, 10, [0, 3], [5, 5], [0, 5]),
        (0, 12, [0, 3], [5, 6], [0, 2]),
        (0, 9, [0, 1, 3], [4, 6, 6], [0, 1, 6]),
        (0, 8, [0, 1, 3], [3, 3, 7], [0, 3, 1]),
        (0, 7, [0, 3], [2, 2], [0, 2]),
        (0, 6, [0], [3], [0]),
    ])
    r["source"] = {"config": {"cascade": {"batch_size": 2, "pool_size": 6}}}
    calls = cascade_calls(r)
    assert [(c.hop, c.stage, c.kind, c.rows) for c in calls] == [
        (0, 0, "draft", 2), (0, 0, "draft", 2), (0, 0, "draft", 2),
        (1, 1, "verify", 2), (2, 3, "verify", 2), (2, 3, "verify", 2), (2, 3, "verify", 1)]
    # the second s3 call holds samples 2 (from s1: 6 tokens in, all accepted) and 3 (from s1: 3 in, 1 accepted,
    # ends with 7: 5 steps)
    c = calls[5]
    assert (c.tokens, c.keep, c.context, c.segments) == (max(9 + 6, 8 + 3), 7, 8 + 1, ((1, 5),))
    alone = alone_calls(r, 3)
    assert [a.rows for a in alone] == [2, 2, 2]
    del r["source"]  # a route file without the config: one call per stage and window, as before
    assert [(c.stage, c.rows) for c in cascade_calls(r)] == [(0, 6), (1, 2), (3, 5)]


def test_estimate_from_a_cost_table():
    line = lambda a, b: LinearFit(slope=a, intercept=b, residual_std=0.0, n=2)  # noqa: E731
    model = CostModel(stages=tuple(StageCost(name=f"s{k}", prefill=line(1e-3 * (k + 1), 0.01), decode=line(1e-4, 0.002 * (k + 1)))
                                   for k in range(2)), batch_size=1)
    calls = [Call(0, 0, 0, "draft", 2, 10, 1, 10, ((2, 3),)), Call(0, 1, 1, "verify", 1, 14, 5, 12, ((1, 2),))]
    est = estimate_seconds(calls, model)
    p0, d0 = 0.01 + 1e-3 * 20, 3 * (0.002 + 2e-4)
    p1, d1 = 0.01 + 2e-3 * 14, 2 * (0.004 + 1e-4)
    assert est["per_stage"] == pytest.approx([p0 + d0, p1 + d1])
    assert est["total"] == pytest.approx(p0 + d0 + p1 + d1) and est["pass"] == pytest.approx(p0 + p1)
    assert estimate_seconds(calls, model, stage_map=[1, 1])["per_stage"][0] == 0.0


def test_bucket():
    assert [bucket(n, [1, 2, 4, 8]) for n in (1, 3, 8, 9)] == [1, 4, 8, 9]


@pytest.mark.skipif(not ROUTE_FILES, reason="no committed route files")
@pytest.mark.parametrize("path", ROUTE_FILES, ids=lambda p: p.stem)
def test_committed_route_files_give_consistent_schedules(path):
    """Every sample drafts once, every hop of its route is one verification row, and the decode steps of the
    draft and of the alone run add up to the recorded response lengths."""
    r = load_routes(path)
    s = r["samples"]
    calls = cascade_calls(r)
    N = len(s["sample_id"])
    assert sum(c.rows for c in calls if c.kind == "draft") == N
    assert sum(c.rows for c in calls if c.kind == "verify") == sum(len(x) - 1 for x in s["route"])
    batch = np.asarray(s["batch"])
    for c in (c for c in calls if c.kind == "draft"):
        n0 = [s["draft_len"][i][0] for i in np.flatnonzero(batch == c.batch)]
        assert c.decode_steps == max(n0) - 1
    alone = alone_calls(r, len(r["stages"]) - 1)
    assert sum(c.rows for c in alone) == N and {c.stage for c in alone} == {len(r["stages"]) - 1}
    mix = {}
    for x in s["route"]:
        key = ">".join(map(str, x))
        mix[key] = mix.get(key, 0) + 1
    assert mix == r["decision_mix"]
