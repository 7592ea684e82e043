"""Routing helpers of the cascade beside asd.core.policies, pure numpy.

The decisions themselves come from ``asd.core.policies.decide`` (a ``Plan`` per
batch). This module says which policies re-plan after every stage (receding
horizon: dp, threshold, confidence, oracle) and which follow the route fixed at the first
decision (single, fixed_depth, speculative, random: a random stop drawn again
at every stage would not follow its histogram); which stage generates first;
which samples move next (``next_move``, the schedule of docs/cascade.md "Pooled batches"); and
a cost proxy for runs without a measured cost model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from asd.core.dp import STOP, Plan


def next_move(target: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The lowest stage any sample waits for and those samples, or None when none waits.

    target [B] int64: the stage each sample of a window waits for (``STOP`` = −1: none). Routes only go up,
    so the samples sent to the lowest waiting stage can all move in one go: any later arrival at that stage
    would have to come from a stage below it, and none waits there.
    """
    waiting = np.flatnonzero(target >= 0)
    if waiting.size == 0:
        return None
    m = int(target[waiting].min())
    return m, waiting[target[waiting] == m]


def split_calls(idx: np.ndarray, batch_size: int | None) -> list[np.ndarray]:
    """``idx`` [R] cut, in order, into the members of stage calls of at most ``batch_size`` samples (None or 0:
    one call)."""
    size = batch_size or max(idx.size, 1)
    return [idx[a : a + size] for a in range(0, idx.size, size)]


def walk_window(
    stage: np.ndarray,
    decision: np.ndarray,
    policy_name: str,
    decide: Callable[[np.ndarray], Plan],
    move: Callable[[np.ndarray, int], None],
    batch_size: int | None,
) -> None:
    """The cascade's loop over one window after the first stage ran (docs/cascade.md "The loop"), shared by
    the cascade and replay: decide the samples at their current stage, then move every sample waiting for the
    lowest waiting stage (``next_move``) in calls of ``batch_size`` (``move(idx [R], m)`` per call), decide
    those again, until every sample stopped. Re-planning policies (``REPLAN``) are decided after every move;
    the others follow the route of their first decision.

    stage [B] int64 (updated in place to each sample's current stage); decision [B, K] int8 (gets each
    decision at the stage it was made); ``decide(rows [R]) -> Plan`` at ``stage[rows]``.
    """
    B, K = decision.shape
    route: np.ndarray | None = None  # [B, K] the plan's next stage from every node (fixed-route policies)
    target = np.full(B, STOP, np.int64)  # [B] the stage each sample waits for (STOP: none)
    todo = np.arange(B)  # the samples to decide at their current stage
    while todo.size:
        if route is None or policy_name in REPLAN:
            plan = decide(todo)
            action = plan.action
            if route is None:
                route = np.full((B, K), STOP, np.int64)
            route[todo] = plan.next
        else:
            action = route[todo, stage[todo]]
        decision[todo, stage[todo]] = action
        target[todo] = action
        nxt = next_move(target)
        if nxt is None:
            return
        m, todo = nxt
        for idx in split_calls(todo, batch_size):
            move(idx, m)
        stage[todo] = m
        target[todo] = STOP


def resolve_stage(stage: int, K: int) -> int:
    """-1 → K−1; ValueError naming the valid stages otherwise."""
    k = K - 1 if stage == -1 else stage
    if not 0 <= k < K:
        raise ValueError(f"stage {stage} out of range; valid: 0..{K - 1} or -1 (the last stage)")
    return k


REPLAN = ("dp", "threshold", "confidence", "oracle")


def first_stage(policy, K: int) -> int:
    """The stage that generates first: k for "single"; ``start`` for the re-planning policies (default 0; a start
    at the last stage is the final stage alone); 0 otherwise. ValueError when ``start`` is not a stage of K."""
    if policy.name == "single":
        return resolve_stage(policy.stage, K)
    return resolve_stage(policy.start, K)  # PolicyConfig refuses start < 0


def _upper(K: int) -> np.ndarray:
    """[K, K] bool, True where m > j (cached)."""
    m = _UPPER.get(K)
    if m is None:
        m = _UPPER[K] = np.triu(np.ones((K, K), dtype=bool), k=1)
    return m


_UPPER: dict[int, np.ndarray] = {}


def proxy_costs(
    prompt_len: np.ndarray,  # [B] tokens
    resp_len: np.ndarray,  # [B] tokens of the current response
    accept_mean: np.ndarray,  # [B, K, K] expected accepted fraction of y_j under M_m
    size: np.ndarray,  # [K] relative cost of one token of work per stage (e.g. params)
    prefill_ratio: float = 0.05,  # cost of one prefill token / one decode step, same model
) -> np.ndarray:
    """[B, K, K] float64 ``proxy_costs_ref`` in one compiled call (``asd._C.proxy_costs``, bit-identical).

    Falls back to the numpy twin when the extension is not built.
    """
    from asd._ext import get_ext

    ext = get_ext()
    if ext is None or not hasattr(ext, "proxy_costs"):
        return proxy_costs_ref(prompt_len, resp_len, accept_mean, size, prefill_ratio)
    return ext.proxy_costs(prompt_len, resp_len, accept_mean, size, float(prefill_ratio))


def proxy_costs_ref(
    prompt_len: np.ndarray,  # [B] tokens
    resp_len: np.ndarray,  # [B] tokens of the current response
    accept_mean: np.ndarray,  # [B, K, K] expected accepted fraction of y_j under M_m
    size: np.ndarray,  # [K] relative cost of one token of work per stage
    prefill_ratio: float = 0.05,  # cost of one prefill token / one decode step, same model
) -> np.ndarray:
    """[B, K, K] normalised c_{j→m} when no measured cost model is given (shape of docs/algorithm.md#decision).

    c_{j→m} = size_m·(ρ·(P + L) + (1 − â_{j,m})·L) / (size_{K−1}·(ρ·P + L)): a prefill over prompt
    + response plus decoding the rejected suffix, over the final model's own latency. inf where m ≤ j.
    """
    K = len(size)
    P = np.asarray(prompt_len, np.float64)[:, None, None]
    L = np.maximum(np.asarray(resp_len, np.float64), 1.0)[:, None, None]
    s = np.asarray(size, np.float64)
    a = np.clip(np.asarray(accept_mean, np.float64), 0.0, 1.0)
    c = (prefill_ratio * (P + L) + (1.0 - a) * L) * (s / s[-1]) / (prefill_ratio * P + L)
    out = np.where(_upper(K), c, math.inf)
    return out
