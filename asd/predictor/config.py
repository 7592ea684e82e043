"""Config sections of the predictor: ``predictor`` (which one the cascade uses) and ``predictor_training``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from asd.config_loader import check_fields

PREDICTOR_KINDS = ("prior", "mlp")
CALIBRATIONS = ("auto", "temperature", "isotonic", "none")


@dataclass
class PredictorConfig:
    """YAML section ``predictor``: the cascade's quality predictor.

    kind ``prior``: ``asd.core.predictor.PriorPredictor`` (input-independent); kind ``mlp``: the deep-ensemble
    MLP of ``checkpoint`` (a directory written by ``asd train-predictor``, its ``predictor.json``, or
    ``testbed:predictor``, the one committed for the testbed), checked against the hierarchy (K, stage names)
    and the feature schema before anything runs.
    """

    kind: Literal["prior", "mlp"] = "prior"
    checkpoint: str = ""

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.kind not in PREDICTOR_KINDS:
            raise ValueError(f"kind: unknown predictor {self.kind!r}; valid: {', '.join(PREDICTOR_KINDS)}")
        if self.kind == "mlp" and not self.checkpoint:
            raise ValueError("checkpoint is required for predictor kind 'mlp' (a directory or testbed:predictor)")


@dataclass
class TrainPredictorConfig:
    """YAML section ``predictor_training`` (``asd train-predictor``); docs/predictor.md explains each choice."""

    data: str  # HDF5 training set (schema asd-predictor-data v1)
    out_dir: str = "runs/predictor"  # metrics, plots, the checkpoint (out_dir/checkpoint) unless `checkpoint`
    checkpoint: str = ""  # where to write the checkpoint directory ("" → out_dir/checkpoint)
    results: str = ""  # also write the metrics JSON here (e.g. results/benchmarks/predictor.json); "" → no
    plots_dir: str = ""  # also copy the PNGs here (e.g. docs/img); "" → only out_dir
    members: int = 5  # deep-ensemble members (the S draws of r)
    seed: int = 0  # member s trains with seed (seed, s)
    hidden: list[int] = field(default_factory=lambda: [16])  # trunk widths (shared by the stages)
    epochs: int = 200  # at most
    patience: int = 20  # early stopping: epochs without a better validation loss
    batch_size: int = 256
    lr: float = 3e-3  # Adam
    weight_decay: float = 1e-4
    accept_weight: float = 0.5  # weight of the â loss against the r̂ loss
    split: list[float] = field(default_factory=lambda: [0.70, 0.15, 0.15])  # train / validation / test fractions
    split_salt: int = 0  # the split hash's salt (asd.predictor.data.split_of)
    split_by: Literal["auto", "prompt_key", "sample_id"] = "auto"  # the hashed key; auto = prompt_key
    cell_balance: bool = False  # weigh every (task, level) cell alike in the loss and calibration (data.cell_weights)
    label: Literal["agree_final", "no_worse"] = "agree_final"  # r_m's target: data.LABELS (docs/predictor.md)
    calibration: Literal["auto", "temperature", "isotonic", "none"] = "auto"
    iso_max_knots: int = 64  # knots of an isotonic table at most
    ablations: list[str] = field(default_factory=lambda: ["hidden", "token_stats", "text"])  # groups to retrain without
    threads: int = 1  # torch threads (1: bit-identical checkpoints for one seed)
    workers: int = 1  # members trained at once, each in its own process (same weights as one after another)
    stage_sizes: list[float] = field(default_factory=list)  # [K] relative stage costs for the routing ablation
    lam: float = 1.0  # λ of the routing ablation
    kappas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])  # κ values of the routing ablation
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must list >= 1 positive widths, got {self.hidden}")
        for name in ("epochs", "patience", "batch_size", "iso_max_knots", "threads", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iso_max_knots < 2:
            raise ValueError(f"iso_max_knots must be >= 2, got {self.iso_max_knots}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.accept_weight >= 0):
            raise ValueError("lr must be > 0, weight_decay and accept_weight >= 0")
        if len(self.split) != 3 or any(not (f > 0) for f in self.split) or not math.isclose(sum(self.split), 1.0):
            raise ValueError(
                f"split must be three positive fractions summing to 1 (train, val, test), got {self.split}"
            )
        if self.split_by not in ("auto", "prompt_key", "sample_id"):
            raise ValueError(f"split_by: unknown {self.split_by!r}; valid: auto, prompt_key, sample_id")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration: unknown {self.calibration!r}; valid: {', '.join(CALIBRATIONS)}")
        from asd.predictor.groups import FEATURE_GROUPS

        bad = [g for g in self.ablations if g not in FEATURE_GROUPS]
        if bad:
            raise ValueError(f"ablations: unknown feature groups {bad}; valid: {', '.join(FEATURE_GROUPS)}")
        if any(not (k >= 0 and math.isfinite(k)) for k in self.kappas):
            raise ValueError(f"kappas must be finite numbers >= 0, got {self.kappas}")
        if math.isnan(self.lam) or self.lam < 0:
            raise ValueError(f"lam must be >= 0 or inf, got {self.lam}")
