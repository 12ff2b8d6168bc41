"""The Flask app the route tests run, built by worker.web.create_app from a config (Flask tutorial style): the
`app` and `client` fixtures of tests/conftest.py use `make_app`, and tests that vary a part call it themselves."""

from __future__ import annotations

from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from worker.auth import AuthSettings, PushAuthenticator
from worker.config import Config
from worker.events import ObjectEvent
from worker.job import JobResult
from worker.metrics import Metrics
from worker.web import Lifecycle, create_app


class RecordingJob:
    """Answers every event with one fixed result and keeps the events that got past the route (no office, no GCS)."""

    def __init__(self, result: JobResult) -> None:
        self.result = result
        self.events: list[ObjectEvent] = []

    @property
    def calls(self) -> int:
        return len(self.events)

    def run(self, event: ObjectEvent) -> JobResult:
        self.events.append(event)
        return self.result


class NoPool:
    """/ready is not exercised; create_app only needs the pool's read-only surface."""

    queue_depth = size = 0

    def __init__(self) -> None:
        self.sandbox_layers: dict[str, bool] = {}
        self.restarts: dict[str, int] = {}

    def ready(self) -> bool:
        return True

    def status(self) -> list[Any]:
        return []


def make_app(config: Config, *, job: Any, pool: Any = None, authenticator: PushAuthenticator | None = None,
             metrics: Metrics | None = None, lifecycle: Lifecycle | None = None) -> Flask:
    """The real app; parts not given are inert: no pool, the config's auth mode, a fresh metrics registry."""
    return create_app(config, job=job, pool=pool if pool is not None else NoPool(),
                      authenticator=authenticator or PushAuthenticator(AuthSettings(config.auth_mode)),
                      metrics=metrics or Metrics(CollectorRegistry()), lifecycle=lifecycle)
