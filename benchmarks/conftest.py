"""Benchmarks: print the ``ratio_*`` entries of ``extra_info`` (speed-ups measured interleaved in one test)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import format_table, ratio_rows  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not getattr(session, "benchmarks", None):
        return
    rows = ratio_rows({"group": b.group, "name": b.name, "extra_info": b.extra_info} for b in session.benchmarks)
    table = format_table(rows)
    if table:
        terminalreporter.write_sep("-", "speed ratios (interleaved medians, same minute)")
        terminalreporter.write_line(table)
