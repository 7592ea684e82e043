"""The learned quality predictor's forward pass: normalise → deep-ensemble MLP → calibrate (docs/predictor.md).

``MLPPredictor`` implements the ``Predictor`` protocol (asd.core.predictor) with weights trained by
``asd train-predictor`` (asd.predictor.train) and loaded by an adapter (asd.predictor.checkpoint): this module
does no file I/O and imports no torch. The forward pass runs in one compiled call (``asd._C.MLPForward``,
csrc/mlp.cpp); ``mlp_forward_ref`` is its numpy twin (equal within 1e-6: the same float32 network arithmetic,
then float64).

Shapes. F features, S ensemble members (the S draws of r), K stages, H hidden units, O = (K − 1) + P head outputs
with P = K(K − 1)/2 the stage pairs j < m in row-major order (``pair_index``).

For an input at stage k (features x [F] of stage k's response):

1. ``xn = (x − mean) · scale`` (scale = 1/std of the training rows; 1 for a constant column; 0 for a column
   left out), computed in float64 and rounded to float32;
2. each member s, in float32 (the weights were trained in float32): ``h = relu(W_l[s]ᵀ h + b_l[s])`` through the
   trunk layers (shared by every stage), then the head of stage k: ``z = head_w[k, s]ᵀ h + head_b[k, s]`` [O]
   (logits); every sum starts from the bias and adds the products in input order, one fused multiply-add each
   (``ensemble_logits_ref`` spells it out);
3. r[s, m] for k ≤ m < K − 1: ``cal_{k,m}(σ(z[m] / T[k, m]))`` where cal is the identity or, when
   ``iso_n[k, m] ≥ 2``, the piecewise-linear isotonic table ``(iso_x, iso_y)[k, m, :iso_n]`` (``np.interp``:
   clamped outside); r[s, m] = 0.5 for m < k (earlier stages: no prediction, never read by the DP for an
   input at stage k) and r[s, K − 1] = 1 (the final stage is the reference);
4. accept[j, m] for k ≤ j < m: ``σ(mean_s z[K − 1 + pair_index(j, m)])``, â_{j,m} from the members' mean logit
   (the DP's costs need one â, not draws); 0 elsewhere.

An input at stage K − 1 gets r = (0.5, …, 0.5, 1) and accept = 0 (the cascade stops there anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asd._ext import get_ext

ACTIVATION = "relu"


def pair_index(j: int, m: int, K: int) -> int:
    """Position of the stage pair (j, m), j < m, among the K(K − 1)/2 pairs in row-major order."""
    assert 0 <= j < m < K
    return j * K - j * (j + 1) // 2 + (m - j - 1)


def num_outputs(K: int) -> int:
    """O = (K − 1) r̂ logits + K(K − 1)/2 â logits per head."""
    return (K - 1) + K * (K - 1) // 2


@dataclass(frozen=True)
class MLPWeights:
    """Everything the forward pass reads (float64 arrays; checked by ``validate``)."""

    feature_names: tuple[str, ...]  # [F] the columns of the input (asd.core.features.FEATURE_NAMES)
    K: int  # stages
    mean: np.ndarray  # [F] normalisation offset
    scale: np.ndarray  # [F] normalisation factor (1 / std)
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # trunk, per layer: W [S, in, out], b [S, out]
    head_w: np.ndarray  # [K − 1, S, H, O] per-stage heads (H = the last trunk layer's width)
    head_b: np.ndarray  # [K − 1, S, O]
    temperature: np.ndarray  # [K − 1, K − 1] T[k, m] > 0 (1: none), read for k ≤ m
    iso_x: np.ndarray  # [K − 1, K − 1, Q] isotonic table abscissae (strictly increasing over :iso_n)
    iso_y: np.ndarray  # [K − 1, K − 1, Q] isotonic table ordinates in [0, 1] (non-decreasing)
    iso_n: np.ndarray  # [K − 1, K − 1] int64 knots used (< 2: no table)

    @property
    def num_members(self) -> int:
        return int(self.head_w.shape[1])

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def validate(self) -> None:
        """ValueError naming the first array whose shape, dtype or values do not fit the others."""
        K, F = self.K, self.num_features
        if K < 2:
            raise ValueError(f"K must be >= 2, got {K}")
        if not self.layers:
            raise ValueError("the trunk needs at least one layer")
        S = self.num_members
        O = num_outputs(K)
        _shape("mean", self.mean, (F,))
        _shape("scale", self.scale, (F,))
        width = F
        for i, (W, b) in enumerate(self.layers):
            if W.ndim != 3 or W.shape[:2] != (S, width):
                raise ValueError(f"layer {i} W must have shape [S, in, out]=({S}, {width}, out), got {W.shape}")
            _shape(f"layer {i} b", b, (S, W.shape[2]))
            width = W.shape[2]
        _shape("head_w", self.head_w, (K - 1, S, width, O))
        _shape("head_b", self.head_b, (K - 1, S, O))
        _shape("temperature", self.temperature, (K - 1, K - 1))
        if self.iso_x.ndim != 3 or self.iso_x.shape[:2] != (K - 1, K - 1):
            raise ValueError(f"iso_x must have shape [K-1, K-1, Q], got {self.iso_x.shape}")
        _shape("iso_y", self.iso_y, self.iso_x.shape)
        _shape("iso_n", self.iso_n, (K - 1, K - 1))
        arrays = [self.mean, self.scale, self.head_w, self.head_b, self.temperature, self.iso_x, self.iso_y]
        arrays += [a for layer in self.layers for a in layer]
        for a in arrays:
            if a.dtype != np.float64 or not np.isfinite(a).all():
                raise ValueError("every weight array must be finite float64")
        if self.iso_n.dtype != np.int64:
            raise ValueError("iso_n must be int64")
        if not (self.temperature > 0).all():
            raise ValueError("temperature must be > 0")
        Q = self.iso_x.shape[2]
        for k in range(K - 1):
            for m in range(K - 1):
                n = int(self.iso_n[k, m])
                if not 0 <= n <= Q:
                    raise ValueError(f"iso_n[{k}, {m}]={n} outside 0..Q={Q}")
                if n >= 2:
                    x, y = self.iso_x[k, m, :n], self.iso_y[k, m, :n]
                    if not (np.diff(x) > 0).all() or not (np.diff(y) >= 0).all() or y.min() < 0 or y.max() > 1:
                        raise ValueError(f"isotonic table ({k}, {m}) must be increasing in x, non-decreasing in [0, 1]")


def _shape(name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) float64 without overflow warnings: 1/(1 + e^−z) for z ≥ 0, e^z/(1 + e^z) below (csrc/mlp.cpp too)."""
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def check_features(x: np.ndarray, F: int, names: Sequence[str]) -> None:
    """ValueError for a [B, F] batch of another width or holding NaN/inf (names the first bad entry)."""
    if x.ndim != 2 or x.shape[1] != F:
        raise ValueError(f"features must have shape [B, F] with F={F} (the checkpoint's columns), got {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"features must be float32 or float64, got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        b, f = np.argwhere(bad)[0]
        raise ValueError(f"features[{b}, {f}] ({names[f]}) is {x[b, f]}: the predictor needs finite features")


def check_stage(stage: np.ndarray, B: int, K: int) -> np.ndarray:
    stage = np.asarray(stage)
    if stage.shape != (B,) or stage.dtype.kind not in "iu":
        raise ValueError(f"stage must be an integer array of shape [B]=({B},), got {stage.dtype} {stage.shape}")
    if B and (stage.min() < 0 or stage.max() >= K):
        raise ValueError(f"stage must hold stages in 0..{K - 1}, got values in [{stage.min()}, {stage.max()}]")
    return stage.astype(np.int64, copy=False)


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 a·b + c rounded once (an FMA), computed in float64: a·b of two float32 is exact there, the sum is
    rounded to float64 and then to float32 (the double rounding differs from a true FMA only when the float64
    sum falls exactly halfway between two float32: rare, and then by one float32 ulp)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def ensemble_logits_ref(
    w: MLPWeights,
    x: np.ndarray,  # [B, F] float32/float64 finite features
    stage: np.ndarray,  # [B] int stage each row's features come from
) -> np.ndarray:  # z [B, S, O] float64 head logits (rows at stage K − 1: head K − 2's, never served)
    """Steps 1–2 of the module docstring: every member's logits, before the sigmoid and the calibration.

    Arithmetic (the compiled kernel's, operation for operation): xn = float32((x − mean)·scale) from float64; the
    weights in float32; each layer starts from its bias and adds input unit c's product for c = 0, 1, … in order,
    one float32 FMA each; ReLU between trunk layers. So the kernel can keep 16 lanes per AVX-512 register.
    """
    K, S = w.K, w.num_members
    check_features(x, w.num_features, w.feature_names)
    stage = check_stage(stage, x.shape[0], K)
    B = x.shape[0]
    h = ((x.astype(np.float64) - w.mean) * w.scale).astype(np.float32)[:, None, :].repeat(S, axis=1)  # [B, S, F]
    for W, b in w.layers:
        W32 = W.astype(np.float32)  # [S, in, out]
        out = np.broadcast_to(b.astype(np.float32), (B, S, W.shape[2])).copy()
        for c in range(W.shape[1]):
            out = fma32(h[:, :, c, None], W32[None, :, c, :], out)
        h = np.maximum(out, np.float32(0))  # [B, S, out]
    hk = np.minimum(stage, K - 2)  # the head of each row
    hw = w.head_w.astype(np.float32)[hk]  # [B, S, H, O]
    z = w.head_b.astype(np.float32)[hk]  # [B, S, O]
    for c in range(hw.shape[2]):
        z = fma32(h[:, :, c, None], hw[:, :, c, :], z)
    return z.astype(np.float64)


def mlp_forward_ref(
    w: MLPWeights,
    x: np.ndarray,  # [B, F] float32/float64 finite features
    stage: np.ndarray,  # [B] int stage each row's features come from
) -> tuple[np.ndarray, np.ndarray]:  # r [B, S, K] float64, accept [B, K, K] float64
    """The numpy twin of ``MLPForward.forward``: the formulas of the module docstring, float64."""
    K, S = w.K, w.num_members
    z = ensemble_logits_ref(w, x, stage)  # [B, S, O]
    stage = np.asarray(stage)
    B = z.shape[0]
    r = np.full((B, S, K), 0.5)
    r[:, :, K - 1] = 1.0
    acc = np.zeros((B, K, K))
    for k in range(K - 1):
        rows = np.flatnonzero(stage == k)
        for m in range(k, K - 1):
            p = sigmoid(z[rows, :, m] / w.temperature[k, m])  # [R, S]
            n = int(w.iso_n[k, m])
            if n >= 2:
                p = np.interp(p, w.iso_x[k, m, :n], w.iso_y[k, m, :n])
            r[rows, :, m] = p
        for j in range(k, K - 1):
            for m in range(j + 1, K):
                acc[rows, j, m] = sigmoid(z[rows, :, K - 1 + pair_index(j, m, K)].mean(axis=1))
    return r, acc


class MLPPredictor:
    """A deep-ensemble MLP behind the ``Predictor`` protocol: S = ``num_draws`` members → r [B, S, K].

    ``predict`` checks its input (width F, finite values, stages, K) and raises ValueError naming the problem;
    ``predict_rows`` reads the rows of the cascade's ``[N, K, F]`` feature record in place (no gather, no copy)
    with the same checks. Both run the compiled forward pass (``asd._C.MLPForward``, held as ``compiled``) or,
    without ``asd._C``, ``mlp_forward_ref`` (``compiled`` is then None). The cascade's decision (policy dp on the
    proxy costs, asd.core.decision.Decider) hands ``compiled`` to ``decide_mlp_proxy_dp``, which runs the forward
    pass, the costs and the DP in one compiled call.
    """

    reads_features = True

    def __init__(self, weights: MLPWeights, stage_names: Sequence[str] | None = None):
        weights.validate()
        self.weights = weights
        self.K = weights.K
        self.num_draws = weights.num_members
        self.stage_names = None if stage_names is None else tuple(stage_names)
        if self.stage_names is not None and len(self.stage_names) != self.K:
            raise ValueError(f"{len(self.stage_names)} stage names for K={self.K} stages")
        ext = get_ext()
        cls = getattr(ext, "MLPForward", None)
        self.compiled = None if cls is None else make_kernel(cls, weights)
        if self.compiled is not None:  # the compiled methods themselves (they check K): no Python frame per call
            self.predict = self.compiled.predict  # type: ignore[method-assign]
            self.predict_rows = self.compiled.predict_rows  # type: ignore[method-assign]

    def _check_K(self, K: int) -> None:
        if K != self.K:
            raise ValueError(f"the predictor was trained for K={self.K} stages; the cascade has K={K}")

    def predict(self, features: np.ndarray, stage: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """r [B, S, K] float64 draws, accept [B, K, K] float64 from features [B, F] at ``stage`` [B]."""
        self._check_K(K)
        return mlp_forward_ref(self.weights, np.asarray(features), stage)

    def predict_rows(
        self,
        record: np.ndarray,  # [N, K, F] float32 the cascade's feature record
        rows: np.ndarray,  # [B] int64 rows to predict
        stage: np.ndarray,  # [B] int64 their stage: features are record[rows[b], stage[b]]
        K: int,
    ) -> tuple[np.ndarray, np.ndarray]:  # r [B, S, K], accept [B, K, K]
        """``predict(record[rows, stage], stage, K)``; compiled: without materialising the gathered features."""
        self._check_K(K)
        rows, stage = np.asarray(rows), np.asarray(stage)
        if rows.ndim != 1 or rows.shape != stage.shape or rows.dtype.kind not in "iu":
            raise ValueError(f"rows and stage must be integer arrays of one shape [B], got {rows.shape}, {stage.shape}")
        rec = np.asarray(record)
        if rows.size and (rows.min() < 0 or rows.max() >= rec.shape[0]):
            raise ValueError(f"rows must index the record's N={rec.shape[0]} rows")
        return self.predict(rec[rows, check_stage(stage, rows.size, min(self.K, rec.shape[1]))], stage, K)


def make_kernel(cls, w: MLPWeights):
    """An ``asd._C.MLPForward`` holding copies of the weights (checked again there)."""
    return cls(
        list(w.feature_names),
        w.K,
        w.mean,
        w.scale,
        [W for W, _ in w.layers],
        [b for _, b in w.layers],
        w.head_w,
        w.head_b,
        w.temperature,
        w.iso_x,
        w.iso_y,
        w.iso_n,
    )


def random_weights(
    rng: np.random.Generator,
    feature_names: Sequence[str],
    K: int,
    S: int = 5,
    hidden: Sequence[int] = (32,),
    Q: int = 8,
    isotonic: bool = True,
) -> MLPWeights:
    """Random but valid weights (tests, benchmarks): Gaussian layers, temperatures in [0.5, 2], random tables."""
    F = len(feature_names)
    layers = []
    width = F
    for h in hidden:
        layers.append((rng.standard_normal((S, width, h)) / np.sqrt(width), 0.1 * rng.standard_normal((S, h))))
        width = h
    O = num_outputs(K)
    iso_x = np.zeros((K - 1, K - 1, Q))
    iso_y = np.zeros((K - 1, K - 1, Q))
    iso_n = np.zeros((K - 1, K - 1), np.int64)
    if isotonic:
        for k in range(K - 1):
            for m in range(K - 1):
                n = int(rng.integers(2, Q + 1))
                iso_x[k, m, :n] = np.sort(rng.choice(np.linspace(0.01, 0.99, 99), n, replace=False))
                iso_y[k, m, :n] = np.sort(rng.uniform(0, 1, n))
                iso_n[k, m] = n if rng.random() < 0.7 else 0
    return MLPWeights(
        feature_names=tuple(feature_names),
        K=K,
        mean=rng.standard_normal(F),
        scale=rng.uniform(0.5, 2.0, F),
        layers=tuple(layers),
        head_w=rng.standard_normal((K - 1, S, width, O)) / np.sqrt(width),
        head_b=0.1 * rng.standard_normal((K - 1, S, O)),
        temperature=rng.uniform(0.5, 2.0, (K - 1, K - 1)),
        iso_x=iso_x,
        iso_y=iso_y,
        iso_n=iso_n,
    )
