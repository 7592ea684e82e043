"""One cascade decision, pure numpy: features → predictor → costs → policy (docs/cascade.md, "The decision").

``Decider.decide`` is what the cascade calls after a stage has run for some samples: it reads those samples'
stage features from the cascade's record, asks the predictor for r̂ [L, S, K] and â [L, K, K], prices the
transitions (the measured cost model, or the proxy of ``asd.core.routing``) and returns the policy's ``Plan``.
Policy ``dp`` on the proxy costs takes one fused compiled call, ``decide_proxy_dp`` (``asd._C.proxy_dp``),
bit-identical to its twin ``decide_proxy_dp_ref`` = ``proxy_costs_ref`` → ``asd.core.dp.solve_ref``; with the
learned predictor (``MLPPredictor`` with its compiled forward pass) the forward pass joins that call,
``decide_mlp_proxy_dp`` (``asd._C.mlp_proxy_dp``), twin ``decide_mlp_proxy_dp_ref`` = ``mlp_forward_ref`` →
``decide_proxy_dp_ref``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asd._ext import get_ext
from asd.core.costs import CostModel, transition_costs
from asd.core.dp import Plan, PolicyConfig, solve_ref
from asd.core.features import FEATURE_NAMES, NUM_FEATURES
from asd.core.mlp import MLPPredictor, MLPWeights, mlp_forward_ref
from asd.core.policies import CONFIDENCE_FEATURE, decide
from asd.core.predictor import Predictor, PriorPredictor
from asd.core.routing import proxy_costs, proxy_costs_ref

# purposes of derive_seed: which random stream of a (sample, stage) a seed feeds
SEED_GENERATE, SEED_ACCEPT, SEED_REGENERATE, SEED_POLICY, SEED_DRAFTER = 0, 1, 2, 3, 4


def derive_seed(run_seed: int, sample_id: int, stage: int, purpose: int) -> int:
    """A 32-bit seed for one random stream of one sample at one stage: the same for every batching of a run."""
    return int(
        np.random.SeedSequence([run_seed & 0xFFFFFFFF, int(sample_id) & 0xFFFFFFFF, stage, purpose]).generate_state(1)[
            0
        ]
    )


def decide_proxy_dp(
    prompt_len: np.ndarray,  # [N] tokens (read at rows; [B] without rows)
    responses: Sequence[np.ndarray],  # N current responses (only their lengths are read)
    accept_mean: np.ndarray,  # [B, K, K] float64 â_{j,m}
    size: np.ndarray,  # [K] relative cost per stage
    r: np.ndarray,  # [B, S, K] float32/float64 predictions
    current: np.ndarray,  # [B] int64 current stage
    lam: float,
    kappa: float = 0.0,
    prefill_ratio: float = 0.05,
    rows: np.ndarray | None = None,  # [B] int64: the samples decided (default: all N = B)
    predictions: np.ndarray | None = None,  # [N, K, K] float32: gets r.mean(1) at [rows, current]
) -> Plan:
    """Policy ``dp`` on the proxy costs: ``decide_proxy_dp_ref`` in one compiled call (``asd._C.proxy_dp``).

    The same plan, bit for bit, as ``proxy_costs`` → ``asd.core.policies.decide`` (the kernel repeats the
    proxy-cost arithmetic and shares dp.cpp's per-sample DP, csrc/dp_sample.h; tests/core/test_decision.py),
    without their two Python→C transitions, two sets of checks, the [B, K, K] cost array and the gathers of
    the live rows. Falls back to the twin without ``asd._C``.
    """
    kernel = getattr(get_ext(), "proxy_dp", None)
    if kernel is None:
        return decide_proxy_dp_ref(
            prompt_len, responses, accept_mean, size, r, current, lam, kappa, prefill_ratio, rows, predictions
        )
    return Plan(
        *kernel(
            prompt_len, responses, accept_mean, size, prefill_ratio, r, current, lam, kappa, None, rows, predictions
        )
    )


def decide_proxy_dp_ref(
    prompt_len: np.ndarray,
    responses: Sequence[np.ndarray],
    accept_mean: np.ndarray,
    size: np.ndarray,
    r: np.ndarray,
    current: np.ndarray,
    lam: float,
    kappa: float = 0.0,
    prefill_ratio: float = 0.05,
    rows: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
) -> Plan:
    """The readable twin of ``decide_proxy_dp``: ``proxy_costs_ref`` then ``asd.core.dp.solve_ref``."""
    rows = np.arange(len(responses)) if rows is None else np.asarray(rows, np.int64)
    r, current = np.asarray(r), np.asarray(current)
    if predictions is not None:
        predictions[rows, current] = r.mean(1)
    resp_len = np.array([len(responses[i]) for i in rows.tolist()], dtype=np.int64)
    cost = proxy_costs_ref(np.asarray(prompt_len)[rows], resp_len, accept_mean, size, prefill_ratio)
    return solve_ref(r, cost, current, lam, kappa)


def decide_mlp_proxy_dp(
    predictor: MLPPredictor,
    features: np.ndarray,  # [N, K, F] float32 the cascade's feature record, read at [rows, current]
    prompt_len: np.ndarray,  # [N] tokens
    responses: Sequence[np.ndarray],  # N current responses (only their lengths are read)
    rows: np.ndarray,  # [B] int64 the samples decided
    current: np.ndarray,  # [B] int64 their current stage
    size: np.ndarray,  # [K] relative cost per stage
    lam: float,
    kappa: float = 0.0,
    prefill_ratio: float = 0.05,
    predictions: np.ndarray | None = None,  # [N, K, K] float32: gets r.mean(1) at [rows, current]
) -> Plan:
    """``predictor.predict_rows(features, rows, current, K)`` → ``decide_proxy_dp(..., rows=rows)`` in one compiled
    call (``asd._C.mlp_proxy_dp``): the same plan and predictions' record, bit for bit, without the two [B, S, K] /
    [B, K, K] arrays and one Python→C transition (tests/core/test_decision.py). Without ``asd._C`` (or a predictor
    whose ``compiled`` is None) it runs those two calls."""
    kernel = getattr(get_ext(), "mlp_proxy_dp", None)
    model = predictor.compiled
    if kernel is None or model is None:
        r, acc = predictor.predict_rows(features, rows, current, features.shape[1])
        return decide_proxy_dp(
            prompt_len, responses, acc, size, r, current, lam, kappa, prefill_ratio, rows, predictions
        )
    return Plan(
        *kernel(model, features, prompt_len, responses, rows, current, size, prefill_ratio, lam, kappa, predictions)
    )


def decide_mlp_proxy_dp_ref(
    weights: MLPWeights,
    features: np.ndarray,
    prompt_len: np.ndarray,
    responses: Sequence[np.ndarray],
    rows: np.ndarray,
    current: np.ndarray,
    size: np.ndarray,
    lam: float,
    kappa: float = 0.0,
    prefill_ratio: float = 0.05,
    predictions: np.ndarray | None = None,
) -> Plan:
    """The readable twin of ``decide_mlp_proxy_dp``: ``mlp_forward_ref`` on the gathered rows, then
    ``decide_proxy_dp_ref`` (equal within 1e-6: the forward passes are, tests/core/test_mlp.py)."""
    if features.shape[1] != weights.K:
        raise ValueError(f"the predictor was trained for K={weights.K} stages; the cascade has K={features.shape[1]}")
    rows, current = np.asarray(rows, np.int64), np.asarray(current, np.int64)
    r, acc = mlp_forward_ref(weights, features[rows, current], current)
    return decide_proxy_dp_ref(
        prompt_len, responses, acc, size, r, current, lam, kappa, prefill_ratio, rows, predictions
    )


_CONFIDENCE_COLUMN = FEATURE_NAMES.index(CONFIDENCE_FEATURE)


class RowCount:
    """Stands in for the [L, F] features given to a predictor that reads only their number of rows."""

    __slots__ = ("shape",)

    def __init__(self, n: int):
        self.shape = (n, NUM_FEATURES)


class Decider:
    """The decision path of one cascade: a predictor, a policy and a way to price transitions.

    sizes: [K] relative cost per stage (parameter counts), used by the proxy costs when ``cost_model`` is None.
    """

    def __init__(
        self,
        policy: PolicyConfig,
        K: int,
        sizes: np.ndarray,
        predictor: Predictor | None = None,
        cost_model: CostModel | None = None,
    ):
        if cost_model is not None and cost_model.num_stages != K:
            raise ValueError(f"the cost model has {cost_model.num_stages} stages; the hierarchy has K={K}")
        self.policy, self.K, self.sizes = policy, K, np.asarray(sizes, np.float64)
        self.predictor: Predictor = predictor or PriorPredictor()
        self.cost_model = cost_model

    def decide(
        self,
        features: np.ndarray,  # [N, K, F] float32 the batch's feature record (NaN: not run)
        prompt_len: np.ndarray,  # [N] int tokens
        responses: Sequence[np.ndarray],  # N current responses (their lengths are read)
        live: np.ndarray,  # [L] int64 rows to decide
        current: np.ndarray,  # [L] int64 their current stage
        sample_ids: np.ndarray,  # [N] int64 (seeds the random policy)
        predictions: np.ndarray,  # [N, K, K] float32 record: gets r̂ mean at [live, current]
        outcome: np.ndarray | None = None,  # [N, K] bool, policy "oracle" only
    ) -> Plan:
        K, pred, policy = self.K, self.predictor, self.policy
        if policy.name == "dp":
            if self.cost_model is None and policy.skips and getattr(pred, "compiled", None) is not None:
                # MLPPredictor: forward pass, proxy costs, DP and the predictions' record in one compiled call
                return decide_mlp_proxy_dp(
                    pred,  # type: ignore[arg-type]
                    features,
                    prompt_len,
                    responses,
                    live,
                    current,
                    self.sizes,
                    policy.lam,
                    policy.kappa,
                    predictions=predictions,
                )
        elif policy.name == "confidence":  # no predictor: the current stage's own confidence against τ
            conf = features[live, current, _CONFIDENCE_COLUMN]
            return decide(policy, current, K, confidence=conf)
        rows_fn = getattr(pred, "predict_rows", None)
        if rows_fn is not None:  # e.g. MLPPredictor: reads the record in place, non-finite features → ValueError
            r, acc = rows_fn(features, live, current, K)  # [L, S, K], [L, K, K]
        elif getattr(pred, "reads_features", True):
            r, acc = pred.predict(np.nan_to_num(features[live, current]), current, K)  # [L, S, K], [L, K, K]
        else:  # e.g. PriorPredictor: only the batch size matters (skips a gather and nan_to_num, ~10 µs)
            r, acc = pred.predict(RowCount(live.size), current, K)  # type: ignore[arg-type]
        if policy.name == "dp" and self.cost_model is None and policy.skips:
            # proxy costs, the DP and the predictions' record in one compiled call
            return decide_proxy_dp(
                prompt_len,
                responses,
                acc,
                self.sizes,
                r,
                current,
                policy.lam,
                policy.kappa,
                rows=live,
                predictions=predictions,
            )
        predictions[live, current] = r.mean(1)
        plen = prompt_len[live]
        L = np.array([len(responses[i]) for i in live])
        if self.cost_model is not None:
            cost = transition_costs(plen, np.repeat(L[:, None], K, 1), acc, self.cost_model)
        else:
            cost = proxy_costs(plen, L, acc, self.sizes)
        # only "random" draws (seeding a generator is ~20 µs: not on every decision of the other policies)
        rng = (
            np.random.default_rng(derive_seed(policy.seed, int(sample_ids[live[0]]), int(current[0]), SEED_POLICY))
            if policy.name == "random"
            else None
        )
        oc = None if outcome is None else np.asarray(outcome)[live]
        return decide(policy, current, K, r=r, cost=cost, outcome=oc, rng=rng)
