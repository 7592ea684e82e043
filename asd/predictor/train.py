"""Training of the deep-ensemble MLP (torch, CPU) and its export to ``asd.core.mlp.MLPWeights``.

Network (one member): normalised features [F] → trunk (Linear + ReLU per width in ``hidden``, shared by every
stage) → the head of the row's stage k (Linear [H → O]): O logits, r̂_m for m = 0..K−2 then â_{j,m} per pair
(asd.core.mlp.pair_index). Loss: masked binary cross-entropy on the r̂ logits (labels r_m, m ≥ k) plus
``accept_weight`` × masked cross-entropy of the â logits against the accepted fractions (soft labels, j ≥ k).
Adam, mini-batches shuffled by a generator seeded per member, early stopping on the validation loss (the best
epoch's weights are kept). Determinism: ``torch.use_deterministic_algorithms`` and ``threads`` (1 by default),
so one seed gives bit-identical weights on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asd.core.mlp import MLPWeights, num_outputs
from asd.predictor.data import Rows


@dataclass
class Normalisation:
    mean: np.ndarray  # [F] float64
    std: np.ndarray  # [F] float64 (1 for a constant column)
    scale: np.ndarray  # [F] float64: 1/std, 0 for an ablated column
    nan_fill: np.ndarray  # [F] float64

    def to_json(self, names: list[str]) -> dict:
        return {
            "rule": "xn = (x - mean) * scale, scale = 1/std of the training rows (1 for a constant column, "
            "0 for an ablated one); NaN features replaced by nan_fill before (training only: serving "
            "rejects NaN)",
            "columns": names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "scale": self.scale.tolist(),
            "nan_fill": self.nan_fill.tolist(),
        }


def fit_normalisation(x: np.ndarray, nan_fill: np.ndarray, drop: list[int]) -> Normalisation:
    """Column mean/std of the training rows x [R, F] (NaN already filled); ``drop`` columns get scale 0."""
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    std = x64.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    scale = 1.0 / std
    scale[drop] = 0.0
    mean = mean.copy()
    mean[drop] = 0.0
    return Normalisation(mean=mean, std=std, scale=scale, nan_fill=nan_fill)


def _torch():
    import torch

    return torch


def _net(F: int, hidden: list[int], K: int):
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):  # type: ignore[name-defined]
        def __init__(self):
            super().__init__()
            layers: list = []
            w = F
            for h in hidden:
                layers += [nn.Linear(w, h), nn.ReLU()]
                w = h
            self.trunk = nn.Sequential(*layers)
            O = num_outputs(K)
            bound = 1.0 / np.sqrt(w)
            self.head_w = nn.Parameter(torch.empty(K - 1, w, O).uniform_(-bound, bound))
            self.head_b = nn.Parameter(torch.empty(K - 1, O).uniform_(-bound, bound))

        def forward(self, x, stage):
            h = self.trunk(x)  # [B, H]
            z = torch.einsum("bh,bho->bo", h, self.head_w[stage])
            return z + self.head_b[stage]

    return Net()


def _loss(z, y, w, n_r: int, accept_weight: float):
    torch = _torch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") * w
    lr = bce[:, :n_r].sum() / w[:, :n_r].sum().clamp_min(1.0)
    la = bce[:, n_r:].sum() / w[:, n_r:].sum().clamp_min(1.0)
    return lr + accept_weight * la


@dataclass
class MemberResult:
    state: dict  # name → numpy array (float32)
    best_epoch: int
    epochs_run: int
    best_val_loss: float


def train_member(train: Rows, val: Rows, norm: Normalisation, K: int, cfg, seed: int, progress=None) -> MemberResult:
    """One ensemble member; ``progress`` (a tqdm bar or None) advances by one per epoch.

    Trains with ``cfg.threads`` torch threads and deterministic algorithms, and gives the process its previous
    settings back afterwards (a later computation in the same process, e.g. a model's forward pass, keeps its
    own thread count and hence its own rounding)."""
    torch = _torch()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    try:
        return _train_member(train, val, norm, K, cfg, seed, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train_member(train: Rows, val: Rows, norm: Normalisation, K: int, cfg, seed: int, progress) -> MemberResult:
    torch = _torch()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    F = train.x.shape[1]
    net = _net(F, list(cfg.hidden), K)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def tensors(rows: Rows):
        xn = ((rows.x.astype(np.float64) - norm.mean) * norm.scale).astype(np.float32)
        y, w = rows.targets()
        return (
            torch.from_numpy(xn),
            torch.from_numpy(rows.stage.astype(np.int64)),
            torch.from_numpy(y.astype(np.float32)),
            torch.from_numpy(w.astype(np.float32)),
        )

    xt, st, yt, wt = tensors(train)
    xv, sv, yv, wv = tensors(val)
    n_r = K - 1
    best = (float("inf"), 0)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    n = xt.shape[0]
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad()
            loss = _loss(net(xt[idx], st[idx]), yt[idx], wt[idx], n_r, cfg.accept_weight)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            vl = float(_loss(net(xv, sv), yv, wv, n_r, cfg.accept_weight))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(seed=seed, val_loss=f"{vl:.4f}", refresh=False)
        if vl < best[0]:
            best = (vl, epoch)
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best[1] >= cfg.patience:
            break
    if progress is not None and epoch < cfg.epochs:
        progress.update(cfg.epochs - epoch)
    state = {k: v.numpy().astype(np.float32) for k, v in best_state.items()}
    return MemberResult(state=state, best_epoch=best[1], epochs_run=epoch, best_val_loss=best[0])


def export_weights(
    members: list[MemberResult], norm: Normalisation, K: int, names: list[str], hidden: list[int]
) -> MLPWeights:
    """The ensemble as ``MLPWeights`` with identity calibration (T = 1, no tables)."""
    layers = []
    for i in range(len(hidden)):
        W = np.stack([m.state[f"trunk.{2 * i}.weight"].T for m in members]).astype(np.float64)  # [S, in, out]
        b = np.stack([m.state[f"trunk.{2 * i}.bias"] for m in members]).astype(np.float64)
        layers.append((np.ascontiguousarray(W), b))
    head_w = np.stack([m.state["head_w"] for m in members], axis=1).astype(np.float64)  # [K-1, S, H, O]
    head_b = np.stack([m.state["head_b"] for m in members], axis=1).astype(np.float64)  # [K-1, S, O]
    return MLPWeights(
        feature_names=tuple(names),
        K=K,
        mean=norm.mean.astype(np.float64),
        scale=norm.scale.astype(np.float64),
        layers=tuple(layers),
        head_w=np.ascontiguousarray(head_w),
        head_b=np.ascontiguousarray(head_b),
        temperature=np.ones((K - 1, K - 1)),
        iso_x=np.zeros((K - 1, K - 1, 2)),
        iso_y=np.zeros((K - 1, K - 1, 2)),
        iso_n=np.zeros((K - 1, K - 1), np.int64),
    )


def train_ensemble(train: Rows, val: Rows, norm: Normalisation, K: int, cfg, label: str) -> list[MemberResult]:
    """``cfg.members`` members, member s seeded with ``cfg.seed · 1000 + s``; one tqdm bar (epochs, rate, ETA).

    ``cfg.workers`` > 1 trains members in that many spawned processes at once (each with ``cfg.threads`` torch
    threads); a member depends only on its seed, so the weights are the same as trained one after another
    (tests/predictor/test_train.py). With workers the bar advances by a whole member when one finishes."""
    from tqdm import tqdm

    seeds = [cfg.seed * 1000 + s for s in range(cfg.members)]
    workers = min(getattr(cfg, "workers", 1), len(seeds))
    bar = tqdm(total=cfg.members * cfg.epochs, desc=f"train {label}", unit="epoch", disable=not cfg.progress)
    try:
        if workers <= 1:
            return [train_member(train, val, norm, K, cfg, s, bar) for s in seeds]
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child of a process whose OpenMP pool is running can hang
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(train_member, train, val, norm, K, cfg, s) for s in seeds]
            out = []
            for f in futures:
                out.append(f.result())
                bar.update(cfg.epochs)
            return out
    finally:
        bar.close()
