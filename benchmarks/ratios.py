"""Print the speed ratios that benchmarks store in ``extra_info`` (keys ``ratio_*``), from a saved JSON.

    .venv/bin/python benchmarks/ratios.py benchmarks/results/dp.json

The same table is printed at the end of a pytest-benchmark run by benchmarks/conftest.py.
"""
from __future__ import annotations

import json
import sys


def ratio_rows(benchmarks) -> list[tuple[str, dict]]:
    """(group or name, {ratio name: value}) for every benchmark record carrying ``ratio_*`` extra info.

    ``benchmarks``: dicts as in the saved JSON (``{"group", "name", "extra_info"}``).
    """
    rows = []
    for b in benchmarks:
        info = b.get("extra_info") or {}
        ratios = {k[len("ratio_"):]: v for k, v in info.items() if k.startswith("ratio_")}
        if ratios:
            rows.append((b.get("group") or b.get("name"), ratios))
    return rows


def format_table(rows) -> str:
    if not rows:
        return ""
    names = sorted({k for _, r in rows for k in r})
    w = max(len(g) for g, _ in rows)
    lines = [f"{'benchmark':<{w}} | " + " | ".join(f"{n:>20}" for n in names)]
    lines.append("-" * len(lines[0]))
    for g, r in rows:
        lines.append(f"{g:<{w}} | " + " | ".join(f"{r[n]:>20.2f}" if n in r else f"{'':>20}" for n in names))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        data = json.load(f)
    print(format_table(ratio_rows(data.get("benchmarks", []))) or "no ratio_* entries in extra_info")
    mi = data.get("machine_info", {})
    print(f"\nmachine: {mi.get('cpu', {}).get('brand_raw', '?')}, {mi.get('cpu', {}).get('count', '?')} CPUs; "
          f"{data.get('datetime', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
