"""Baseline policies beside the DP (docs/algorithm.md), as pure functions returning a :class:`~asd.core.dp.Plan`.

Every policy returns the same shape of answer as the DP, so the cascade runs them in the same loop:

- ``plan.next [B, K] int64``: the planned move at every node j (``STOP`` or a stage m > j), i.e. the
  route from any stage;
- ``plan.action [B] int64``: ``next[b, current[b]]``, what to do now;
- ``plan.value [B, K] float64``: NaN from the policy itself; :func:`with_values` fills it with the
  value of *following this route* under the DP's objective (λ·ℓ̃ at the stopping stage + the costs
  on the way), so a baseline's value can be compared with the DP's (the DP's is never larger).

The policies (names as in ``PolicyConfig.name``):

=============== ============================================================================
``single``      model k alone. As a route: any stage j < k jumps straight to k, k stops. (The
                cascade runs ``single`` by starting at stage k, with no draft.)
``fixed_depth`` go through every stage up to k in order (j → j+1), stop at k.
``threshold``   stop at j when the mean predicted r̂_j > τ, else go to j+1; the last stage stops.
``confidence``  no predictor: stop at j when the stage's own confidence (the mean top-1 probability of
                its response, feature ``maxprob_mean``) ≥ τ, else go to j+1; the last stage stops.
``speculative`` two-model speculative decoding: any j < K−1 jumps to the final stage K−1.
``random``      draw a final stage t ≥ current from a histogram (e.g. the DP's), jump to it, stop.
``oracle``      knows the outcomes o_k ∈ {0,1} (stage k's output == final): the DP with r = o, S = 1,
                κ = 0, i.e. the minimum over routes of λ·(1 − o_t) + route cost (a lower bound).
``dp``          :func:`asd.core.dp.solve`.
=============== ============================================================================
"""

from __future__ import annotations

import math

import numpy as np

from asd.core.dp import STOP, Plan, PolicyConfig, forbid_skips, risk_adjusted_loss, solve


def _stage(stage: int, K: int, what: str) -> int:
    k = stage + K if stage < 0 else stage
    if not 0 <= k < K:
        raise ValueError(f"{what} must be in 0..{K - 1} (or -1 for the last stage), got {stage}")
    return k


def _current(current, K: int) -> np.ndarray:
    current = np.asarray(current)
    if current.ndim != 1 or not np.issubdtype(current.dtype, np.integer):
        raise ValueError(f"current must be a [B] integer array, got shape {current.shape}, dtype {current.dtype}")
    if current.size and (current.min() < 0 or current.max() >= K):
        raise ValueError(f"current must hold stages in 0..{K - 1}")
    return current.astype(np.int64)


def _plan(nxt: np.ndarray, current: np.ndarray) -> Plan:
    """Plan from a route ``nxt [B, K]`` (value left NaN)."""
    B, K = nxt.shape
    return Plan(action=nxt[np.arange(B), current], value=np.full((B, K), np.nan), next=nxt)


def single_model(current: np.ndarray, K: int, stage: int = -1) -> Plan:
    """Model ``stage`` alone (-1 = the last): j < stage → stage; j ≥ stage → STOP."""
    current = _current(current, K)
    k = _stage(stage, K, "stage")
    row = np.where(np.arange(K) < k, k, STOP)
    return _plan(np.tile(row, (current.size, 1)).astype(np.int64), current)


def fixed_depth(current: np.ndarray, K: int, depth: int = -1) -> Plan:
    """Every stage up to ``depth`` in order: j < depth → j+1; j ≥ depth → STOP."""
    current = _current(current, K)
    k = _stage(depth, K, "depth")
    j = np.arange(K)
    row = np.where(j < k, j + 1, STOP)
    return _plan(np.tile(row, (current.size, 1)).astype(np.int64), current)


def speculative(current: np.ndarray, K: int) -> Plan:
    """Two-model speculative decoding, stage 0 → final: every j < K−1 jumps to K−1."""
    return single_model(current, K, K - 1)


def threshold(
    r: np.ndarray,  # [B, S, K] or [B, K] predicted P(stage k's output == final)
    current: np.ndarray,  # [B] int
    tau: float,  # stop when the mean r̂_j > τ
) -> Plan:
    """Threshold cascade: at j stop if mean_s r̂_j > τ, else go to j+1; the last stage stops."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim == 2:
        r = r[:, None, :]
    if r.ndim != 3:
        raise ValueError(f"r must have shape [B, S, K] or [B, K], got shape {r.shape}")
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    B, _, K = r.shape
    current = _current(current, K)
    if current.size != B:
        raise ValueError(f"current has {current.size} entries but r has B={B}")
    rbar = r.mean(axis=1)  # [B, K]
    j = np.arange(K)
    nxt = np.where((rbar > tau) | (j == K - 1), STOP, j + 1).astype(np.int64)
    return _plan(nxt, current)


CONFIDENCE_FEATURE = "maxprob_mean"  # the feature policy "confidence" reads (asd.core.features.FEATURE_NAMES)


def confidence_threshold(
    conf: np.ndarray,  # [B] float: confidence of each input's current response (mean top-1 probability)
    current: np.ndarray,  # [B] int: the stage that produced it
    K: int,
    tau: float,  # stop when conf >= τ
) -> Plan:
    """Confidence cascade without a predictor: stop at ``current`` if ``conf ≥ τ``, else go to ``current + 1``.

    Only the current stage's confidence is known, so from every other node j the route goes on to j+1 (the
    cascade re-plans with the next stage's own confidence once it has run); the last stage stops. NaN (no
    confidence) never stops. Example (K = 3, τ = 0.8): conf [0.9, 0.5], current [0, 0] → actions [STOP, 1].
    """
    conf = np.asarray(conf, dtype=np.float64)
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    current = _current(current, K)
    if conf.shape != current.shape:
        raise ValueError(f"conf must have shape [B]=({current.size},) like current, got shape {conf.shape}")
    B = current.size
    j = np.arange(K)
    nxt = np.tile(np.where(j < K - 1, j + 1, STOP), (B, 1)).astype(np.int64)
    rows = np.arange(B)
    stop = (conf >= tau) | (current == K - 1)  # NaN >= tau is False
    nxt[rows, current] = np.where(stop, STOP, nxt[rows, current])
    return _plan(nxt, current)


def random_stop(
    current: np.ndarray,  # [B] int
    histogram: np.ndarray,  # [K] weights of the final stage (e.g. the DP's stage histogram)
    rng: np.random.Generator,
) -> Plan:
    """Draw a final stage t ≥ current[b] with P(t) ∝ histogram[t]; route: jump straight to t, stop.

    Inputs whose remaining stages all have weight 0 stop where they are.
    """
    h = np.asarray(histogram, dtype=np.float64)
    if h.ndim != 1 or not np.all(h >= 0) or h.sum() <= 0:
        raise ValueError(f"histogram must be K non-negative weights with a positive sum, got {h}")
    K = h.size
    current = _current(current, K)
    B = current.size
    j = np.arange(K)
    w = np.where(j[None, :] >= current[:, None], h[None, :], 0.0)  # [B, K]
    tot = w.sum(axis=1)
    cdf = np.cumsum(w, axis=1) / np.where(tot > 0, tot, 1.0)[:, None]
    u = rng.random(B)
    t = (u[:, None] >= cdf).sum(axis=1)  # first k with u < cdf[k]
    last = K - 1 - np.argmax(w[:, ::-1] > 0, axis=1)  # last stage with weight (rounding guard)
    t = np.where(tot > 0, np.minimum(t, last), current)
    nxt = np.where(j[None, :] < t[:, None], t[:, None], STOP).astype(np.int64)
    return _plan(nxt, current)


def oracle(
    outcome: np.ndarray,  # [B, K] bool/0-1: stage k's output == the final stage's output
    cost: np.ndarray,  # [B, K, K] normalised transition costs
    current: np.ndarray,  # [B] int
    lam: float,
) -> Plan:
    """The DP on the known outcomes (S = 1, κ = 0): min over routes of λ·(1 − o_t) + cost (a lower bound)."""
    o = np.asarray(outcome, dtype=np.float64)
    if o.ndim != 2:
        raise ValueError(f"outcome must have shape [B, K], got shape {o.shape}")
    return solve(o[:, None, :], cost, current, lam, 0.0)


def stage_histogram(final_stage: np.ndarray, K: int) -> np.ndarray:
    """Fraction of inputs ending at each stage: [K] float64 from final_stage [B] int."""
    final_stage = np.asarray(final_stage, dtype=np.int64)
    if final_stage.size == 0:
        return np.zeros(K)
    return np.bincount(final_stage, minlength=K)[:K] / final_stage.size


def with_values(plan: Plan, r: np.ndarray, cost: np.ndarray, lam: float, kappa: float = 0.0) -> Plan:
    """``plan`` with ``value[b, j]`` = λ·ℓ̃ at the stage where following ``next`` from j stops + the costs on the way.

    Same terms as the DP (λ = inf: stopping before the last stage is inf), so for any route
    ``with_values(route).value >= solve(...).value``. r: [B, S, K]; cost: [B, K, K].
    """
    nxt = plan.next
    B, K = nxt.shape
    lt = risk_adjusted_loss(np.asarray(r), kappa)  # [B, K]
    stop_val = np.full((B, K), np.inf) if math.isinf(lam) else lam * lt
    stop_val[:, K - 1] = 0.0
    value = np.empty((B, K))
    rows = np.arange(B)
    for j in range(K - 1, -1, -1):  # next[j] > j, so value[:, m] is known for every m > j
        n = nxt[:, j]
        stops = n == STOP
        m = np.where(stops, j, n)
        value[:, j] = np.where(stops, stop_val[:, j], cost[rows, j, m] + value[rows, m])
    return Plan(action=plan.action, value=value, next=nxt)


def decide(
    cfg: PolicyConfig,
    current: np.ndarray,  # [B] int
    K: int,
    r: np.ndarray | None = None,  # [B, S, K] predictions (dp, threshold)
    cost: np.ndarray | None = None,  # [B, K, K] transition costs (dp, oracle)
    outcome: np.ndarray | None = None,  # [B, K] known outcomes (oracle)
    rng: np.random.Generator | None = None,  # random; default: default_rng(cfg.seed)
    confidence: np.ndarray | None = None,  # [B] the current stage's confidence (confidence)
) -> Plan:
    """Run the policy ``cfg.name`` with the inputs it needs (ValueError naming a missing one)."""

    def need(name, v):
        if v is None:
            raise ValueError(f"policy {cfg.name!r} needs {name}")
        return v

    if cfg.name == "dp":
        c = need("cost", cost)
        return solve(need("r", r), c if cfg.skips else forbid_skips(c), current, cfg.lam, cfg.kappa)
    if cfg.name == "single":
        return single_model(current, K, cfg.stage)
    if cfg.name == "fixed_depth":
        return fixed_depth(current, K, cfg.stage)
    if cfg.name == "threshold":
        return threshold(need("r", r), current, cfg.tau)
    if cfg.name == "confidence":
        return confidence_threshold(need("confidence", confidence), current, K, cfg.tau)
    if cfg.name == "speculative":
        return speculative(current, K)
    if cfg.name == "random":
        return random_stop(current, need("histogram", cfg.histogram), rng or np.random.default_rng(cfg.seed))
    if cfg.name == "oracle":
        c = need("cost", cost)
        return oracle(need("outcome", outcome), c if cfg.skips else forbid_skips(c), current, cfg.lam)
    raise AssertionError(cfg.name)  # PolicyConfig validated the name
