"""The quality predictor's interface (docs/algorithm.md#predictor) and a prior predictor that needs no training.

A predictor maps stage-k features to, for every stage m:

- ``r`` [B, S, K]: S draws (deep-ensemble members or MC-dropout passes) of
  r̂_m(x) = P(stage m's output equals the final stage's output); column K−1 is 1;
- ``accept`` [B, K, K]: â_{k,m}(x), the expected fraction of y_k that M_m accepts.

The trained MLP ensemble (``asd.core.mlp.MLPPredictor``, docs/predictor.md) implements the same
``predict``; the cascade only sees this protocol. A predictor whose ``predict`` reads only
``features.shape[0]`` may say so with ``reads_features = False``: the cascade then skips gathering
the features for it (a predictor without the attribute gets them). A predictor with a
``predict_rows(record [N, K, F], rows [L], stage [L], K)`` method (``asd.core.mlp.MLPPredictor``) is given the
cascade's feature record and the rows instead, and reads them in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    num_draws: int

    def predict(
        self,
        features: np.ndarray,  # [B, F] float32 stage features (asd.core.features)
        stage: np.ndarray,  # [B] int stage the features come from
        K: int,
    ) -> tuple[np.ndarray, np.ndarray]:  # r [B, S, K], accept [B, K, K]
        ...


@dataclass
class PriorPredictor:
    """Input-independent prior: r̂_m = ``r_prior[m]`` and â_{k,m} = ``accept_prior`` for every input.

    With the defaults (r̂ = 0.5 before the last stage) the DP at λ = ∞ routes every
    input to the last stage by the cheapest route, and at small λ stops early;
    the baselines that need no predictor (single, fixed depth, speculative,
    random, oracle) ignore it.
    """

    r_prior: tuple[float, ...] | None = None  # [K] or None → 0.5 everywhere but the last stage
    accept_prior: float = 0.7
    num_draws: int = 1
    # predict() reads only features.shape[0]: the cascade may skip gathering the features for it
    reads_features = False

    def predict(self, features: np.ndarray, stage: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """r [B, S, K] float64, accept [B, K, K] float64: read-only arrays, cached per (B, K) and prior values.

        The prior does not depend on the input, so the cascade's repeated decisions at one batch size reuse
        the same two arrays (building them was ~6 µs of numpy calls per decision at batch 16).
        """
        B = features.shape[0]
        key = (B, K, None if self.r_prior is None else tuple(self.r_prior), self.accept_prior, self.num_draws)
        hit = self.__dict__.get("_cache")
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        r = np.full(K, 0.5) if self.r_prior is None else np.asarray(self.r_prior, dtype=np.float64)
        if r.shape != (K,):
            raise ValueError(f"r_prior must have K={K} entries, got {r.shape[0]}")
        r = r.copy()
        r[-1] = 1.0
        rr = np.broadcast_to(r, (B, self.num_draws, K)).copy()
        acc = np.full((B, K, K), self.accept_prior, dtype=np.float64)
        rr.flags.writeable = False
        acc.flags.writeable = False
        self.__dict__["_cache"] = (key, rr, acc)
        return rr, acc
