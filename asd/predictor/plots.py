"""Figures of the held-out evaluation (matplotlib, imported inside the functions): ROC, reliability, spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asd.predictor import metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_png(path: str | Path, curves: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """curves: (label, p [n], y [n]) per stage; one axes, AUC in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p, y in curves:
        fpr, tpr = metrics.roc_curve(p, y)
        ax.plot(fpr, tpr, label=f"{label} (AUC {metrics.auc(p, y):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="r̂_k from stage-k features (held out)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_png(path: str | Path, panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """panels: (label, p_calibrated [n], p_raw [n], y [n]) per stage; 15-bin reliability, both curves."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
    for ax, (label, pc, pr, y) in zip(axes[0], panels):
        for name, p, style in (("raw", pr, "o--"), ("calibrated", pc, "s-")):
            rel = metrics.reliability(p, y)
            ok = rel["count"] > 0
            ax.plot(
                rel["confidence"][ok], rel["frequency"][ok], style, ms=4, label=f"{name} (ECE {metrics.ece(p, y):.3f})"
            )
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted r̂", ylabel="observed frequency", title=label)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def spread_png(path: str | Path, table: list[dict]) -> None:
    """Error rate and mean |r̂ − r| per ensemble-spread bin (evaluate.spread_table)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = [b["std_mean"] for b in table]
    ax.plot(x, [b["error_rate"] for b in table], "o-", label="error rate (r̂ at 0.5)")
    ax.plot(x, [b["abs_error"] for b in table], "s--", label="mean |r̂ − r|")
    ax.set(xlabel="ensemble std of r̂ (bin mean)", ylabel="held-out error", title="error vs ensemble spread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
