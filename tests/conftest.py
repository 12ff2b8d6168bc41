"""Suite-wide: say loudly at the end which corpus tests did not run, so a green run without the corpora is not mistaken
for a full one; and the `app`/`client` fixtures of the route tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import corpora
from tests.corpora import CORPUS_DIR_ENV, MISSING, REQUIRE_ENV
from tests.harness.web_app import RecordingJob, make_app
from worker.config import Config, OfficeSettings
from worker.job import JobResult, Outcome


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


# -- the Flask app of the route tests (tests/harness/web_app.py): override `app_config` or `app_job` in a module --


@pytest.fixture
def app_config(tmp_path: Path) -> Config:
    """The worker's config for a route test: AUTH_MODE=off, work under tmp_path."""
    return Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path), auth_mode="off")


@pytest.fixture
def app_job() -> RecordingJob:
    """The job behind the route: every event converts."""
    return RecordingJob(JobResult(Outcome.CONVERTED, "ok", output="gs://out/x.pdf"))


@pytest.fixture
def app(app_config: Config, app_job: RecordingJob) -> Flask:
    return make_app(app_config, job=app_job)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
