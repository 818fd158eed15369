"""Notebook time budget for ``pytest --nbval-lax chapters`` (``make chapters``).

Every notebook's execution time (all its cells, kernel start included) is printed at the
end of the run, and a notebook past ``LLMBOOK_NOTEBOOK_LIMIT_S`` seconds (default 240, i.e.
the book's 3-minute budget plus a margin for a slower machine) fails the run.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

LIMIT_S = float(os.environ.get("LLMBOOK_NOTEBOOK_LIMIT_S", "240"))
_times: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not _times:
        return
    tr = terminalreporter
    tr.section("notebook times")
    for path, seconds in sorted(_times.items()):
        flag = "  <-- over the limit" if seconds > LIMIT_S else ""
        tr.write_line(f"{seconds:7.1f} s  {path}{flag}")
    tr.write_line(f"{sum(_times.values()):7.1f} s  in all ({len(_times)} notebooks)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    over = {p: s for p, s in _times.items() if s > LIMIT_S}
    if over:
        names = ", ".join(f"{p} ({s:.0f} s)" for p, s in sorted(over.items()))
        print(f"\nnotebooks over the {LIMIT_S:.0f} s limit: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
