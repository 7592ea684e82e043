"""``asd train-predictor --config FILE``: train, calibrate, evaluate and save the quality predictor.

Section used: ``predictor_training`` (asd.predictor.config.TrainPredictorConfig). Writes the checkpoint
(``checkpoint`` or ``out_dir/checkpoint``), ``out_dir/metrics.json`` (+ ``results``) and the ROC, reliability and
spread PNGs (+ ``plots_dir``). docs/predictor.md.

    asd train-predictor --config configs/predictor.yaml
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-predictor",
        help="train the deep-ensemble MLP quality predictor on a generated training set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML with a predictor_training section")
    p.add_argument("--data", default=None, help="override predictor_training.data (an HDF5 training set)")
    p.set_defaults(func=main)


def main(args) -> int:
    import dataclasses

    from asd.config_loader import to_dict
    from asd.predictor.run import train_predictor
    from asd.run_config import load_section

    cfg = load_section(args.config, "predictor_training")
    if args.data:
        cfg = dataclasses.replace(cfg, data=args.data)
    res = train_predictor(cfg, {"predictor_training": to_dict(cfg), "source": str(args.config)})
    print(
        f"{'stage':<14}{'n':>7}{'pos':>7}{'AUC':>8}{'Brier':>8}{'ECE':>8}{'logloss':>9}{'ECE if calibrated':>19}"
        "   (held-out test split)"
    )
    for s in res["per_stage"]:
        floor = s["ece_if_calibrated"]
        print(
            f"{s['name']:<14}{s['n']:>7}{s['positive_rate']:>7.3f}{s['auc']:>8.3f}{s['brier']:>8.4f}"
            f"{s['ece']:>8.4f}{s['log_loss']:>9.4f}{floor['mean']:>11.4f} (p90 {floor['p90']:.3f})"
        )
    print("ablation (stage-0 AUC / ECE, mean AUC over stages):")
    for a in res["ablation"]:
        print(f"  {a['variant']:<22} {a['stage0_auc']:.3f} / {a['stage0_ece']:.4f}   {a['mean_auc']:.3f}")
    t = res["targets"]
    print(
        f"targets (stage-0 AUC >= {t['stage0_auc_min']}, ECE <= {t['stage0_ece_max']}): "
        f"{'met' if t['met'] else 'NOT met'}"
    )
    print(
        f"checkpoint: {res['checkpoint']['path']} ({res['checkpoint']['size_bytes']:,} bytes); "
        f"metrics: {cfg.out_dir}/metrics.json"
    )
    return 0
