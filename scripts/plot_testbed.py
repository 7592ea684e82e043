"""Plot the testbed quality record: accuracy per level per stage, and agreement with the final stage.

Run here (docs/testbed.md):  .venv/bin/python scripts/plot_testbed.py [docs/testbed_quality.json] [docs/img/testbed_quality.png]
Reads the record written by ``python -m asd.testbed.quality``; writes the two-panel PNG (second argument).
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src="docs/testbed_quality.json", dst="docs/img/testbed_quality.png"):
    rec = json.loads(Path(src).read_text())
    full = rec["full"]
    stages = full["stages"]
    levels = sorted(full["per_level"], key=int)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for s in stages:
        axes[0].plot([int(lv) for lv in levels], [full["per_level"][lv][s] for lv in levels], marker="o",
                     label=f"{s} (overall {full['overall'][s]:.1f}%)")
        axes[1].plot([int(lv) for lv in levels], [full["agreement_with_final"][lv][s] for lv in levels], marker="o",
                     label=s)
    axes[0].set(xlabel="difficulty level", ylabel="accuracy (%)", ylim=(0, 102), xticks=[int(x) for x in levels],
                title=f"accuracy, {full['n']} held-out prompts, greedy")
    axes[1].set(xlabel="difficulty level", ylabel="P(output == final stage's) (%)", ylim=(0, 102),
                xticks=[int(x) for x in levels], title="agreement with the final stage")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"asd testbed hierarchy (git {rec['git_revision'][:10]})", fontsize=9)
    fig.tight_layout()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
