"""Suite-wide: say loudly at the end which corpus tests did not run, so a green run without the corpora is not mistaken
for a full one."""

from __future__ import annotations

import pytest

from tests import corpora
from tests.corpora import CORPUS_DIR_ENV, MISSING, REQUIRE_ENV


def corpus_skips(terminalreporter: pytest.TerminalReporter) -> list[str]:
    """Node ids of the tests skipped because a corpus is missing (see tests/corpora.py)."""
    found = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if MISSING in reason:
            found.append(report.nodeid)
    return sorted(found)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = corpus_skips(terminalreporter)
    if not skipped:
        return
    title = f"{len(skipped)} CORPUS TESTS DID NOT RUN: no corpus under {corpora.ROOT}"
    terminalreporter.write_sep("!", title, red=True)
    for nodeid in skipped:
        terminalreporter.write_line(f"  not run: {nodeid}")
    terminalreporter.write_line(f"  set {CORPUS_DIR_ENV} to the directory holding corpus/ and corpus-formats/; "
                                f"CI sets {REQUIRE_ENV}=1, which makes these failures", red=True)
