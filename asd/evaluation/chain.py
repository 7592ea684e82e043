"""``asd run`` job ``pipeline``: run ``asd`` subcommands one after the other (section ``pipeline``).

    run:
      job: pipeline
    pipeline:
      steps:
        - {command: generate-data, args: [--config, configs/predictor_data_small.yaml]}
        - {command: evaluate, args: [--config, configs/evaluation.yaml]}
        - {command: report, args: [runs/evaluation], needs: [analyze]}

Each step runs ``python -m asd <command> <args…>`` in a child process (its output streams through). A step
whose command — or one of the commands it ``needs`` — this ``asd`` does not have is skipped with a line that
says so, and the chain goes on; a step that fails stops the chain (``ChainError``, exit status 2). The job
returns, per step, its status (``ran`` | ``skipped``), exit status and seconds. ``report`` names the file to
point the user to at the end (printed whether or not it exists, with which).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from asd.config_loader import check_fields


class ChainError(ValueError):
    """A step of the chain failed."""


@dataclass
class ChainStep:
    command: str  # an asd subcommand, e.g. "evaluate"
    args: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)  # further subcommands this step needs (e.g. report: analyze)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if not self.command or self.command.startswith("-"):
            raise ValueError(f"command must be an asd subcommand name, got {self.command!r}")


@dataclass
class PipelineConfig:
    """YAML section ``pipeline``: the ``asd`` subcommands ``asd run`` chains (job ``pipeline``)."""

    steps: list[ChainStep] = field(default_factory=list)
    report: str | None = None  # where the report will be (printed at the end)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if not self.steps:
            raise ValueError("steps must list at least one asd subcommand")


def available_commands() -> set[str]:
    """The subcommands of this ``asd`` (as ``asd --help`` lists them)."""
    import argparse

    from asd.cli import build_parser

    parser = build_parser()
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return set(a.choices)
    return set()


def run_chain(sections: dict, args, log=print) -> dict:
    """Run the steps of ``sections["pipeline"]`` (see the module docstring); ChainError on a failed step."""
    cfg: PipelineConfig = sections.get("pipeline") or PipelineConfig(steps=[])
    have = available_commands()
    out = []
    for i, st in enumerate(cfg.steps, 1):
        missing = [c for c in [st.command, *st.needs] if c not in have]
        line = " ".join(["asd", st.command, *st.args])
        if missing:
            log(f"asd run: step {i}/{len(cfg.steps)} `{line}` skipped: this asd has no `asd {missing[0]}` command yet")
            out.append({"step": i, "command": st.command, "status": "skipped", "missing": missing})
            continue
        log(f"asd run: step {i}/{len(cfg.steps)}: {line}")
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "asd", st.command, *st.args]).returncode
        secs = time.perf_counter() - t0
        out.append({"step": i, "command": st.command, "status": "ran", "returncode": rc, "seconds": secs})
        if rc != 0:
            raise ChainError(
                f"step {i} `{line}` failed with exit status {rc} after {secs:.0f} s; steps after it not run"
            )
        log(f"asd run: step {i} done in {secs:.1f} s")
    if cfg.report:
        where = Path(cfg.report)
        if where.exists():
            log(f"asd run: the report is {where}")
        else:
            log(f"asd run: no report at {where}: the step that writes it did not run (see above)")
    return {"steps": out, "report": cfg.report}
