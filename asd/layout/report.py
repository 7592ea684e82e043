"""Tables and a figure of a layout record (``<name>.layout.json`` of ``asd.layout.runner``), and how far its
replay is from another layout's or from a cost table's estimate."""

from __future__ import annotations

from pathlib import Path

GB = 1e9


def load_record(path: str | Path) -> dict:
    """A layout record; errors name the file."""
    from asd.costs_io import read_json
    from asd.layout.runner import SCHEMA_VERSION

    p = Path(path)
    rec = read_json(p, "layout record")
    if rec.get("schema_version") != SCHEMA_VERSION or "layout" not in rec:
        raise ValueError(f"{p}: not a layout record of schema {SCHEMA_VERSION}")
    return rec


def format_record(rec: dict, estimates: dict[str, dict] | None = None, reference: dict | None = None) -> str:
    """The record as text: layout and memory, per-stage costs, each replay (cascade vs final stage alone, per
    stage); ``estimates[routes]`` = {"cascade": s, "alone": s} from a cost table; ``reference`` another layout's
    record (the 8-GPU one) to compare replays with."""
    lay = rec["layout"]
    lines = [f"layout {lay['name']}: {lay['world']} rank(s), {lay['device']}; {rec.get('label') or ''}".rstrip()]
    if not rec.get("complete", False):
        lines.append("  INCOMPLETE: the run stopped before its end (what it finished is below)")
    for s in lay["stages"]:
        depth = (
            f", {s['build_layers']} of {s['full_layers']} layers built: depth-extrapolated" if s["build_layers"] else ""
        )
        lines.append(f"  {s['name']:>6}: TP {s['tensor_parallel']} on ranks {s['ranks']}{depth}")
    lines.append("memory per device after the builds (GB used / total; stages):")
    for i, m in enumerate(rec["memory"]["after_build"]):
        peak = rec["memory"].get("peak", [{}] * len(rec["memory"]["after_build"]))[i]
        if "used_bytes" in m:
            lines.append(
                f"  rank {i}: {m['used_bytes'] / GB:.1f} / {m['total_bytes'] / GB:.1f} GB "
                f"(estimate {m['estimate_bytes'] / GB:.1f}; peak reserved {peak.get('reserved_bytes', 0) / GB:.1f}) "
                f"{'+'.join(m['stages']) or '-'}"
            )
        else:
            lines.append(f"  rank {i}: peak RSS {m['peak_rss_bytes'] / GB:.2f} GB {'+'.join(m['stages']) or '-'}")
    costs = (rec.get("profile") or {}).get("stages")
    if costs:
        lines.append(
            "per-stage costs with every stage resident (decode ms/step by batch; verification pass ms by tokens):"
        )
        for c in costs:
            dec = " ".join(f"b{b}={v * 1e3:.2f}" for b, v in c["decode_s_per_step"].items())
            pre = " ".join(f"{n}={v * 1e3:.1f}" for n, v in c["prefill_s"].items())
            ext = " (depth-extrapolated)" if c["extrapolated"] else ""
            lines.append(
                f"  {c['name']:>6} ({c['devices']} dev){ext}: decode {dec} | pass {pre} | "
                f"step / final {c['ratio_to_final']:.3f} (bytes {c['floor_ratio_to_final']:.3f})"
            )
    for rep in rec.get("replays", []):
        c, a = rep["cascade"], rep["alone"]
        ext = " (sum of calls; depth-extrapolated stage)" if c.get("depth_extrapolated") else ""
        lines.append(f"replay of {rep['routes']} ({rep['samples']} samples; routes {rep['decision_mix']}):")
        lines.append(
            f"  cascade {c['seconds']:.3f} s{ext}, {lay['stages'][-1]['name']} alone {a['seconds']:.3f} s: "
            f"the cascade takes {c['seconds'] / a['seconds']:.3f} of the final stage alone's time"
        )
        for st in c["per_stage"]:
            if st["calls"]:
                per = f"{st['decode_s_per_step'] * 1e3:.2f} ms/step" if st["decode_s_per_step"] else "-"
                lines.append(
                    f"    {st['name']:>6}: {st['calls']} calls, {st['seconds']:.3f} s (passes {st['pass_s']:.3f} s, "
                    f"{st['decode_steps']} decode steps {st['decode_s']:.3f} s = {per})"
                )
        if estimates and rep["routes"] in estimates:
            e = estimates[rep["routes"]]
            lines.append(
                f"  cost-table estimate: cascade {e['cascade']:.3f} s (measured {c['seconds'] / e['cascade'] - 1:+.1%})"
                f", alone {e['alone']:.3f} s (measured {a['seconds'] / e['alone'] - 1:+.1%})"
            )
        if reference:
            ref = {r["routes"]: r for r in reference.get("replays", [])}.get(rep["routes"])
            if ref:
                lines.append(
                    f"  vs {reference['layout']['name']}: cascade {c['seconds'] / ref['cascade']['seconds'] - 1:+.1%}, "
                    f"alone {a['seconds'] / ref['alone']['seconds'] - 1:+.1%}"
                )
    return "\n".join(lines)


def estimates_from_costs(rec: dict, routes_files: dict[str, str], cost_path: str | Path) -> dict[str, dict]:
    """Cascade and final-stage-alone seconds of each replay by a cost table (``asd.layout.schedule.estimate_seconds``;
    the route files are read again, by the paths given for each label)."""
    from asd.costs_io import load_cost_model
    from asd.layout.routes import load_routes
    from asd.layout.schedule import alone_calls, cascade_calls, estimate_seconds

    model = load_cost_model(cost_path)
    out = {}
    for rep in rec.get("replays", []):
        path = routes_files.get(rep["routes"])
        if path is None:
            continue
        routes = load_routes(path)
        K = len(routes["stages"])
        if len(model.stages) != K:
            raise ValueError(f"{cost_path}: {len(model.stages)} stages, the route file {path} has {K}")
        out[rep["routes"]] = {
            "cascade": estimate_seconds(cascade_calls(routes), model)["total"],
            "alone": estimate_seconds(alone_calls(routes, K - 1), model)["total"],
        }
    return out


def plot_record(rec: dict, path: str | Path) -> Path:
    """Two panels: each replay's seconds by stage (cascade vs final stage alone), and memory per device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = rec.get("replays", [])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    names = [s["name"] for s in rec["layout"]["stages"]]
    x = 0.0
    ticks: list[float] = []
    labels: list[str] = []
    for rep in reps:
        for part in ("cascade", "alone"):
            bottom = 0.0
            for i, st in enumerate(rep[part]["per_stage"]):
                ax.bar(x, st["seconds"], bottom=bottom, color=f"C{i}", label=names[i] if x == 0 else None)
                bottom += st["seconds"]
            ticks.append(x)
            labels.append(f"{rep['routes']}\n{part if part == 'cascade' else names[-1] + ' alone'}")
            x += 1
        x += 0.5
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set(ylabel="seconds (replay)", title=f"{rec['layout']['name']}: replayed calls by stage")
    ax.legend(fontsize=7)
    ax = axes[1]
    mem = rec["memory"]["after_build"]
    key = "used_bytes" if "used_bytes" in mem[0] else "peak_rss_bytes"
    ax.bar(range(len(mem)), [m[key] / GB for m in mem], color="C7")
    ax.set_xticks(range(len(mem)))
    for i, m in enumerate(mem):
        ax.text(i, m[key] / GB, "+".join(m["stages"]), ha="center", va="bottom", fontsize=7)
    if "total_bytes" in mem[0]:
        ax.axhline(mem[0]["total_bytes"] / GB, color="k", lw=0.8, ls="--", label="device memory")
        ax.legend(fontsize=7)
    ax.set(xlabel="rank (device)", ylabel="GB", title="memory per device, all stages resident")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
