"""Print the speed ratios that benchmarks store in ``extra_info`` (keys ``ratio_*``), from a saved JSON.

    .venv/bin/python benchmarks/ratios.py results/benchmarks/dp.json [--markdown]

``--markdown``: a table of the interleaved medians (``extra_info["median_ms"]``) and ratios, for docs/.

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


def markdown(benchmarks) -> str:
    """Markdown rows: group | median ms per implementation | ratios (benchmarks carrying ``median_ms``)."""
    rows = [(b.get("group") or b.get("name"), b["extra_info"]) for b in benchmarks
            if "median_ms" in (b.get("extra_info") or {})]
    if not rows:
        return ""
    impls = list(rows[0][1]["median_ms"])
    ratios = sorted({k for _, e in rows for k in e if k.startswith("ratio_")})
    head = ["case"] + [f"{i} ms" for i in impls] + [k[len("ratio_"):] for k in ratios]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g, e in rows:
        cells = [g] + [f"{e['median_ms'][i]:.3g}" for i in impls] + [f"{e[k]:.2f}" if k in e else "" for k in ratios]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    md = "--markdown" in argv
    argv = [a for a in argv if a != "--markdown"]
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        data = json.load(f)
    if md:
        print(markdown(data.get("benchmarks", [])))
        return 0
    print(format_table(ratio_rows(data.get("benchmarks", []))) or "no ratio_* entries in extra_info")
    mi = data.get("machine_info", {})
    print(f"\nmachine: {mi.get('cpu', {}).get('brand_raw', '?')}, {mi.get('cpu', {}).get('count', '?')} CPUs; "
          f"{data.get('datetime', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
