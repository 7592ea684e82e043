"""The DP stopping rule: optimal stopping over the DAG of stages, with skips (docs/algorithm.md#decision).

Terms. Stages ``k = 0..K-1`` (models of growing size). At stage ``j`` the cascade
holds a response ``y_j``. It may **stop** (return ``y_j``) or **jump** to any
later stage ``m > j`` (``M_m`` verifies ``y_j`` and regenerates the rejected
suffix). For one input:

- ``r[s, j]``: the predictor's draw ``s`` of P(stage j's output == final stage's output);
- ``ℓ̃_j = mean_s(1 − r[s, j]) + κ · std_s(1 − r[s, j])`` (population std,
  ``ddof=0``), the risk-adjusted loss of stopping at ``j``; ``ℓ̃_{K−1} = 0``
  by definition (the final stage *is* the reference), whatever ``r[:, K−1]`` holds;
- ``cost[j, m]``: the normalised cost of moving from ``j`` to ``m``
  (1.0 = the final model's own latency for this input); entries with
  ``m <= j`` are never read (conventionally ``inf``); ``inf`` above the
  diagonal means "this move is unavailable".

Backward recursion (``λ`` = ``lam``, dimensionless)::

    V[K−1] = 0,                       next[K−1] = STOP
    V[j]   = min( λ·ℓ̃_j ,  min_{m>j} cost[j, m] + V[m] )    for j = K−2 .. 0
    next[j] = the arg-min (STOP or m)
    action  = next[current]

``λ = inf`` makes stopping before the last stage impossible (its value is
``inf``, never ``inf·0 = nan``); the DP then still picks the cheapest route to
the last stage, and ``V[j]`` is that route's cost. If every route from ``j`` is
``inf`` too, the only finite-or-not choice left is to stop (tie rule below).

**Tie rule** (identical in ``solve_ref`` and the C++ kernel): candidates are
compared in the order STOP, ``m = j+1``, ``j+2``, …, ``K−1``, and a candidate
replaces the incumbent only if it is *strictly* smaller. So STOP wins ties
(it is the cheaper action in wall-clock terms), and among jumps the nearest
stage wins.

**Dtype.** ``r`` and ``cost`` may be float32 or float64 (independently); all
arithmetic is float64 (float32 inputs are widened element by element, never
copied). ``value`` is float64, ``action`` and ``next`` int64.

**Complexity.** O(B·(S·K + K²)) time, one pass over ``r`` and ``cost``;
O(B·K) output. The C++ kernel (``asd._C.dp_solve``) is OpenMP-parallel over B
with a static schedule and releases the GIL; it validates shapes and scalars
with the GIL held and the array contents (NaN, ranges) inside its single pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from asd.config_loader import check_fields

STOP = -1  # action / next value meaning "stop here and return the current response"

# Policy names (asd.core.policies implements each; "dp" is solve()).
POLICIES = ("dp", "single", "fixed_depth", "threshold", "confidence", "speculative", "random", "oracle")
START_POLICIES = ("dp", "threshold", "confidence", "oracle")  # the re-planning policies: any first stage


@dataclass
class PolicyConfig:
    """How the cascade decides — YAML section ``policy`` (see asd.core.policies for each name)."""

    name: Literal["dp", "single", "fixed_depth", "threshold", "confidence", "speculative", "random", "oracle"] = "dp"
    lam: float = 1.0  # λ ≥ 0 or inf: weight of the quality loss against normalised cost (dp, oracle)
    kappa: float = 0.0  # κ ≥ 0: risk aversion, ℓ̃ = mean + κ·std over predictor draws (dp)
    stage: int = -1  # the model of "single" / the depth of "fixed_depth"; -1 = the last stage
    tau: float = 0.9  # "threshold": stop at stage j when mean r̂_j > τ; "confidence": when its confidence ≥ τ
    histogram: list[float] | None = None  # "random": P(stop at stage k), K entries (e.g. the DP's)
    seed: int = 0  # "random": seed of its generator
    skips: bool = True  # dp, oracle: False = adjacent moves only (j → j+1 or stop; forbid_skips on the costs)
    start: int = 0  # dp, threshold, confidence, oracle: the stage that generates first (no cheaper draft before it)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.name not in POLICIES:
            raise ValueError(f"name: unknown policy {self.name!r}; valid: {', '.join(POLICIES)}")
        if math.isnan(self.lam) or self.lam < 0:
            raise ValueError(f"lam must be >= 0 or inf, got {self.lam}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {self.kappa}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.histogram is not None:
            h = self.histogram
            if not h or any(not (x >= 0) for x in h) or sum(h) <= 0:
                raise ValueError(f"histogram must hold K non-negative weights with a positive sum, got {h}")
        if self.start < 0:
            raise ValueError(f"start must be a stage >= 0 (the first to generate), got {self.start}")
        if self.start != 0 and self.name not in START_POLICIES:
            raise ValueError(
                f"start: only policies {', '.join(START_POLICIES)} take a start stage; {self.name!r} has its own"
                " first stage (single: stage; the others: stage 0)"
            )
        if self.name == "random" and self.histogram is None:
            raise ValueError("histogram is required for policy 'random' (P(stop at stage k), K entries)")


@dataclass(frozen=True)
class Plan:
    """The DP's decision for a batch of B inputs over K stages."""

    action: np.ndarray  # [B] int64: STOP (-1) or the stage to jump to from `current`
    value: np.ndarray  # [B, K] float64: V_j, optimal expected λ·loss + remaining cost from stage j
    next: np.ndarray  # [B, K] int64: arg-min at every node j (STOP or m > j): the planned route


# ----------------------------------------------------------------------------- validation


def _check_scalars(lam: float, kappa: float) -> tuple[float, float]:
    try:
        lam = float(lam)
    except (TypeError, ValueError) as e:
        raise ValueError(f"lam must be a number >= 0 or inf, got {lam!r}") from e
    try:
        kappa = float(kappa)
    except (TypeError, ValueError) as e:
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}") from e
    if math.isnan(lam) or lam < 0:
        raise ValueError(f"lam must be >= 0 or inf, got {lam}")
    if not (math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa}")
    return lam, kappa


def _check_shapes(r: np.ndarray, cost: np.ndarray, current: np.ndarray) -> tuple[int, int, int]:
    """Shapes and dtypes only (cheap); returns (B, S, K)."""
    if r.ndim != 3:
        raise ValueError(f"r must have shape [B, S, K], got shape {r.shape}")
    B, S, K = r.shape
    if S < 1 or K < 1:
        raise ValueError(f"r must have S >= 1 draws and K >= 1 stages, got shape {r.shape}")
    if cost.ndim != 3 or cost.shape[1] != cost.shape[2]:
        raise ValueError(f"cost must have shape [B, K, K], got shape {cost.shape}")
    if cost.shape[0] != B:
        raise ValueError(f"cost has batch size {cost.shape[0]} but r has {B}")
    if cost.shape[1] != K:
        raise ValueError(f"cost has K={cost.shape[1]} stages but r has K={K}")
    if current.shape != (B,):
        raise ValueError(f"current must have shape [B]=({B},), got shape {current.shape}")
    for name, a in (("r", r), ("cost", cost)):
        if a.dtype.char not in "fd":  # float32, float64 (the char test is ~10x cheaper than `in (np.float32, ...)`)
            raise ValueError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if current.dtype.kind not in "iu":  # np.issubdtype(dtype, np.integer), without its ~0.6 µs
        raise ValueError(f"current must be an integer array, got dtype {current.dtype}")
    return B, S, K


def _check_contents(r: np.ndarray, cost: np.ndarray, current: np.ndarray) -> None:
    """Array contents (one extra pass each; the C++ kernel does this inside its own pass)."""
    K = r.shape[2]
    if not np.all((r >= 0) & (r <= 1)):  # NaN fails both comparisons
        raise ValueError("r must hold probabilities in [0, 1] (found NaN or a value outside)")
    upper = np.triu(np.ones((K, K), dtype=bool), k=1)
    c = cost[:, upper]
    if np.isnan(c).any():
        raise ValueError("cost contains NaN above the diagonal (cost[b, j, m] with m > j)")
    if (c < 0).any():
        raise ValueError("cost must be >= 0 above the diagonal (cost[b, j, m] with m > j)")
    if current.size and (current.min() < 0 or current.max() >= K):
        raise ValueError(f"current must hold stages in 0..{K - 1}, got values in [{current.min()}, {current.max()}]")


# ----------------------------------------------------------------------------- reference


def risk_adjusted_loss(r: np.ndarray, kappa: float) -> np.ndarray:
    """ℓ̃ [B, K] float64 from r [B, S, K]: mean + κ·std (ddof=0) of 1 − r over draws; ℓ̃[:, K−1] = 0."""
    loss = 1.0 - r.astype(np.float64, copy=False)  # [B, S, K]
    lt = loss.mean(axis=1)  # [B, K]
    if kappa > 0:
        lt = lt + kappa * loss.std(axis=1)
    lt[:, -1] = 0.0
    return lt


def solve_ref(
    r: np.ndarray,  # [B, S, K] P(stage k's output == final output), S predictor draws
    cost: np.ndarray,  # [B, K, K] normalised cost j → m (1.0 = final model alone); m <= j ignored
    current: np.ndarray,  # [B] int: the stage each input is at now
    lam: float,  # λ ≥ 0 or inf; dimensionless weight of the quality loss
    kappa: float = 0.0,  # κ ≥ 0; risk aversion over the predictor's draws
) -> Plan:
    """The numpy specification of the DP (see the module docstring for terms and the tie rule).

    Worked example (B = 1, S = 1, K = 3, λ = 1, current = 0)::

        r    = [[[0.6, 0.8, 1.0]]]          → ℓ̃ = [0.4, 0.2, 0.0]
        cost = [[[inf, 0.3, 1.1],           c_{0→1} = 0.3, c_{0→2} = 1.1 (skip)
                 [inf, inf, 0.9],           c_{1→2} = 0.9
                 [inf, inf, inf]]]
        V[2] = 0                                              next[2] = STOP
        V[1] = min(1·0.2, 0.9 + 0) = 0.2                      next[1] = STOP
        V[0] = min(1·0.4, 0.3 + 0.2, 1.1 + 0) = 0.4           next[0] = STOP
        → action = STOP, value = [0.4, 0.2, 0.0], next = [-1, -1, -1]

    With λ = 5: V[1] = min(1.0, 0.9) = 0.9 (→2); V[0] = min(2.0, 0.3+0.9, 1.1) = 1.1,
    so the DP skips stage 1 (next[0] = 2) because verifying twice costs more.
    """
    r = np.asarray(r)
    cost = np.asarray(cost)
    current = np.asarray(current)
    lam, kappa = _check_scalars(lam, kappa)
    B, _S, K = _check_shapes(r, cost, current)
    _check_contents(r, cost, current)

    lt = risk_adjusted_loss(r, kappa)  # [B, K]
    if math.isinf(lam):
        stop_val = np.full((B, K), np.inf)  # never stop before the last stage
    else:
        stop_val = lam * lt
    stop_val[:, K - 1] = 0.0

    value = np.empty((B, K), dtype=np.float64)
    nxt = np.full((B, K), STOP, dtype=np.int64)
    value[:, K - 1] = 0.0
    for j in range(K - 2, -1, -1):
        best = stop_val[:, j].copy()  # STOP is the first candidate
        for m in range(j + 1, K):  # then m = j+1 .. K-1, replaced only if strictly better
            cand = cost[:, j, m].astype(np.float64, copy=False) + value[:, m]
            better = cand < best
            best = np.where(better, cand, best)
            nxt[:, j] = np.where(better, m, nxt[:, j])
        value[:, j] = best
    action = nxt[np.arange(B), current.astype(np.int64)]
    return Plan(action=action, value=value, next=nxt)


# ----------------------------------------------------------------------------- fast path


def solve(
    r: np.ndarray,  # [B, S, K] float32/float64, P(stage k's output == final output)
    cost: np.ndarray,  # [B, K, K] float32/float64, normalised cost j → m; m <= j ignored
    current: np.ndarray,  # [B] int: current stage per input
    lam: float,  # λ ≥ 0 or inf
    kappa: float = 0.0,  # κ ≥ 0
    out: Plan | None = None,  # optional: write into these arrays (same shapes/dtypes as the result)
) -> Plan:
    """Same result as :func:`solve_ref` (identical actions/next, values to rtol 1e-6), via ``asd._C``.

    Falls back to ``solve_ref`` when the extension is not built (``asd._ext`` says so once).
    Non-contiguous inputs are copied to C order first (contiguous ones are not copied). ``out``
    (e.g. the Plan of a previous call at the same B, K) is filled in place and returned: repeated
    solves — a λ sweep, the cascade's batches — then skip the allocation and the kernel's zeroing
    of fresh pages, which at B = 1e6 is a large part of the time.
    """
    from asd._ext import get_ext

    ext = get_ext()
    if ext is None or not hasattr(ext, "dp_solve"):
        plan = solve_ref(r, cost, current, lam, kappa)
        if out is not None:
            for name in ("action", "value", "next"):
                np.copyto(getattr(out, name), getattr(plan, name))
            return out
        return plan
    r = np.asarray(r)
    cost = np.asarray(cost)
    current = np.asarray(current)
    lam, kappa = _check_scalars(lam, kappa)
    _check_shapes(r, cost, current)
    r = np.ascontiguousarray(r)
    cost = np.ascontiguousarray(cost)
    current = np.ascontiguousarray(current, dtype=np.int64)
    bufs = None if out is None else (out.action, out.value, out.next)
    action, value, nxt = ext.dp_solve(r, cost, current, lam, kappa, bufs)
    if out is not None:
        assert action is out.action and value is out.value and nxt is out.next  # written in place
        return out
    return Plan(action=action, value=value, next=nxt)


def forbid_skips(cost: np.ndarray) -> np.ndarray:
    """A copy of ``cost`` [B, K, K] (same dtype) with every jump over a stage, m > j + 1, set to ``inf``.

    The DP on the result moves to the adjacent stage or stops ("no skips": the ablation of the DAG's jumps).
    The mask is applied before the DP, so ``solve`` (``asd._C.dp_solve``) and ``solve_ref`` see the same
    array and stay bit-identical. Example (K = 3): ``cost[b, 0, 2]`` becomes inf; ``cost[b, 0, 1]`` and
    ``cost[b, 1, 2]`` are kept.
    """
    cost = np.array(cost, copy=True)
    if cost.ndim != 3 or cost.shape[1] != cost.shape[2]:
        raise ValueError(f"cost must have shape [B, K, K], got shape {cost.shape}")
    K = cost.shape[1]
    cost[:, np.triu(np.ones((K, K), dtype=bool), k=2)] = np.inf
    return cost


def route(plan: Plan, start: np.ndarray | int = 0) -> np.ndarray:
    """The stage each input ends at when it follows ``plan.next`` from ``start``: [B] int64.

    Example: next = [[2, -1, -1]] from start 0 → 0 jumps to 2, 2 stops → [2].
    """
    B, K = plan.next.shape
    at = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,)).copy()
    rows = np.arange(B)
    for _ in range(K):  # a route visits at most K nodes
        n = plan.next[rows, at]
        moving = n != STOP
        if not moving.any():
            break
        at = np.where(moving, n, at)
    return at


def route_cost(plan: Plan, cost: np.ndarray, start: np.ndarray | int = 0) -> np.ndarray:
    """Total normalised cost [B] float64 of following ``plan.next`` from ``start`` (0 if it stops at once)."""
    B, K = plan.next.shape
    at = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,)).copy()
    rows = np.arange(B)
    total = np.zeros(B)
    for _ in range(K):
        n = plan.next[rows, at]
        moving = n != STOP
        if not moving.any():
            break
        total[moving] += cost[rows[moving], at[moving], n[moving]]
        at = np.where(moving, n, at)
    return total
