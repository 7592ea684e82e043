"""Per-sample latency, call recovery and pricing (asd.analysis.calls) on hand-computed traces."""

import math

import numpy as np
import pytest

from asd.analysis.calls import (
    GENERATE,
    SPECULATIVE,
    VERIFY,
    batch_share,
    price_calls,
    recover_calls,
    pooled,
    sample_latency,
    stage_devices,
)
from asd.core.costs import CostModel, LinearFit, StageCost
from asd.costs_io import load_cost_model
from asd.provenance import REPO_ROOT


def _traces():
    """K = 3. Batch 100: s0 stops at 0; s1 goes 0 → 2; s2 goes 0 → 1 → 2 (stage 2 in a later round than s1).
    Batch 200: s3 stops at 0."""
    nan = np.nan
    return {
        "prompt_len": np.array([10, 20, 30, 12]),
        "ran": np.array([[1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 0, 0]], bool),
        "draft_len": np.array([[5, 0, 0], [4, 0, 6], [8, 7, 9], [3, 0, 0]]),
        "accepted_len": np.array([[0, 0, 0], [0, 0, 3], [0, 5, 7], [0, 0, 0]]),
        "latency_s": np.array([[0.5, nan, nan], [0.5, nan, 0.3], [0.5, 0.2, 0.4], [0.1, nan, nan]]),
        "batch_id": np.array([100, 100, 100, 200]),
        "batch_latency_s": np.array([1.5, 1.5, 1.5, 0.15]),
    }


def _table(devices=(1, 1, 4)):
    """prefill slope a_k s/token (no intercept), decode step d_k s (flat in the batch), no overheads."""
    a, d = (1e-3, 2e-3, 4e-3), (1e-2, 2e-2, 4e-2)
    stages = tuple(StageCost(f"m{k}", LinearFit(a[k], 0.0), LinearFit(0.0, d[k])) for k in range(3))
    prov = {"measured": {"stages": [{"name": f"m{k}", "devices": n} for k, n in enumerate(devices)]}}
    return CostModel(stages=stages, provenance=prov)


def test_recover_calls_hand_computed():
    c = recover_calls(_traces())
    got = sorted(
        zip(c.batch.tolist(), c.stage.tolist(), c.kind.tolist(), c.size.tolist(), c.in_tokens.tolist(),
            c.steps.tolist(), c.measured_s.tolist())
    )
    assert got == sorted(
        [
            (100, 0, GENERATE, 3, 30, 7, 0.5),  # longest prompt 30; longest output 8 → 7 decode steps
            (200, 0, GENERATE, 1, 12, 2, 0.1),
            (100, 1, VERIFY, 1, 38, 1, 0.2),  # 30 + 8 drafted; 7 − 5 accepted − 1 = 1 step
            (100, 2, VERIFY, 1, 24, 2, 0.3),  # s1 from stage 0: 20 + 4; 6 − 3 − 1 = 2
            (100, 2, VERIFY, 1, 37, 1, 0.4),  # s2 from stage 1: 30 + 7; 9 − 7 − 1 = 1
        ]
    )
    # each sample's calls
    assert (c.member[0] >= 0).tolist() == [True, False, False]
    assert c.member[1, 2] != c.member[2, 2]  # stage 2 ran twice in batch 100: two calls
    assert c.measured_s[c.member[2, 1]] == 0.2


def test_price_calls_hand_computed_with_gpu_seconds():
    c = recover_calls(_traces())
    secs, gpu = price_calls(c, _table())
    by = {(b, s, t): (x, g) for b, s, t, x, g in zip(c.batch, c.stage, c.in_tokens, secs, gpu)}
    assert by[(100, 0, 30)][0] == pytest.approx(1e-3 * 3 * 30 + 7 * 1e-2)  # 0.16
    assert by[(100, 1, 38)][0] == pytest.approx(2e-3 * 38 + 1 * 2e-2)  # 0.096
    assert by[(100, 2, 24)][0] == pytest.approx(4e-3 * 24 + 2 * 4e-2)  # 0.176
    assert by[(100, 2, 37)][0] == pytest.approx(4e-3 * 37 + 1 * 4e-2)  # 0.188
    assert by[(200, 0, 12)][0] == pytest.approx(1e-3 * 12 + 2 * 1e-2)  # 0.032
    assert by[(100, 2, 37)][1] == pytest.approx(4 * 0.188)  # stage 2 runs on 4 devices
    assert by[(100, 0, 30)][1] == pytest.approx(0.16)
    share = batch_share(c, secs, _traces()["batch_id"])
    assert share.tolist() == pytest.approx([0.62 / 3] * 3 + [0.032])


def test_sample_latency_batch_share_and_stage_share():
    t = _traces()
    lat, how = sample_latency(t)
    assert how == "batch_share" and lat.tolist() == pytest.approx([0.5, 0.5, 0.5, 0.15])
    assert lat.sum() == pytest.approx(1.5 + 0.15)  # the shares add up to the wall-clock of the batches
    t["batch_latency_s"] = np.full(4, np.nan)  # not measured: each call split among its members
    lat, how = sample_latency(t)
    assert how == "stage_share"
    assert lat.tolist() == pytest.approx([0.5 / 3, 0.5 / 3 + 0.3, 0.5 / 3 + 0.2 + 0.4, 0.1])
    t["batch_id"] = np.array([-1, -1, -1, -1])
    with pytest.raises(ValueError, match="no batch"):
        sample_latency(t)


def test_a_pooled_window_charges_each_sample_its_calls_scaled_to_the_window():
    """One window of 4 in calls of at most 2: stage 0 in two calls (0.4 s, 0.2 s), stage 2 once on samples 1
    and 2 (0.6 s); the window took 1.5 s. Call shares 0.2, 0.2 + 0.3, 0.1 + 0.3, 0.1 (sum 1.2), scaled by
    1.5 / 1.2; the projection splits the estimated calls alike."""
    nan = np.nan
    t = {
        "prompt_len": np.array([10, 20, 30, 12]),
        "ran": np.array([[1, 0, 0], [1, 0, 1], [1, 0, 1], [1, 0, 0]], bool),
        "draft_len": np.array([[5, 0, 0], [4, 0, 6], [8, 0, 9], [3, 0, 0]]),
        "accepted_len": np.array([[0, 0, 0], [0, 0, 3], [0, 0, 7], [0, 0, 0]]),
        "latency_s": np.array([[0.4, nan, nan], [0.4, nan, 0.6], [0.2, nan, 0.6], [0.2, nan, nan]]),
        "batch_id": np.zeros(4, np.int64),
        "batch_latency_s": np.full(4, 1.5),
    }
    c = recover_calls(t)
    assert sorted(c.size.tolist()) == [2, 2, 2] and pooled(c, t["batch_id"])
    lat, how = sample_latency(t, c)
    assert how == "call_share"
    assert lat.tolist() == pytest.approx([x * 1.5 / 1.2 for x in (0.2, 0.5, 0.4, 0.1)])
    assert lat.sum() == pytest.approx(1.5)
    secs, _ = price_calls(c, _table())
    est = batch_share(c, secs, t["batch_id"])
    assert est.sum() == pytest.approx(secs.sum()) and est[1] > est[0] and est[2] > est[3]
    assert not pooled(recover_calls(_traces()), _traces()["batch_id"])  # a batch = its first call


def test_speculative_calls_are_priced_as_target_plus_drafter():
    t = {
        "prompt_len": np.array([10, 14]),
        "ran": np.array([[1, 0, 1], [1, 0, 1]], bool),
        "draft_len": np.array([[9, 0, 9], [5, 0, 6]]),  # stage 0 drafted 9 and 5 tokens
        "accepted_len": np.array([[0, 0, 8], [0, 0, 4]]),
        "latency_s": np.array([[0.0, np.nan, 0.7], [0.0, np.nan, 0.7]]),
        "batch_id": np.array([0, 0]),
        "batch_latency_s": np.array([0.8, 0.8]),
    }
    c = recover_calls(t, speculative=True)
    assert len(c) == 1 and c.kind[0] == SPECULATIVE and c.stage[0] == 2
    assert (c.size[0], c.in_tokens[0], c.steps[0]) == (2, 14, 9)
    secs, gpu = price_calls(c, _table(), gamma=4)
    target = 4e-3 * 28 + math.ceil(9 / 4) * 4e-2  # prefill of 2 × 14 tokens, 3 verify rounds
    drafter = 1e-3 * 28 + 9 * 1e-2
    assert secs[0] == pytest.approx(target + drafter)
    assert gpu[0] == pytest.approx(4 * target + drafter)


def test_committed_tables_devices_and_stage_check():
    h200 = load_cost_model(REPO_ROOT / "configs/costs/h200-qwen2.5-tp4.json")
    h100 = load_cost_model(REPO_ROOT / "configs/costs/h100-qwen2.5.json")
    assert stage_devices(h200).tolist() == [1, 1, 1, 4]  # 72B at tensor parallelism 4
    assert stage_devices(h100).tolist() == [1, 1, 1, 1]  # 72B depth-extrapolated, one device equivalent
    c = recover_calls(_traces())
    small = CostModel(stages=_table().stages[:2])
    with pytest.raises(ValueError, match="2 stages"):
        price_calls(c, small)
