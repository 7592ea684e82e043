"""Render the sbatch templates shipped in ``asd/jobs/templates/`` from a run config, for hand submission.

Templates are ``asd/jobs/templates/<name>.sbatch.in`` (package data: found through ``importlib.resources``, so
an installed wheel renders them too) with ``{{key}}`` placeholders; a line that is only a placeholder
rendering to nothing (an optional ``#SBATCH`` directive) is dropped. Rendered scripts call
``python -m asd.jobs shard|merge`` and ``python -m asd profile`` (docs/jobs.md).
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path

TEMPLATE_PACKAGE = "asd.jobs"  # templates live in its ``templates/`` folder (pyproject package-data)
# rendered script name → (template, phase)
SCRIPTS = {
    "array_generate.sbatch": ("array_generate.sbatch.in", "generate"),
    "array_evaluate.sbatch": ("array_evaluate.sbatch.in", "evaluate"),
    "merge.sbatch": ("merge.sbatch.in", "generate"),
    "merge_evaluate.sbatch": ("merge.sbatch.in", "evaluate"),
    "profile.sbatch": ("profile.sbatch.in", "generate"),
}
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def read_template(name: str) -> str:
    """Text of the packaged template ``name`` (e.g. ``"merge.sbatch.in"``), from a source tree or a wheel."""
    return resources.files(TEMPLATE_PACKAGE).joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def render_text(template: str, values: dict[str, str]) -> str:
    """Fill ``{{key}}``; a line holding only a placeholder that renders empty is removed."""
    out = []
    for line in template.splitlines():
        only = _PLACEHOLDER.fullmatch(line.strip())

        def sub(m):
            if m.group(1) not in values:
                raise KeyError(f"template placeholder {{{{{m.group(1)}}}}} has no value")
            return values[m.group(1)]

        text = _PLACEHOLDER.sub(sub, line)
        if only and not text.strip():
            continue
        out.append(text)
    return "\n".join(out) + "\n"


def template_values(config: dict, config_path: str, script_dir: str, workdir: str | None = None) -> dict[str, str]:
    """Values for the placeholders from the run config (``jobs`` section and the hierarchy's GPUs)."""
    from asd.jobs.plan import gpus_per_task

    job = config["jobs"]
    gpus = gpus_per_task(job, config)
    h = config.get("hierarchy")
    node_gpus = h.gpus_per_node if (h is not None and getattr(h, "backend", "hf") == "vllm") else gpus
    d = lambda flag, v: f"#SBATCH --{flag}={v}" if v else ""  # noqa: E731
    return {
        "config": config_path,
        "script_dir": script_dir,
        "workdir": workdir or str(Path.cwd()),
        "job_name": f"asd-{Path(job.output_dir).name}",
        "output_dir": job.output_dir,
        "log_dir": f"{job.output_dir}/logs",
        "last_shard": str(job.shards - 1),
        "array_parallelism": str(job.array_parallelism),
        "cpus_per_task": str(job.cpus_per_task),
        "gpus_directive": d("gpus-per-node", gpus),
        "node_gpus_directive": d("gpus-per-node", node_gpus),
        "mem_directive": d("mem", f"{int(job.mem_gb * 1024)}M" if job.mem_gb else ""),
        "partition_directive": d("partition", job.partition),
        "account_directive": d("account", job.account),
        "timeout_min": str(job.timeout_min),
        "signal_delay_s": str(job.slurm_signal_delay_s),
        "python": job.python or sys.executable,
        "setup": "\n".join(job.setup),
    }


def render_all(
    config_path: str | Path, out_dir: str | Path, workdir: str | None = None, make_log_dir: bool = True
) -> list[Path]:
    """Write every script of :data:`SCRIPTS` into ``out_dir``; creates the run's log folder (sbatch needs it)."""
    from asd.run_config import load_config

    config = load_config(config_path)
    if "jobs" not in config:
        raise ValueError(f"{config_path}: missing section 'jobs'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = template_values(config, str(config_path), str(out), workdir)
    written = []
    for name, (tmpl, phase) in SCRIPTS.items():
        values = dict(
            base,
            phase=phase,
            script_name=name,
            merged_name="traces.h5" if phase == "generate" else f"traces-{phase}.h5",
        )
        text = render_text(read_template(tmpl), values)
        (out / name).write_text(text)
        written.append(out / name)
    if make_log_dir:
        (Path(base["workdir"]) / base["log_dir"]).mkdir(parents=True, exist_ok=True)
    return written
