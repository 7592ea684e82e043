"""A run config composed of per-component sections, each loaded strictly into its own dataclass.

A YAML file holds top-level sections (``hierarchy:``, ``evaluation:``, ...); each
section maps to the dataclass of the component that consumes it. Classes are
named as ``"module:attr"`` strings so that loading a config imports no heavy
backend. An unknown or empty section is an error listing the valid sections.

``load_config`` and ``load_section`` then run the whole file through
:func:`asd.config_check.validate` (models resolve, stage indices, size bounds, rules
across sections), so that every command refuses a bad config before it writes anything.
Every problem is one line of the ``ConfigError`` (docs/config.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asd.config_loader import ConfigError, from_dict, locator, short_repr
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
    "layout": "asd.layout.config:LayoutConfig",
    "predictor_data": "asd.predictor_data.config:PredictorDataConfig",
    "predictor": "asd.predictor.config:PredictorConfig",
    "predictor_training": "asd.predictor.config:TrainPredictorConfig",
}


def section_class(name: str) -> type:
    return resolve(SECTIONS, name, "config section", ConfigError)


def load_config(path: str | Path, validate: bool = True) -> dict[str, Any]:
    """Load every section of ``path`` into its dataclass: ``{section: instance}``.

    ``validate``: also run the checks across sections (:func:`asd.config_check.validate`)."""
    from asd.config_yaml import read_doc

    doc = read_doc(path)
    where = locator(doc.source, doc.lines)
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, value in doc.data.items():
        key = str(name)
        if name not in SECTIONS:
            errors.append(
                f"{where(key)}: unknown config section {short_repr(name)}; valid: {', '.join(sorted(SECTIONS))}"
            )
            continue
        if value is None:
            errors.append(f"{where(key)}: section {key!r} is empty: give its keys, or delete it to use the defaults")
            continue
        try:
            out[key] = from_dict(section_class(key), value, source=doc.source, path=key, lines=doc.lines)
        except ConfigError as e:
            errors.extend(e.errors)
    if errors:
        raise ConfigError(*errors)
    if validate:
        from asd.config_check import validate as check

        check(out, source=doc.source, lines=doc.lines)
    return out


def load_section(path: str | Path, name: str):
    """One section of ``path`` (the whole file is loaded and validated); error naming the file if it is missing."""
    sections = load_config(path)
    if name not in sections:
        raise ConfigError(f"{path}: missing section {name!r}; present: {', '.join(sorted(sections)) or 'none'}")
    return sections[name]
