"""Print the table of config defect classes (docs/config.md) by running ``asd submit`` on each case.

    PYTHONPATH=. .venv/bin/python scripts/config_error_table.py > /tmp/table.md

The cases and their expected lines live in tests/config_cases.py; tests/test_cli.py checks the same lines,
the exit status and that nothing was written. Paths print as CFG (the config) and OUT (its run folder).
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from config_cases import CASES, write_case  # noqa: E402

from asd.cli import main  # noqa: E402


def run(body) -> tuple[list[str], int, bool]:
    with tempfile.TemporaryDirectory() as d:
        cfg, out = Path(d) / "run.yaml", Path(d) / "run"
        write_case(body, cfg, out)
        before = sorted(Path(d).rglob("*"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["submit", "--config", str(cfg)])
        untouched = sorted(Path(d).rglob("*")) == before and not out.exists()
        lines = [ln.replace(str(cfg), "CFG").replace(str(out), "OUT") for ln in err.getvalue().splitlines()]
        return lines, rc, untouched


def main_() -> None:
    print("| defect class | what `asd submit --config CFG` prints (stderr) | exit | nothing written |")
    print("|---|---|---|---|")
    for name, body, _ in CASES:
        lines, rc, untouched = run(body)
        shown = "<br>".join(f"`{ln.replace('|', chr(92) + '|')}`" for ln in lines)
        print(f"| {name} | {shown} | {rc} | {'yes' if untouched else 'NO'} |")


if __name__ == "__main__":
    main_()
