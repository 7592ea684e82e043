"""Would a predictor that saw each prompt's difficulty do much better? Stage 0, the held-out test split.

The testbed's prompts come in (task, level) cells (docs/predictor_data.md); the features do not see the level,
and the served r̂_0 is miscalibrated per level on the evaluation's prompts (docs/evaluation.md, "What the target
needs"). This measures the most that knowing the cell could add: a logistic regression on [logit r̂_0, one-hot
cell] (and on the one-hot cell alone) fitted on the validation split by Newton steps, scored on the test split
(split as the trainer splits: prompt-key hash, salt 0, 70/15/15) against the checkpoint's own r̂_0 (the
members' mean). Also the served r̂_0's AUC within each cell (cells with both outcomes and ≥ 30 test prompts).

    python scripts/predictor_cell_check.py --data runs/predictor-data/data.h5 \\
        --checkpoint testbed:predictor --out results/benchmarks/predictor_cell_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/predictor-data/data.h5", help="training-set file (asd generate-data)")
    ap.add_argument("--checkpoint", default="testbed:predictor")
    ap.add_argument("--out", required=True, help="JSON record to write")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"predictor_cell_check: --data {args.data}: no such file", file=sys.stderr)
        return 2

    from asd.core.mlp import MLPPredictor
    from asd.predictor.checkpoint import check_compatible, load_checkpoint
    from asd.predictor.data import build_rows, cell_labels, load_training_set, split_of
    from asd.predictor.headroom import fit_logistic
    from asd.predictor.metrics import auc
    from asd.provenance import provenance

    data = load_training_set(args.data)
    weights, meta = load_checkpoint(args.checkpoint)
    check_compatible(meta, data.stage_names, where=f"--checkpoint {args.checkpoint}")
    pred = MLPPredictor(weights, stage_names=meta.get("stage_names"))
    key, key_name = data.split_key("auto")
    split = split_of(key, (0.70, 0.15, 0.15), 0)
    cells_all = np.unique(cell_labels(data.task, data.level))

    def stage0(code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell [n] str, r̂_0 [n] members' mean, y [n] agreement of s0 with the final stage) of one split."""
        rows = build_rows(data, np.flatnonzero(split == code))
        s0 = rows.stage == 0  # only the stage-0 rows are predicted
        r, _ = pred.predict(rows.x[s0], rows.stage[s0], data.K)  # [n, S, K]
        idx = rows.sample[s0]
        return cell_labels(data.task[idx], data.level[idx]), r[:, :, 0].mean(1), rows.y_r[s0][:, 0]

    def design(cell: np.ndarray, r0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        onehot = (cell[:, None] == cells_all[None, :]).astype(np.float64)  # [n, C]
        q = np.clip(r0, 1e-6, 1 - 1e-6)
        return np.concatenate([np.log(q / (1 - q))[:, None], onehot], 1), onehot

    cv, rv, yv = stage0(1)
    ct, rt, yt = stage0(2)
    Xv, Ov = design(cv, rv)
    Xt, Ot = design(ct, rt)
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    within = {}
    for c in np.unique(ct):
        m = ct == c
        if m.sum() >= 30 and 0 < yt[m].mean() < 1:
            within[str(c)] = {"n": int(m.sum()), "agreement": float(yt[m].mean()), "auc": float(auc(rt[m], yt[m]))}
    rec = {
        "schema": "asd-predictor-cell-check",
        "data": {
            "path": args.data,
            "sha256": data.sha256,
            "split_by": key_name,
            "val": int(yv.size),
            "test": int(yt.size),
        },
        "checkpoint": {"spec": args.checkpoint, "data_sha256": meta["data"]["sha256"]},
        "stage0_auc": {
            "checkpoint": float(auc(rt, yt)),
            "cell_only": float(auc(sig(Ot @ fit_logistic(Ov, yv)), yt)),
            "checkpoint_plus_cell": float(auc(sig(Xt @ fit_logistic(Xv, yv)), yt)),
        },
        "within_cell": within,
        "within_cell_auc_mean": float(np.mean([w["auc"] for w in within.values()])),
        "provenance": provenance(config=vars(args), schema_version=1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec["stage0_auc"]), f"within-cell mean {rec['within_cell_auc_mean']:.3f}", f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
