"""How good must the predictor be? A served predictor sharpened by calibrated, label-informed evidence.

The study's dp policy stops where the predictor is confident; the oracle (which knows every stage's outcome)
bounds what any predictor can reach. Between the two, ``InformedPredictor`` adds to the served predictor's
r̂ an independent piece of evidence about the true outcome r_m = [y_m == y_{K−1}] of a controlled strength
μ, combined by Bayes' rule, so the result stays calibrated while it discriminates better as μ grows:

    z_m = μ · (r_m − ½) + ε,   ε ~ N(0, 1)           (one draw per prompt and stage m, fixed by a seed)
    log-likelihood ratio of z_m:  log N(z; μ/2, 1) − log N(z; −μ/2, 1) = μ · z_m
    logit r̂'_m = logit r̂_m + μ · z_m                 (every ensemble draw shifted alike)

μ = 0 is the served predictor; μ → ∞ approaches the oracle. The evidence alone has AUC Φ(μ/√2); what the
combination reaches is measured (``asd.predictor.metrics.auc``), not assumed. The evidence is independent of
the features given r_m, so r̂' is calibrated when r̂ is; that is what makes the sweep a statement about
*discrimination*: at which AUC does dp at λ reach a given speed at a given loss (docs/evaluation.md, "What the
target needs").

Pure numpy; the full-trace files and the cascade's loop are read by the driver
(``scripts/predictor_headroom.py``, which replays decisions with ``asd.evaluation.replay.simulate``).
"""

from __future__ import annotations

import numpy as np

from asd.core.costs import recorded_move_s

_EPS = 1e-6


def evidence(outcome: np.ndarray, mu: float, seed: int) -> np.ndarray:
    """[N, K] float64 log-likelihood ratios μ·z of the evidence about ``outcome`` [N, K] (bool r_m), seeded.

    The last column (the final stage, r = 1 by definition) is 0: nothing to learn there.
    """
    y = np.asarray(outcome)
    if y.ndim != 2 or y.shape[1] < 2:
        raise ValueError(f"outcome must have shape [N, K] with K >= 2, got {y.shape}")
    if not (np.isfinite(mu) and mu >= 0):
        raise ValueError(f"mu must be finite and >= 0, got {mu}")
    rng = np.random.default_rng([seed, 0x4845])
    noise = rng.standard_normal(y.shape)  # drawn for every μ alike: a larger μ sharpens the same draws
    z = mu * (y.astype(np.float64) - 0.5) + noise
    llr = mu * z
    llr[:, -1] = 0.0
    return llr


def sharpen(r: np.ndarray, llr: np.ndarray) -> np.ndarray:
    """r [B, S, K] draws of r̂, llr [B, K] → σ(logit r̂ + llr) (the last column stays 1)."""
    r = np.asarray(r, np.float64)
    llr = np.asarray(llr, np.float64)
    if r.ndim != 3 or llr.shape != (r.shape[0], r.shape[2]):
        raise ValueError(f"r must be [B, S, K] and llr [B, K]; got {r.shape} and {llr.shape}")
    p = np.clip(r, _EPS, 1 - _EPS)
    out = 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p) + llr[:, None, :])))
    out[:, :, -1] = 1.0
    return out


class InformedPredictor:
    """The ``Predictor`` protocol over a base predictor and the evidence of one batch's rows.

    ``llr`` [N, K] is aligned with the rows of the feature record the cascade's loop passes to
    ``predict_rows`` (one batch): row i's draws get ``llr[i]``. Plain ``predict`` (features without rows)
    cannot know whose evidence to add and raises.
    """

    reads_features = True

    def __init__(self, base, llr: np.ndarray):
        self.base = base
        self.llr = np.asarray(llr, np.float64)
        self.num_draws = int(base.num_draws)

    def predict(self, features: np.ndarray, stage: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError("InformedPredictor needs the record's rows: call predict_rows (the cascade's loop does)")

    def predict_rows(
        self,
        record: np.ndarray,  # [N, K, F] float32 feature record of the batch
        rows: np.ndarray,  # [L] int64 rows to predict
        stage: np.ndarray,  # [L] int64 their stage
        K: int,
    ) -> tuple[np.ndarray, np.ndarray]:  # r [L, S, K], accept [L, K, K]
        rows = np.asarray(rows)
        if self.llr.shape != (record.shape[0], K):
            raise ValueError(f"llr has shape {self.llr.shape}; the record has {record.shape[0]} rows and K={K}")
        fn = getattr(self.base, "predict_rows", None)
        if fn is not None:
            r, acc = fn(record, rows, stage, K)
        else:
            r, acc = self.base.predict(np.nan_to_num(record[rows, stage]), stage, K)
        return sharpen(r, self.llr[rows]), acc


def start_stage_routes(
    r_start: np.ndarray,  # [N] r̂_m: P(y_m == y_{K-1}) from stage m's features as a first stage
    tau: float,  # escalate to the final stage iff r̂_m < tau
    gen_s: np.ndarray,  # [N, K] s: each stage's generation share per prompt
    verify_s: np.ndarray,  # [N, K, K] s: M_j's verification of y_i, per prompt (i < j)
    draft_len: np.ndarray,  # [N, K] tokens of y_k
    accepted_len: np.ndarray,  # [N, K, K] tokens of y_i that M_j accepts
    m: int,  # the start stage, 0 <= m < K - 1
) -> tuple[np.ndarray, np.ndarray]:  # final stage [N] int64, cost [N] s
    """A two-step policy family: start at stage m (no cheaper draft), stop there when r̂_m ≥ tau, else let the
    final stage verify y_m and finish it. Priced like the cascade's replay: the start stage's generation, then
    the verification plus the unaccepted fraction of the final stage's generation."""
    r = np.asarray(r_start, np.float64)
    K = gen_s.shape[1]
    if not 0 <= m < K - 1:
        raise ValueError(f"start stage must be in 0..{K - 2}, got {m}")
    if not (np.isfinite(tau) and 0.0 <= tau <= 1.0):
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    if r.shape != (gen_s.shape[0],):
        raise ValueError(f"r_start must be [N] with N = {gen_s.shape[0]}, got {r.shape}")
    up = r < tau  # [N] escalated
    check = recorded_move_s(verify_s[:, m, K - 1], gen_s[:, K - 1], accepted_len[:, m, K - 1], draft_len[:, m])
    cost = gen_s[:, m] + up * check
    return np.where(up, K - 1, m).astype(np.int64), cost


def root_oracle_pick(
    score_a: np.ndarray,  # [N] task score of route a (e.g. dp from s0)
    cost_a: np.ndarray,  # [N] s
    score_b: np.ndarray,  # [N] task score of route b (e.g. start at s2)
    cost_b: np.ndarray,  # [N] s
) -> np.ndarray:  # [N] bool: take route b
    """An upper bound on choosing between two routes per input before any stage runs: the route that scores
    higher, and the cheaper one where they score alike. No decision made from the prompt can do better."""
    sa, sb = np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)
    return (sb > sa) | ((sb == sa) & (np.asarray(cost_b) < np.asarray(cost_a)))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Coefficients [D] of an L2-regularised logistic regression of y [n] in {0, 1} on X [n, D] (Newton steps)."""
    beta = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (p - y) + l2 * beta
        hess = (X * (p * (1.0 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta
