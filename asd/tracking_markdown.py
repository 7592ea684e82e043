"""A tracking record (:mod:`asd.tracking`) as Markdown: the ``<name>_comprehensive.md`` a paper's methods
and results sections are written from. ``render(record) -> str``; pure (no I/O)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

KEY_PACKAGES = ("asd", "numpy", "torch", "transformers", "vllm", "h5py", "submitit", "safetensors", "nvidia-ml-py")
MAX_JSON_CHARS = 20_000
RESOURCE_KEYS = {"wall_s", "cpu", "memory", "gpu", "sampler"}


def render(rec: dict) -> str:
    out: list[str] = []
    res = rec.get("resources") or {}
    arr = rec.get("array")
    git = rec.get("git") or {}
    cmd = rec.get("command") or {}
    host = ((rec.get("environment") or {}).get("os") or {}).get("hostname")
    out.append(f"# {rec['name']} — {rec['status']}\n")
    line = [
        f"`{cmd.get('command_line', '?')}`",
        f"started {rec.get('started_utc')}",
        f"wall {fmt_s(res.get('wall_s'))}",
        f"git `{str(git.get('revision', 'unknown'))[:20]}`" + (" (uncommitted changes)" if git.get("dirty") else ""),
    ]
    if host:
        line.append(f"host `{host}`")
    sl = rec.get("slurm")
    if sl:
        line.append(
            f"SLURM job {sl.get('job_id')}"
            + (f" (array {sl.get('array_job_id')}_{sl.get('array_task_id')})" if sl.get("array_job_id") else "")
            + f" on {sl.get('node')}"
        )
    out.append(" · ".join(line) + "\n")
    if rec.get("error"):
        out.append(f"**{rec['status']}:** `{rec['error'].splitlines()[0]}`\n")
    if arr and arr.get("total"):
        out.append(
            f"Array: {arr['tasks']} task(s), {arr['attempts']} attempt record(s) in "
            f"`{arr['output_dir']}/logs`; resources below are summed over every attempt and the merge.\n"
        )
        out.append(resource_table(arr["total"], array=True))
    elif res:
        out.append(resource_table(res))
    if rec.get("configs"):
        cfgs = ", ".join(f"`{c['path']}` (sha256 `{c['sha256'][:12]}`)" for c in rec["configs"])
        out.append(f"Config: {cfgs}.")
    if rec.get("seeds"):
        out.append("Seeds: " + ", ".join(f"`{k}` = {v}" for k, v in rec["seeds"].items()) + ".")
    out.append("")
    for kind, title in (("results", "Results"), ("ablation", "Ablations"), ("notes", "Notes from the run")):
        secs = [s for s in rec.get("sections", []) if s["kind"] == kind]
        if secs:
            out.append(f"## {title}\n")
            for s in secs:
                out.append(section(s))
    if arr:
        out.append("## Array tasks\n")
        out.append(
            f"Run folder `{arr['output_dir']}`, phase `{arr['phase']}`: {arr['tasks']} task(s), "
            f"{arr['attempts']} attempt(s) (a requeued or resumed task has several).\n"
        )
        if arr["records"]:
            rows = [
                {k: (fmt_bytes(v) if k == "peak_rss_bytes" else v) for k, v in r.items() if k != "started_utc"}
                for r in arr["records"]
            ]
            out.append(table(rows))
        if arr.get("unreadable"):
            out.append("Unreadable attempt records: " + "; ".join(arr["unreadable"]) + "\n")
    if rec.get("artifacts"):
        out.append("## Files\n")
        for a in rec["artifacts"]:
            link = _rel(a["path"], rec)
            size = f", {fmt_bytes(a['bytes'])}" if a.get("bytes") is not None else ""
            miss = "" if a.get("exists") else " (missing when recorded)"
            note = f" — {a['note']}" if a.get("note") else ""
            out.append(f"- {a['kind']}: [{a['path']}]({link}){size}{miss}{note}")
        out.append("")
    out.append(resources_detail(res) if res else "")
    cfg_secs = [s for s in rec.get("sections", []) if s["kind"] == "configuration"]
    out.append("## Configuration\n")
    if cmd.get("args"):
        out.append("Arguments:\n\n" + table(cmd["args"]))
    for c in rec.get("configs", []):
        out.append(f"`{c['path']}` (resolved `{c['resolved']}`, {c['bytes']} bytes, sha256 `{c['sha256']}`):\n")
        out.append("```yaml\n" + (c.get("text") or "(too large to keep; see the file)").rstrip() + "\n```\n")
    for s in cfg_secs:
        out.append(section(s))
    out.append(environment(rec))
    out.append(reproduce(rec))
    if rec.get("notes"):
        out.append("## Tracking notes\n")
        out.extend(f"- {n}" for n in rec["notes"])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def resource_table(r: dict, array: bool = False) -> str:
    cpu, mem, gpu, smp = r.get("cpu") or {}, r.get("memory") or {}, r.get("gpu") or {}, r.get("sampler") or {}
    rows = [
        ("wall time", fmt_s(r.get("wall_s")) + (f" task-time; span {fmt_s(r.get('span_s'))}" if array else "")),
        (
            "CPU time",
            f"{fmt_s(cpu.get('total_s'))} (user {fmt_s(cpu.get('user_s'))}, system {fmt_s(cpu.get('system_s'))}, "
            f"children {fmt_s(_add(cpu.get('children_user_s'), cpu.get('children_system_s')))})",
        ),
        (
            "peak RSS",
            f"{fmt_bytes(mem.get('peak_rss_bytes'))} (largest child {fmt_bytes(mem.get('children_peak_rss_bytes'))})",
        ),
        (
            "GPUs",
            f"{gpu.get('count')}"
            if gpu.get("available")
            else (f"none — {gpu.get('reason')}" if gpu.get("count") == 0 else f"not measured: {gpu.get('reason')}"),
        ),
        ("GPU-hours (allocated)", fmt_num(gpu.get("gpu_hours"), "not available")),
        ("GPU-hours (busy)", fmt_num(gpu.get("busy_gpu_hours"), "not available")),
        (
            "GPU energy",
            (
                f"{fmt_num(gpu['energy_j'])} J ({gpu['energy_j'] / 3.6e6:.4g} kWh)"
                if gpu.get("energy_j") is not None
                else ""
            )
            + (f" — {gpu.get('energy_note')}" if gpu.get("energy_note") else ""),
        ),
        (
            "sampling overhead",
            f"{fmt_s(smp.get('overhead_s'))} = {100 * (smp.get('overhead_fraction') or 0):.3f} % of wall "
            f"({smp.get('samples')} samples every {smp.get('interval_s')} s)",
        ),
    ]
    return "| resource | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def resources_detail(r: dict) -> str:
    gpu = r.get("gpu") or {}
    out = ["## Resources (this process)\n", resource_table(r)]
    if gpu.get("devices"):
        cols = [
            "index",
            "name",
            "util_mean_pct",
            "util_max_pct",
            "memory_used_max_bytes",
            "memory_total_bytes",
            "power_mean_w",
            "energy_j",
            "busy_s",
        ]
        rows = [{c: d.get(c) for c in cols} for d in gpu["devices"]]
        for row in rows:
            for c in ("memory_used_max_bytes", "memory_total_bytes"):
                row[c] = fmt_bytes(row[c])
        out.append("Per GPU (NVML, sampled; energy from the card's total-energy counter):\n")
        out.append(table(rows))
    return "\n".join(out)


def environment(rec: dict) -> str:
    env = rec.get("environment") or {}
    py, osd, cpu = env.get("python") or {}, env.get("os") or {}, env.get("cpu") or {}
    pk = env.get("packages") or {}
    torch = env.get("torch") or {}
    gpus = env.get("gpus") or []
    rows = {
        "Python": f"{py.get('version')} ({py.get('implementation')}, `{py.get('executable')}`)",
        "OS": f"{osd.get('platform')} (host `{osd.get('hostname')}`)",
        "CPU": f"{cpu.get('model')}; {cpu.get('usable')} of {cpu.get('logical')} logical CPUs usable; "
        f"{fmt_bytes(cpu.get('memory_bytes'))} memory",
        "GPUs": "; ".join(f"{g.get('index')}: {g.get('name')} ({fmt_bytes(g.get('memory_total_bytes'))})" for g in gpus)
        or f"none measured ({env.get('gpu_note')})",
        "NVIDIA driver / CUDA driver API": f"{env.get('driver_version')} / {env.get('cuda_driver_version')}",
        "torch / CUDA runtime": f"{torch.get('version')} / {torch.get('cuda_runtime')}"
        if torch
        else "torch not imported",
        "key packages": ", ".join(f"{p} {pk[p]}" for p in KEY_PACKAGES if p in pk),
    }
    if env.get("env"):
        rows["environment variables"] = ", ".join(f"`{k}={v}`" for k, v in env["env"].items())
    out = ["## Environment\n", "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items()) + "\n"]
    sl = rec.get("slurm")
    if sl:
        out.append("SLURM: " + ", ".join(f"{k} `{v}`" for k, v in sl.items() if v) + "\n")
    if pk:
        out.append(f"<details><summary>{len(pk)} installed packages</summary>\n")
        out.append("\n".join(f"    {k}=={v}" for k, v in pk.items()))
        out.append("\n</details>\n")
    return "\n".join(out)


def reproduce(rec: dict) -> str:
    git = rec.get("git") or {}
    cmd = rec.get("command") or {}
    data = (rec.get("log_files") or {}).get("data")
    rev = str(git.get("revision", "unknown")).removesuffix("-dirty")
    lines = ["## Reproduce\n", "```bash"]
    if rev != "unknown":
        lines.append(f"git checkout {rev}")
    if git.get("dirty") and git.get("diff"):
        cut = "  # the diff was cut: " if git.get("diff_truncated") else ""
        lines.append(
            f"python -c \"import json,sys; sys.stdout.write(json.load(open('{data}'))['git']['diff'] + '\\n')\" "
            f"| git apply{cut}"
        )
    lines.append(f"cd {cmd.get('cwd')}")
    lines.append(str(cmd.get("command_line")))
    lines.append("```\n")
    if git.get("dirty"):
        lines.append(
            f"The run had uncommitted changes (diff sha256 `{str(git.get('diff_sha256'))[:16]}`"
            + (", cut in the record" if git.get("diff_truncated") else ", kept whole in the data file")
            + (f"; untracked files: {', '.join(git['untracked'][:10])}" if git.get("untracked") else "")
            + "). Package versions: the Environment section above and the data file.\n"
        )
    return "\n".join(lines)


def section(s: dict) -> str:
    out = [f"### {s['title']}\n"]
    if s.get("text"):
        out.append(s["text"].rstrip() + "\n")
    if s.get("data") is not None:
        out.append(render_data(s["data"]))
    return "\n".join(out)


def render_data(d: Any) -> str:
    """A table when ``d`` is flat enough (dict of scalars, list of flat dicts, dict of flat dicts), else JSON."""
    if isinstance(d, dict) and d and all(_cell(v) for v in d.values()):
        return table(d)
    if isinstance(d, list) and d and all(isinstance(x, dict) and all(_cell(v) for v in x.values()) for x in d):
        return table(d)
    if isinstance(d, dict) and d and all(isinstance(v, dict) and all(_cell(x) for x in v.values()) for v in d.values()):
        return table([{"": k, **v} for k, v in d.items()])
    if isinstance(d, dict) and set(d) >= RESOURCE_KEYS:  # a resources summary (asd.resources)
        return resource_table(d, array="tasks" in d)
    if isinstance(d, dict) and d:  # mixed: the flat entries as one table, then one sub-section per nested one
        flat = {k: v for k, v in d.items() if _cell(v)}
        parts = [table(flat)] if flat else []
        parts += [f"**{k}**\n\n{render_data(v)}" for k, v in d.items() if k not in flat]
        return "\n".join(parts)
    text = json.dumps(d, indent=1, default=str)
    if len(text) > MAX_JSON_CHARS:
        text = text[:MAX_JSON_CHARS] + "\n... (cut; the data file holds all of it)"
    return "```json\n" + text + "\n```\n"


def table(d: dict | list[dict]) -> str:
    if isinstance(d, dict):
        return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {cell(v)} |" for k, v in d.items()) + "\n"
    cols: list[str] = []
    for row in d:
        cols += [c for c in row if c not in cols]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    body = "\n".join("| " + " | ".join(cell(row.get(c)) for c in cols) + " |" for row in d)
    return head + "\n" + body + "\n"


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _cell(v: Any) -> bool:
    return _scalar(v) or (isinstance(v, list) and len(v) <= 16 and all(_scalar(x) for x in v))


def cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, list):
        return "[" + ", ".join(cell(x) for x in v) + "]"
    if isinstance(v, (dict, tuple)):
        return "`" + json.dumps(v, default=str)[:80] + "`"
    return str(v).replace("|", "\\|").replace("\n", " ")


def fmt_num(v: Any, missing: str = "—") -> str:
    if v is None:
        return missing
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{float(v):.4g}"


def fmt_s(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    if v >= 3600:
        return f"{v / 3600:.2f} h"
    if v >= 120:
        return f"{v / 60:.1f} min"
    return f"{v:.3g} s"


def fmt_bytes(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.3g} {unit}" if unit != "B" else f"{int(v)} B"
        v /= 1024
    return f"{v} B"


def _add(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else a + b


def _rel(path: str, rec: dict) -> str:
    md = (rec.get("log_files") or {}).get("markdown")
    if not md:
        return path
    try:
        return os.path.relpath(path, os.path.dirname(os.path.abspath(md)))
    except ValueError:
        return path
