"""Counts of the hostile-input table for the run's summary: cases, clear errors, accepted
(once-refused inputs that are valid real-world files now), tracebacks, crashes, inputs
clobbered (what the issue's closing note reports)."""

from __future__ import annotations

from typing import Any

_TABLE_TEST = "test_hostile_input_is_refused_clearly_and_nothing_changes"
_counts: dict[str, int] = {
    "cases": 0,
    "clear errors": 0,
    "accepted": 0,
    "tracebacks": 0,
    "crashes": 0,
    "inputs clobbered": 0,
}


def pytest_runtest_logreport(report: Any) -> None:
    if _TABLE_TEST not in report.nodeid or report.when != "call":
        return
    _counts["cases"] += 1
    if report.passed:
        _counts["accepted" if ("accepted", True) in report.user_properties else "clear errors"] += 1
        return
    text = str(report.longrepr)
    if "crashed with signal" in text or "exit status -" in text:
        _counts["crashes"] += 1
    elif "Traceback" in text or "exit status 1" in text:
        _counts["tracebacks"] += 1
    if "files changed" in text:
        _counts["inputs clobbered"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _counts["cases"]:
        summary = ", ".join(f"{name} {n}" for name, n in _counts.items())
        terminalreporter.write_line(f"adversarial input table: {summary}")
