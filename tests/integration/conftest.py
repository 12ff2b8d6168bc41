"""Real emulators for integration tests, started once per session and always stopped by their own PID."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import storage

from worker import emulators
from worker.storage import emulator_client


@pytest.fixture(scope="session")
def emulator_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the emulators write their logs; printed in failures so a hang can be diagnosed."""
    return tmp_path_factory.mktemp("emulator-logs")


@pytest.fixture(scope="session")
def pubsub_emulator(emulator_log_dir: Path) -> Iterator[emulators.Proc]:
    """Google's Pub/Sub emulator; a missing jar or java FAILS the tests that need it, never skips them."""
    try:
        proc = emulators.start_pubsub_emulator(emulator_log_dir)
    except emulators.EmulatorMissing as exc:
        pytest.fail(str(exc))
    yield proc
    emulators.stop(proc)


@pytest.fixture(scope="session")
def fake_gcs(emulator_log_dir: Path) -> Iterator[emulators.Proc]:
    """One plain fake-gcs-server (no events) for the session; use `bucket` for a fresh bucket per test."""
    proc = emulators.start_fake_gcs(emulator_log_dir)
    yield proc
    emulators.stop(proc)


@pytest.fixture(scope="session")
def gcs_client(fake_gcs: emulators.Proc) -> storage.Client:
    """A google-cloud-storage client aimed at the session's fake-gcs-server."""
    return emulator_client(fake_gcs.url)


@pytest.fixture
def bucket(fake_gcs: emulators.Proc) -> str:
    """A new empty bucket on the session's fake-gcs-server, so tests never see each other's objects."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(fake_gcs.url, name)
    return name


StartChainGcs = Callable[..., emulators.Proc]


@pytest.fixture
def start_chain_gcs(pubsub_emulator: emulators.Proc, emulator_log_dir: Path) -> Iterator[StartChainGcs]:
    """Factory for a fake-gcs-server publishing finalize events to the session's Pub/Sub emulator.

    Call `start_chain_gcs(project=, topic=, event_bucket=None, event_prefix=None)` AFTER creating the topic.
    """
    started: list[emulators.Proc] = []

    def start(
        *, project: str, topic: str, event_bucket: str | None = None, event_prefix: str | None = None
    ) -> emulators.Proc:
        proc = emulators.start_fake_gcs(
            emulator_log_dir,
            pubsub_host=pubsub_emulator.host,
            project=project,
            topic=topic,
            event_bucket=event_bucket,
            event_prefix=event_prefix,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        emulators.stop(proc)
