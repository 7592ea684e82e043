"""How wide the predictor's trunk should be: one ensemble member per width on the 100,000-sample training set.

For each trunk (``--widths``, e.g. ``16 64 128,128``) one member is trained exactly as ``asd train-predictor``
trains member 0 of seed 0 (the same rows, split, normalisation, loss, early stopping; ``asd.predictor.train``),
and its raw (uncalibrated) r̂_k is scored on the held-out test split: AUC and log loss per stage k, stage-0 AUC
per task. ``--distill CHECKPOINT`` adds, for each width, a member trained on that ensemble's predicted r̂
instead of the 0/1 labels (knowledge distillation: can a narrow trunk learn what a wide one knows?). The forward
pass of 5 members at batch 16 (the served shape) is timed for each width with random weights
(``asd.core.mlp.MLPPredictor``, compiled when ``asd._C`` is built; best of 5 loops of 300 calls).

    python scripts/predictor_width_sweep.py --data runs/predictor-data/data.h5 --widths 16 64 128,128 \\
        --distill runs/predictor-wide/seed0/checkpoint --out results/benchmarks/predictor_width_sweep.json

docs/predictor.md ("Model size") has the results.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np


def forward_us(hidden: list[int], feature_names, K: int) -> float:
    """Best-of-5 µs per call of a 5-member forward pass at batch 16 (random weights)."""
    from asd.core.mlp import MLPPredictor, random_weights

    rng = np.random.default_rng(0)
    p = MLPPredictor(random_weights(rng, feature_names, K, S=5, hidden=tuple(hidden)))
    x = rng.normal(size=(16, len(feature_names)))
    st = np.zeros(16, np.int64)
    for _ in range(20):
        p.predict(x, st, K)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(300):
            p.predict(x, st, K)
        best = min(best, (time.perf_counter() - t) / 300 * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--widths", nargs="+", required=True, help="trunks, e.g. 16 64 128,128")
    ap.add_argument("--distill", default="", help="a checkpoint whose r̂ the distilled members learn")
    ap.add_argument("--distill-widths", nargs="*", default=None, help="widths to distil (default: all)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    from asd.predictor.data import build_rows, load_training_set, nan_fill_values, split_of
    from asd.predictor.metrics import auc, log_loss
    from asd.predictor.train import _net, _torch, fit_normalisation, train_member
    from asd.provenance import provenance

    widths = [[int(h) for h in w.split(",")] for w in a.widths]
    for w in widths:
        if not w or any(h < 1 for h in w):
            raise SystemExit(f"--widths: {w} is not a list of positive widths")
    d = load_training_set(a.data)
    key, _ = d.split_key()
    sp = split_of(key)
    rows = {n: build_rows(d, np.flatnonzero(sp == i)) for i, n in enumerate(("train", "val", "test"))}
    norm = fit_normalisation(rows["train"].x, nan_fill_values(d.feature_names), [])
    te = rows["test"]
    task = d.task[te.sample]
    torch = _torch()

    def score(hidden, state) -> dict:
        net = _net(d.features.shape[2], hidden, d.K)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        xn = torch.from_numpy(((te.x.astype(np.float64) - norm.mean) * norm.scale).astype(np.float32))
        with torch.no_grad():
            z = net(xn, torch.from_numpy(te.stage)).numpy()  # [R, O] logits
        out: dict = {}
        for k in range(d.K - 1):
            s = te.stage == k
            p, y = 1.0 / (1.0 + np.exp(-z[s, k])), te.y_r[s, k]
            out[f"stage{k}"] = {"auc": auc(p, y), "log_loss": log_loss(p, y)}
            if k == 0:
                out["stage0_auc_per_task"] = {t: auc(p[task[s] == t], y[task[s] == t]) for t in np.unique(task)}
        return out

    def run(hidden, train_rows, label) -> dict:
        cfg = SimpleNamespace(
            hidden=hidden,
            lr=3e-3,
            weight_decay=1e-4,
            epochs=a.epochs,
            batch_size=1024,
            patience=10,
            accept_weight=0.5,
            threads=1,
        )
        t = time.perf_counter()
        m = train_member(train_rows, rows["val"], norm, d.K, cfg, seed=0)
        res = {
            "hidden": hidden,
            "targets": label,
            "train_s": time.perf_counter() - t,
            "best_epoch": m.best_epoch,
            "epochs_run": m.epochs_run,
            "best_val_loss": m.best_val_loss,
            **score(hidden, m.state),
        }
        print(
            f"{label:8s} {hidden!s:12s} val {m.best_val_loss:.4f}  stage-0 AUC {res['stage0']['auc']:.4f} "
            f"log loss {res['stage0']['log_loss']:.4f}  ({res['train_s']:.0f} s, best epoch {m.best_epoch})",
            flush=True,
        )
        return res

    members = []
    for h in widths:
        r = run(h, rows["train"], "labels")
        r["forward_us_b16_s5"] = forward_us(h, d.feature_names, d.K)
        members.append(r)
    teacher = None
    if a.distill:
        from asd.core.mlp import MLPPredictor
        from asd.predictor.checkpoint import load_checkpoint

        w, meta = load_checkpoint(a.distill)
        T = MLPPredictor(w)
        soft_train = build_rows(d, np.flatnonzero(sp == 0))
        r, _ = T.predict(soft_train.x.astype(np.float64), soft_train.stage, d.K)
        soft_train.y_r = r.mean(1)[:, : d.K - 1].astype(np.float32)  # [R, K−1] the ensemble's calibrated r̂
        rt, _ = T.predict(te.x.astype(np.float64), te.stage, d.K)
        teacher = {
            "checkpoint": a.distill,
            "hidden": [int(W.shape[2]) for W, _ in w.layers],
            "stage0_auc": auc(rt.mean(1)[te.stage == 0, 0], te.y_r[te.stage == 0, 0]),
        }
        dw = widths if a.distill_widths is None else [[int(h) for h in w.split(",")] for w in a.distill_widths]
        for h in dw:
            members.append(run(h, soft_train, "distilled"))
    import json
    from pathlib import Path

    rec = {
        "schema": "asd-predictor-width-sweep",
        "data": {"path": a.data, "sha256": d.sha256},
        "rule": "one member (seed 0) per width, trained as asd train-predictor trains member 0 (lr 3e-3, batch "
        "1024, weight decay 1e-4, patience 10); raw r̂ (no calibration) on the test split; forward pass of "
        "5 members at batch 16 timed with random weights, best of 5 loops of 300 calls",
        "members": members,
        "teacher": teacher,
        **provenance(config=vars(a), schema_version=1),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1, default=float) + "\n")
    print("wrote", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
