"""A run config composed of per-component sections, each loaded strictly into its own dataclass.

A YAML file holds top-level sections (``hierarchy:``, ``evaluation:``, ...); each
section maps to the dataclass of the component that consumes it. Classes are
named as ``"module:attr"`` strings so that loading a config imports no heavy
backend. An unknown section is an error listing the valid sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asd.config_loader import ConfigError, from_dict, read_yaml
from asd.registry import resolve

# section → "module:Class". Components add their section here.
SECTIONS: dict[str, str] = {
    "hierarchy": "asd.models.config:HierarchyConfig",
    "evaluation": "asd.evaluation.config:EvaluationConfig",
    "cell": "asd.evaluation.config:CellConfig",
    "pipeline": "asd.evaluation.chain:PipelineConfig",
    "cost_profiling": "asd.profiler_config:ProfilerConfig",
    "jobs": "asd.jobs.plan:JobConfig",
    "testbed": "asd.testbed.config:TestbedConfig",
    "training": "asd.testbed.config:TrainingConfig",
    "policy": "asd.core.dp:PolicyConfig",
    "run": "asd.commands.run:RunConfig",
    "synthetic": "asd.core.synthetic:SyntheticConfig",
    "data": "asd.data.config:DataConfig",
    "sandbox": "asd.eval.sandbox:SandboxConfig",
    "cascade": "asd.cascade:CascadeConfig",
}


def section_class(name: str) -> type:
    return resolve(SECTIONS, name, "config section", ConfigError)


def load_config(path: str | Path) -> dict[str, Any]:
    """Load every section of ``path`` into its dataclass: ``{section: instance}``."""
    data = read_yaml(path)
    out: dict[str, Any] = {}
    for name, value in data.items():
        out[name] = from_dict(section_class(name), value, source=str(path), path=name)
    return out


def load_section(path: str | Path, name: str):
    """One section of ``path``, strictly; error naming the file if it is missing."""
    data = read_yaml(path)
    if name not in data:
        raise ConfigError(f"{path}: missing section {name!r}; present: {', '.join(sorted(data)) or 'none'}")
    return from_dict(section_class(name), data[name], source=str(path), path=name)
