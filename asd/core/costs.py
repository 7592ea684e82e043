"""The cost model: measured per-stage latencies and the DP's transition costs c_{j→m}(x).

See docs/algorithm.md (sections Decision and Costs).

Terms.
- *Prefill* of stage m over n tokens: one forward pass, ``prefill.slope·n + prefill.intercept`` seconds
  (measured at batch 1; a batched pass over b prompts of n tokens is priced as one pass over b·n tokens).
  Verification of a draft is a prefill over prompt + draft.
- *Decode step* of stage m at batch size b: ``decode.slope·b + decode.intercept`` seconds per step
  (the KV length fixed at the profiler's ``decode_context``); one step advances all b sequences.
- *Overhead*: fixed seconds per call of a stage (scheduling, sampling, bookkeeping).

Every price is an input's **share of a batched call** of b inputs like it (b = ``CostModel.batch_size``):
the call's seconds divided by b, the currency the evaluation measures per-sample latency in (docs/analysis.md,
"Latency") and the way ``asd.analysis.calls.price_calls`` prices a recorded call (prefill over all the call's
tokens, then its steps at the call's batch size). The latency of stage m answering an input alone (prompt of p
tokens, response of n tokens)::

    L_m(p, n) = [ prefill_m(b·p) + n · step_m(b) + overhead_m ] / b

and the cost of moving from stage j (holding draft y_j, |y_j| tokens) to stage m > j::

    c_{j→m}(x) = [ prefill_m(b·(p + |y_j|)) + (1 − â_{j,m}) · |y_j| · step_m(b) + overhead_m ] / b / L_{K−1}(p, |y|)

i.e. one teacher-forced pass of M_m over prompt + draft, then decoding the expected rejected suffix,
normalised by the final model's own latency for this input (so 1.0 = running M_{K−1} alone). |y| in
the normaliser is |y_0| (known from the first stage on), so the unit is fixed for an input across the
receding-horizon re-plans. Costs are dimensionless. At b = 1 the share is the call itself. Pricing the
prefill at batch 1 but the decode step at batch b (as this module did before) weighs decoding b times too
heavily against verification: on the testbed's CPU table (b = 16) it priced s3's check of a 20-token draft at
0.08 of s3 answering alone, 0.63 in batch shares (docs/dp.md, "Costs").

Serialisation: ``CostModel.to_dict()`` / ``CostModel.from_dict()`` (schema version, provenance); files
are read and written by the adapter ``asd.costs_io``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asd.config_loader import from_dict as _strict_from_dict
from asd.config_loader import to_dict as _to_dict

SCHEMA_VERSION = 1  # of CostModel.to_dict(); readers refuse other versions


def fit_linear(
    x: np.ndarray,  # [n] regressor (tokens, or batch size)
    y: np.ndarray,  # [n] measured seconds
) -> tuple[float, float, float]:
    """Least-squares line ``y ≈ slope·x + intercept``: returns ``(slope, intercept, residual_std)``.

    ``residual_std = sqrt(Σ residual² / (n − 2))`` (0.0 when n == 2: a line through two points).
    Example: x = [1, 2, 3], y = [3, 5, 7] → (2.0, 1.0, 0.0).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError(f"x needs at least 2 distinct values to fit a line, got {x.tolist()}")
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    slope = float((dx * (y - ym)).sum() / (dx * dx).sum())
    intercept = float(ym - slope * xm)
    res = y - (slope * x + intercept)
    dof = x.size - 2
    residual_std = float(math.sqrt((res * res).sum() / dof)) if dof > 0 else 0.0
    return slope, intercept, residual_std


@dataclass(frozen=True)
class LinearFit:
    """``seconds = slope·x + intercept``, with the spread of the residuals of the fit (seconds)."""

    slope: float
    intercept: float
    residual_std: float = 0.0
    n: int = 0  # number of points fitted (0 = set by hand)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> LinearFit:
        slope, intercept, std = fit_linear(x, y)
        return cls(slope, intercept, std, int(np.asarray(x).size))

    def __call__(self, x):  # x: scalar or array → seconds, same shape
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


@dataclass(frozen=True)
class StageCost:
    """The measured latency model of one stage."""

    name: str
    prefill: LinearFit  # seconds of one forward pass vs tokens (batch 1)
    decode: LinearFit  # seconds per decode step vs batch size
    overhead_s: float = 0.0  # fixed seconds per call of this stage

    def __post_init__(self) -> None:
        if not (self.overhead_s >= 0):
            raise ValueError(f"stage {self.name!r}: overhead_s must be >= 0, got {self.overhead_s}")

    def step_s(self, batch: int) -> float:
        """Seconds per decode step at batch size ``batch``."""
        return float(self.decode(batch))

    def latency_s(self, prompt_len, out_len, batch: int = 1):
        """One input's share of a batched call of ``batch`` inputs like it (seconds; arrays broadcast):
        L(p, n) = [prefill(batch·p) + n·step(batch) + overhead] / batch (module docstring)."""
        b = float(batch)
        p = np.asarray(prompt_len, np.float64)
        return (self.prefill(b * p) + np.asarray(out_len, np.float64) * self.step_s(batch) + self.overhead_s) / b


@dataclass(frozen=True)
class CostModel:
    """Per-stage latency models (smallest stage first) and where they were measured."""

    stages: tuple[StageCost, ...]
    batch_size: int = 1  # decode batch size the costs are evaluated at
    provenance: dict[str, Any] = field(default_factory=dict)  # hardware, software, git revision, config

    def __post_init__(self) -> None:
        if len(self.stages) < 1:
            raise ValueError("a cost model needs at least one stage")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def to_dict(self) -> dict:
        """JSON-safe dict with ``schema_version`` (file I/O: ``asd.costs_io``)."""
        return {"schema_version": SCHEMA_VERSION, **_to_dict(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> CostModel:
        """Strict inverse of :meth:`to_dict`; refuses another schema version, unknown or missing keys."""
        if not isinstance(data, dict):
            raise ValueError(f"{source or 'cost model'}: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{source or 'cost model'}: schema_version {version!r}; this asd reads "
                f"version {SCHEMA_VERSION} (re-run the profiler)"
            )
        return _strict_from_dict(cls, data, source=source)

    def latency_s(self, stage: int, prompt_len, out_len):
        """Seconds for stage ``stage`` to answer alone (broadcasts over arrays)."""
        return self.stages[stage].latency_s(prompt_len, out_len, self.batch_size)

    def relative_latency(self, stage: int, prompt_len, out_len) -> np.ndarray:
        """L_stage / L_{K−1} per input (e.g. the normalised cost of stage 0's own draft)."""
        return np.asarray(
            self.latency_s(stage, prompt_len, out_len) / self.latency_s(self.num_stages - 1, prompt_len, out_len),
            dtype=np.float64,
        )


def transition_costs(
    prompt_len: np.ndarray,  # [B] int, prompt tokens
    draft_len: np.ndarray,  # [B, K] int, |y_j| (unrun stages: the latest known length)
    accept_mean: np.ndarray,  # [B, K, K] â_{j,m} ∈ [0, 1], expected accepted fraction of y_j by M_m
    model: CostModel,
) -> np.ndarray:  # [B, K, K] float64 c_{j→m}, inf where m <= j
    """The normalised transition costs of the module docstring, for every (j, m > j).

    Entries of ``accept_mean`` with m <= j are not read. Worked example (K = 2, batch 1): stage 1 with
    prefill 1 ms/token + 0 and 10 ms/step, no overheads; p = 100, |y_0| = 50, â_{0,1} = 0.8 →
    numerator 0.150 + 0.2·50·0.010 = 0.25 s, L_1 = 0.100 + 50·0.010 = 0.6 s, c_{0→1} = 0.4167.
    The same at batch 4 (step 10 ms at any batch): numerator (0.600 + 0.100)/4, L_1 = (0.400 + 0.500)/4,
    c_{0→1} = 0.7778: the verify pass weighs as much per input, the shared decode steps four times less.
    """
    prompt_len = np.asarray(prompt_len)
    draft_len = np.asarray(draft_len)
    accept_mean = np.asarray(accept_mean)
    K = model.num_stages
    if prompt_len.ndim != 1:
        raise ValueError(f"prompt_len must have shape [B], got shape {prompt_len.shape}")
    B = prompt_len.shape[0]
    if draft_len.shape != (B, K):
        raise ValueError(
            f"draft_len must have shape [B, K]=({B}, {K}) (K from the cost model), got shape {draft_len.shape}"
        )
    if accept_mean.shape != (B, K, K):
        raise ValueError(f"accept_mean must have shape [B, K, K]=({B}, {K}, {K}), got shape {accept_mean.shape}")
    if (prompt_len < 0).any() or (draft_len < 0).any():
        raise ValueError("prompt_len and draft_len must be >= 0")
    upper = np.triu(np.ones((K, K), dtype=bool), k=1)
    a_up = accept_mean[:, upper]
    if not np.all((a_up >= 0) & (a_up <= 1)):
        raise ValueError("accept_mean must be in [0, 1] above the diagonal (â_{j,m}, m > j); found NaN or outside")

    p = prompt_len.astype(np.float64)
    y = draft_len.astype(np.float64)
    final = model.stages[K - 1]
    norm = final.latency_s(p, y[:, 0], model.batch_size)  # [B] seconds
    if not np.all(norm > 0):
        raise ValueError("the final stage's latency must be > 0 for every input (check the cost model and lengths)")
    cost = np.full((B, K, K), np.inf)
    for m in range(1, K):
        st = model.stages[m]
        for j in range(m):
            # a move is M_m answering prompt + draft with the rejected suffix left to decode: the same batch share
            secs = st.latency_s(p + y[:, j], (1.0 - accept_mean[:, j, m]) * y[:, j], model.batch_size)
            cost[:, j, m] = secs / norm
    return cost


def recorded_move_s(
    verify_s: np.ndarray,  # [n] s: M_m's verification share of y_j, per sample
    gen_s: np.ndarray,  # [n] s: M_m's generation share, per sample
    accepted: np.ndarray,  # [n] tokens of y_j that M_m accepts
    draft_len: np.ndarray,  # [n] |y_j| tokens
) -> np.ndarray:  # [n] float64 s
    """A move j → m priced from recorded per-sample shares (replay, full traces): M_m's verification pass plus
    the unaccepted fraction of its generation, 1 − a_{j,m} / max(|y_j|, 1)."""
    frac = np.asarray(accepted, np.float64) / np.maximum(np.asarray(draft_len), 1)
    return np.asarray(verify_s, np.float64) + (1.0 - frac) * np.asarray(gen_s, np.float64)
