"""The stress campaign (docs/stress.md). CI runs the small sizes; `make stress` runs the full ones (marked slow).

Each scenario appends its report to run/stress-results.jsonl and prints it in the terminal summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import emulator_log_dir, pubsub_emulator  # noqa: F401  (session fixtures)
from tests.stress.harness import Report
from worker import emulators

_REPORTS: list[Report] = []


@pytest.fixture
def record() -> Iterator[list[Report]]:
    """Append a Report here; it is saved and printed at the end of the run even when the test fails."""
    mine: list[Report] = []
    yield mine
    for report in mine:
        report.save()
        print("\n" + report.text())
        _REPORTS.append(report)


@pytest.fixture(scope="session")
def pubsub(pubsub_emulator: emulators.Proc) -> emulators.Proc:  # noqa: F811
    """The emulator, but a missing jar or java FAILS: the campaign must not be skipped quietly."""
    emulators.pubsub_jar()
    return pubsub_emulator


@pytest.fixture
def logs(emulator_log_dir: Path, request: pytest.FixtureRequest) -> Path:  # noqa: F811
    path = emulator_log_dir / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORTS:
        terminalreporter.section("stress reports")
        for report in _REPORTS:
            terminalreporter.write_line(report.text())
