"""Summary of a run's traces: per dataset and per stage, as plain numbers (pure numpy on arrays).

``summarize(data, K)`` takes the columns of a trace file (asd.traces.read_traces(...).data) and returns
a dict of tables; ``format_summary`` renders it for a terminal; ``plot_summary`` draws the figure.
"""

from __future__ import annotations

import numpy as np

STOP, NOT_RUN = -1, -2


def summarize(data: dict[str, np.ndarray], K: int) -> dict:
    """Tables of a run.

    data: trace columns — ``dataset`` [N] str, ``score`` [N] float (NaN unscored), ``final_stage`` [N] int,
          ``ran`` [N, K] bool, ``draft_len``/``accepted_len`` [N, K] int (tokens), ``latency_s`` [N, K] s.
    Returns ``{"n", "final_hist" [K], "stage": {...per-stage arrays [K]}, "datasets": {name: {...}}}``.
    """
    N = len(data["final_stage"])
    final = np.asarray(data["final_stage"], dtype=np.int64)
    ran = np.asarray(data["ran"], dtype=bool)
    lat = np.where(ran, np.nan_to_num(np.asarray(data["latency_s"], dtype=np.float64)), 0.0)
    draft = np.asarray(data["draft_len"], dtype=np.int64)
    acc = np.asarray(data["accepted_len"], dtype=np.int64)
    score = np.asarray(data["score"], dtype=np.float64)
    out = {
        "n": N,
        "final_hist": np.bincount(final[final >= 0], minlength=K)[:K].tolist(),
        "stage": {
            "runs": ran.sum(0).tolist(),
            # tokens a stage received from the stage before it and accepted, over those it received
            "acceptance": [
                float(acc[ran[:, k], k].sum() / max(1, _incoming(draft, ran, final, k)))
                if k > 0 and ran[:, k].any()
                else float("nan")
                for k in range(K)
            ],
            # latency_s is the wall time of the batched call a sample was part of (asd.cascade)
            "mean_latency_s": [float(lat[ran[:, k], k].mean()) if ran[:, k].any() else float("nan") for k in range(K)],
        },
        "score_mean": float(np.nanmean(score)) if np.isfinite(score).any() else float("nan"),
        "datasets": {},
    }
    for name in sorted(set(map(str, data["dataset"]))):
        m = np.array([str(d) == name for d in data["dataset"]])
        s = score[m]
        out["datasets"][name] = {
            "n": int(m.sum()),
            "score": float(np.nanmean(s)) if np.isfinite(s).any() else float("nan"),
            "final_hist": np.bincount(final[m & (final >= 0)], minlength=K)[:K].tolist(),
        }
    return out


def _incoming(draft: np.ndarray, ran: np.ndarray, final: np.ndarray, k: int) -> int:
    """Tokens handed to stage k for verification: the draft of the latest earlier stage that ran."""
    total = 0
    for i in np.flatnonzero(ran[:, k]):
        prev = [j for j in range(k) if ran[i, j]]
        total += int(draft[i, prev[-1]]) if prev else 0
    return total


def format_summary(s: dict, stage_names: list[str]) -> str:
    """A terminal table of ``summarize``'s output."""
    K = len(stage_names)
    w = max(8, *(len(n) for n in stage_names))
    lines = [f"{s['n']} samples, mean score {s['score_mean']:.3f}", ""]
    head = f"{'':<24}" + "".join(f"{n:>{w + 2}}" for n in stage_names)
    lines.append(head)
    lines.append(f"{'ended here':<24}" + "".join(f"{v:>{w + 2}}" for v in s["final_hist"]))
    lines.append(f"{'ran':<24}" + "".join(f"{v:>{w + 2}}" for v in s["stage"]["runs"]))
    lines.append(
        f"{'acceptance of drafts':<24}"
        + "".join(f"{'—' if np.isnan(v) else f'{v:.3f}':>{w + 2}}" for v in s["stage"]["acceptance"])
    )
    lines.append(
        f"{'batch wall time (ms)':<24}"
        + "".join(f"{'—' if np.isnan(v) else f'{1e3 * v:.1f}':>{w + 2}}" for v in s["stage"]["mean_latency_s"])
    )
    lines += ["", f"{'dataset':<24}{'n':>6}{'score':>8}   ended at " + "/".join(stage_names[:K])]
    for name, d in s["datasets"].items():
        lines.append(f"{name:<24}{d['n']:>6}{d['score']:>8.3f}   " + "/".join(map(str, d["final_hist"])))
    return "\n".join(lines)


def plot_summary(s: dict, stage_names: list[str], path: str, title: str = "") -> None:
    """Two panels: score per dataset; where samples ended (stacked per dataset). Writes a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(s["datasets"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.bar(range(len(names)), [s["datasets"][n]["score"] for n in names], color="tab:blue")
    a1.set_xticks(range(len(names)), names, rotation=30, ha="right")
    a1.set_ylim(0, 1)
    a1.set_ylabel("mean score")
    a1.set_title("score per dataset")
    bottom = np.zeros(len(names))
    for k, st in enumerate(stage_names):
        v = np.array([s["datasets"][n]["final_hist"][k] for n in names], dtype=float)
        a2.bar(range(len(names)), v, bottom=bottom, label=st)
        bottom += v
    a2.set_xticks(range(len(names)), names, rotation=30, ha="right")
    a2.set_ylabel("samples")
    a2.set_title("stage that returned the output")
    a2.legend(title="stage")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
