"""``asd train-predictor``: data → split → ensemble → calibration → checkpoint → held-out metrics and figures.

Steps (docs/predictor.md):

1. read the training set (asd.predictor_data.schema's reader: its schema, feature schema, shapes, finite
   features) before anything is written;
2. split by the hash of the prompt key or sample_id (asd.predictor.data.split_of): train / validation / test;
3. normalisation from the training rows; ``members`` networks with seeds (seed, s), early-stopped on the
   validation loss;
4. calibration per (k, m) chosen on the validation split (2-fold cross-fitting inside it);
5. checkpoint written, read back and served through ``MLPPredictor`` for every held-out number;
6. metrics per stage (AUC, Brier, ECE 15 bins, log loss; raw and calibrated), per (k, m), â errors, error by
   ensemble spread, the routing ablation (κ at a fixed λ), ROC / reliability / spread PNGs;
7. the ablation table: the same training without each feature group (hidden, token_stats, text);
8. the results JSON (provenance, config) in ``out_dir/metrics.json`` and ``results``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from asd.core.features import FEATURE_SCHEMA_VERSION
from asd.core.mlp import MLPPredictor
from asd.predictor import evaluate, plots
from asd.predictor.calibration import calibrate
from asd.predictor.checkpoint import build_predictor, check_compatible, load_checkpoint, save_checkpoint
from asd.predictor.config import PredictorConfig, TrainPredictorConfig
from asd.predictor.data import (
    SPLITS,
    build_rows,
    cell_weights,
    fold_of,
    load_training_set,
    nan_fill_values,
    split_of,
)
from asd.predictor.groups import FEATURE_GROUPS, group_columns
from asd.predictor.train import export_weights, fit_normalisation, train_ensemble

RESULTS_SCHEMA_VERSION = 1
TARGETS = {"stage0_auc_min": 0.85, "stage0_ece_max": 0.03}
SPLIT_RULE = (
    "u = splitmix64(KEY xor split_salt) / 2^64; train if u < f_train, validation if u < f_train + f_val, "
    "test otherwise (asd.predictor.data.split_of); the calibration's 2 folds inside validation: the top bit of "
    "splitmix64(KEY xor (split_salt + 1)) (fold_of)"
)


def _summary_row(label: str, dropped: list[str], per_stage: list[dict]) -> dict:
    s0 = per_stage[0]
    return {
        "variant": label,
        "dropped_columns": dropped,
        "stage0_auc": s0["auc"],
        "stage0_ece": s0["ece"],
        "stage0_brier": s0["brier"],
        "stage0_log_loss": s0["log_loss"],
        "mean_auc": float(np.mean([s["auc"] for s in per_stage])),
        "mean_ece": float(np.mean([s["ece"] for s in per_stage])),
        "per_stage_auc": [s["auc"] for s in per_stage],
    }


def train_predictor(cfg: TrainPredictorConfig, config_dict: dict | None = None) -> dict:
    """Run every step; returns the results dict (also written as JSON)."""
    from asd.config_loader import to_dict
    from asd.provenance import git_revision, provenance

    t_start = time.perf_counter()
    data = load_training_set(cfg.data)  # every check of the file (schema, feature schema, ...) before any write
    K, names = data.K, data.feature_names
    if cfg.stage_sizes and len(cfg.stage_sizes) != K:
        raise ValueError(f"stage_sizes has {len(cfg.stage_sizes)} entries; the data has K={K} stages")
    key, key_name = data.split_key(cfg.split_by)
    split = split_of(key, cfg.split, cfg.split_salt)
    idx = {name: np.flatnonzero(split == i) for i, name in enumerate(SPLITS)}
    for name, ix in idx.items():
        if ix.size == 0:
            raise ValueError(f"{cfg.data}: the {name} split is empty ({data.N} samples, fractions {cfg.split})")
    # cell_balance: train and validation rows weighted so every (task, level) cell counts alike; test stays as is
    rows = {
        name: build_rows(
            data, ix, cell_weights(data, ix) if cfg.cell_balance and name != "test" else None, label=cfg.label
        )
        for name, ix in idx.items()
    }
    fold = fold_of(key[rows["val"].sample], cfg.split_salt + 1)
    split_rule = SPLIT_RULE.replace("KEY", key_name)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(cfg.checkpoint) if cfg.checkpoint else out_dir / "checkpoint"
    cfg_json = to_dict(cfg)
    nan_fill = nan_fill_values(names)
    variants: list[tuple[str, list[str]]] = [("full", [])] + [
        (f"without_{g}", FEATURE_GROUPS[g]) for g in cfg.ablations
    ]
    result: dict = {}
    ablation = []
    timings = {}
    for label, dropped in variants:
        t0 = time.perf_counter()
        drop = group_columns(label[len("without_") :], names) if dropped else []
        norm = fit_normalisation(rows["train"].x, nan_fill, drop)
        members = train_ensemble(rows["train"], rows["val"], norm, K, cfg, label)
        w_raw = export_weights(members, norm, K, names, list(cfg.hidden))
        w, cal_report = calibrate(w_raw, rows["val"], fold, cfg.calibration, cfg.iso_max_knots)
        timings[label] = time.perf_counter() - t0
        meta = {
            "stage_names": data.stage_names,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "activation": "relu",
            "normalisation": norm.to_json(names),
            "calibration": cal_report,
            "training": {
                "config": cfg_json,
                "rows": {k: len(v) for k, v in rows.items()},
                "members": [
                    {
                        "seed": cfg.seed * 1000 + s,
                        "best_epoch": m.best_epoch,
                        "epochs_run": m.epochs_run,
                        "best_val_loss": m.best_val_loss,
                    }
                    for s, m in enumerate(members)
                ],
            },
            "data": {
                "path": cfg.data,
                "sha256": data.sha256,
                "n_samples": data.N,
                "split_counts": {k: int(v.size) for k, v in idx.items()},
                "split_rule": split_rule,
                "generator_git_revision": str(data.attrs.get("git_revision", "")),
            },
            "git_revision": git_revision(),
        }
        if dropped:  # a feature ablation: its own checkpoint beside the full one (evaluations serve it)
            meta["feature_ablation"] = {"without": label[len("without_") :], "columns": list(dropped)}
        variant_dir = ckpt_dir if label == "full" else out_dir / f"checkpoint_{label}"
        save_checkpoint(variant_dir, w, meta)
        if label == "full":
            # every held-out number below comes from the checkpoint as the cascade loads it
            pred = build_predictor(PredictorConfig(kind="mlp", checkpoint=str(ckpt_dir)), data.stage_names)
            _, meta_back = load_checkpoint(ckpt_dir)
            check_compatible(meta_back, data.stage_names)
            full = _evaluate_full(pred, MLPPredictor(w_raw), rows, data, cfg, out_dir, K)
            result.update(full)
            result["checkpoint"] = {
                "path": str(ckpt_dir),
                "checksum": meta_back["checksum"],
                "weights_sha256": meta_back["weights_sha256"],
                "size_bytes": sum(p.stat().st_size for p in ckpt_dir.iterdir() if p.is_file()),
            }
            result["calibration"] = cal_report
            result["members"] = meta["training"]["members"]
            per_stage = full["per_stage"]
        else:
            r, _ = evaluate.predict_rows(MLPPredictor(w), rows["test"], K)
            per_stage = evaluate.stage_metrics(r, rows["test"], K, data.stage_names)
        ablation.append({**_summary_row(label, list(dropped), per_stage), "checkpoint": str(variant_dir)})
    s0 = result["per_stage"][0]
    result.update(
        schema="asd-predictor-results",
        ablation=ablation,
        targets={
            **TARGETS,
            "stage0_auc": s0["auc"],
            "stage0_ece": s0["ece"],
            "met": bool(s0["auc"] >= TARGETS["stage0_auc_min"] and s0["ece"] <= TARGETS["stage0_ece_max"]),
        },
        data={
            "path": cfg.data,
            "sha256": data.sha256,
            "n_samples": data.N,
            "K": K,
            "stage_names": data.stage_names,
            "split_counts": {k: int(v.size) for k, v in idx.items()},
            "rows": {k: len(v) for k, v in rows.items()},
            "split_rule": split_rule,
            "generator_config": data.attrs.get("config"),
            "generator_git_revision": str(data.attrs.get("git_revision", "")),
        },
        seconds={"train_and_calibrate": timings, "total": time.perf_counter() - t_start},
    )
    result.update(
        provenance(config=config_dict or {"predictor_training": cfg_json}, schema_version=RESULTS_SCHEMA_VERSION)
    )
    text = json.dumps(_jsonable(result), indent=1, sort_keys=False) + "\n"
    (out_dir / "metrics.json").write_text(text)
    (out_dir / "tables.md").write_text(markdown_tables(_jsonable(result)))
    if cfg.results:
        Path(cfg.results).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.results).write_text(text)
    if cfg.plots_dir:
        Path(cfg.plots_dir).mkdir(parents=True, exist_ok=True)
        for name in ("roc", "reliability", "spread"):
            shutil.copyfile(out_dir / f"{name}.png", Path(cfg.plots_dir) / f"predictor_{name}.png")
    return result


def _evaluate_full(pred, pred_raw, rows, data, cfg: TrainPredictorConfig, out_dir: Path, K: int) -> dict:
    test = rows["test"]
    r, acc = evaluate.predict_rows(pred, test, K)
    r_raw, _ = evaluate.predict_rows(pred_raw, test, K)
    per_stage = evaluate.stage_metrics(r, test, K, data.stage_names)
    raw = evaluate.stage_metrics(r_raw, test, K, data.stage_names)
    for s, q in zip(per_stage, raw):
        s["uncalibrated"] = {k: q[k] for k in ("auc", "brier", "ece", "log_loss", "mean_prediction")}
    out: dict = {
        "per_stage": per_stage,
        "per_pair": evaluate.pair_metrics(r, test, K),
        "accept_mae": evaluate.accept_errors(acc, test, K),
        "spread": {
            "all_stages": evaluate.spread_table(r, test, K),
            "stage0": evaluate.spread_table(r, test, K, stage=0),
            "given_mean": evaluate.spread_given_mean(r, test),
        },
    }
    if cfg.stage_sizes:
        test_samples = np.unique(test.sample)
        out["routing"] = evaluate.routing_ablation(pred, data, test_samples, cfg.stage_sizes, cfg.lam, cfg.kappas)
    sel = [(k, test.stage == k) for k in range(K - 1)]
    plots.roc_png(out_dir / "roc.png", [(data.stage_names[k], r[s, :, k].mean(1), test.y_r[s, k]) for k, s in sel])
    plots.reliability_png(
        out_dir / "reliability.png",
        [(data.stage_names[k], r[s, :, k].mean(1), r_raw[s, :, k].mean(1), test.y_r[s, k]) for k, s in sel],
    )
    plots.spread_png(out_dir / "spread.png", out["spread"]["all_stages"])
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def markdown_tables(res: dict) -> str:
    """The per-stage, ablation, spread and routing tables of a results dict, as Markdown (out_dir/tables.md)."""

    def f3(v) -> str:
        return "—" if v is None else f"{v:.3f}"

    lines = [
        "| stage | n | positive rate | AUC | Brier | ECE | log loss | ECE if perfectly calibrated (mean / p90) "
        "| uncalibrated AUC / ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in res["per_stage"]:
        u, fl = s["uncalibrated"], s["ece_if_calibrated"]
        lines.append(
            f"| {s['name']} | {s['n']} | {f3(s['positive_rate'])} | **{f3(s['auc'])}** | {f3(s['brier'])} | "
            f"**{f3(s['ece'])}** | {f3(s['log_loss'])} | {f3(fl['mean'])} / {f3(fl['p90'])} | "
            f"{f3(u['auc'])} / {f3(u['ece'])} |"
        )
    lines += [
        "",
        "| variant | stage-0 AUC | stage-0 ECE | stage-0 Brier | mean AUC (stages 0–2) | AUC per stage |",
        "|---|---|---|---|---|---|",
    ]
    for a in res["ablation"]:
        lines.append(
            f"| {a['variant']} | {f3(a['stage0_auc'])} | {f3(a['stage0_ece'])} | {f3(a['stage0_brier'])} | "
            f"{f3(a['mean_auc'])} | {' / '.join(f3(x) for x in a['per_stage_auc'])} |"
        )
    lines += [
        "",
        "| std bin (all stages) | n | std range | error rate (r̂ at 0.5) | mean abs error | Brier |",
        "|---|---|---|---|---|---|",
    ]
    for b in res["spread"]["all_stages"]:
        lines.append(
            f"| {b['bin']} | {b['n']} | {b['std_min']:.4f}–{b['std_max']:.4f} | {f3(b['error_rate'])} | "
            f"{f3(b['abs_error'])} | {f3(b['brier'])} |"
        )
    g = res["spread"]["given_mean"]
    lines += [
        "",
        f"Within bins of the mean r̂: mean |r̂ − r| {f3(g['abs_error_low_std'])} (lower-std half) vs "
        f"{f3(g['abs_error_high_std'])} (higher-std half); Brier {f3(g['brier_low_std'])} vs "
        f"{f3(g['brier_high_std'])}.",
    ]
    if "routing" in res:
        ro = res["routing"]
        lines += [
            "",
            f"| λ = {ro['lam']} | κ | early stops | wrong early stops | wrong / early stops | wrong / all "
            "| mean transition cost | score | final-stage histogram |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ro["runs"] + [dict(ro["prior_predictor"], kappa="prior")]:
            lines.append(
                f"| {'prior predictor' if r['kappa'] == 'prior' else 'MLP'} | {r['kappa']} | "
                f"{r['early_stops']} | {r['wrong_early_stops']} | {f3(r['wrong_fraction_of_early_stops'])} | "
                f"{f3(r['wrong_fraction_of_all'])} | {f3(r['mean_transition_cost'])} | {f3(r['score'])} | "
                f"{r['final_stage_hist']} |"
            )
        for m in ro["matched_early_stops"]:
            q = m["kappa0_matched"]
            lines.append(
                f"| MLP, κ = 0 at λ' = {q['lam']:.3f} (as many early stops as κ = {m['kappa']}) | 0 | "
                f"{q['early_stops']} | {q['wrong_early_stops']} | {f3(q['wrong_fraction_of_early_stops'])} | "
                f"{f3(q['wrong_fraction_of_all'])} | {f3(q['mean_transition_cost'])} | {f3(q['score'])} | "
                f"{q['final_stage_hist']} |"
            )
    return "\n".join(lines) + "\n"
