"""The real waitress server `worker serve` builds: probes answer while every push thread is held by a conversion."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from waitress.server import create_server

from worker.config import OfficeSettings
from worker.server import _wait_responses_sent, container_memory_limit_mb, make_server, memory_budget_warning


def blocking_app(release: threading.Event, entered: threading.Semaphore) -> Flask:
    """/push holds its thread until `release` is set, like a push waiting on a long conversion."""
    app = Flask(__name__)

    @app.post("/push")
    def push() -> tuple[str, int]:
        entered.release()
        release.wait(60)
        return "", 204

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@contextmanager
def running(build: Callable[[Flask], Any], app: Flask) -> Iterator[str]:
    server = build(app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


def hold_every_push_thread(url: str, executor: ThreadPoolExecutor, entered: threading.Semaphore,
                           threads: int) -> list[Future[requests.Response]]:
    """Send one push more than there are threads: every thread is held and one push waits in the queue."""
    futures = [executor.submit(requests.post, f"{url}/push", timeout=90) for _ in range(threads + 1)]
    for _ in range(threads):
        assert entered.acquire(timeout=30), "a push never reached the app"
    return futures


def test_health_answers_while_every_push_thread_is_held() -> None:
    release, entered = threading.Event(), threading.Semaphore(0)
    app = blocking_app(release, entered)
    with running(lambda a: make_server(a, "127.0.0.1", 0, threads=2, channel_timeout_s=120), app) as url, \
            ThreadPoolExecutor(max_workers=4) as executor:
        pushes = hold_every_push_thread(url, executor, entered, threads=2)
        # every push thread is held and a third push is queued behind them; the probe still gets an answer
        resp = requests.get(f"{url}/health", timeout=30)
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}
        assert not any(p.done() for p in pushes), "the pushes were not actually holding their threads"
        release.set()
        assert [p.result().status_code for p in pushes] == [204, 204, 204]


def test_control_plain_waitress_queues_the_probe_behind_held_pushes() -> None:
    """The failure the probe threads exist for: with one shared pool, /health waits for a push thread."""
    release, entered = threading.Event(), threading.Semaphore(0)
    app = blocking_app(release, entered)
    with running(lambda a: create_server(a, host="127.0.0.1", port=0, threads=2), app) as url, \
            ThreadPoolExecutor(max_workers=4) as executor:
        pushes = hold_every_push_thread(url, executor, entered, threads=2)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{url}/health", timeout=2)  # the pushes hold their threads for up to 60 s
        release.set()
        assert [p.result().status_code for p in pushes] == [204, 204, 204]


def test_the_drain_sees_a_response_until_it_is_written() -> None:
    """SIGTERM's drain waits on the socket map make_server shares: busy while a push is held, idle once answered."""
    release, entered = threading.Event(), threading.Semaphore(0)
    channels: dict[int, Any] = {}
    app = blocking_app(release, entered)
    with running(lambda a: make_server(a, "127.0.0.1", 0, threads=2, channel_timeout_s=120, channels=channels),
                 app) as url, ThreadPoolExecutor(max_workers=1) as executor:
        push = executor.submit(requests.post, f"{url}/push", timeout=90)
        assert entered.acquire(timeout=30), "the push never reached the app"
        assert _wait_responses_sent(channels, timeout_s=0.2) is False
        release.set()
        assert push.result().status_code == 204
        assert _wait_responses_sent(channels, timeout_s=30) is True


# -- the memory budget checked at start ---------------------------------------------------------------------------


@pytest.mark.parametrize(("v2", "v1", "expected"), [
    ("2147483648\n", None, 2048),          # Cloud Run / Docker with cgroup v2
    ("max\n", None, None),                 # v2, no limit
    (None, "3221225472\n", 3072),          # cgroup v1
    (None, "9223372036854771712\n", None),  # v1's "unlimited"
    (None, None, None),                    # not in a container
])
def test_container_memory_limit_is_read_from_the_cgroup(
    tmp_path: Path, v2: str | None, v1: str | None, expected: int | None
) -> None:
    paths = (tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes")
    for path, text in zip(paths, (v2, v1), strict=True):
        if text is not None:
            path.write_text(text)
    assert container_memory_limit_mb(paths) == expected


def test_memory_ceiling_counts_each_office_at_its_kill_limit_with_a_warming_spare() -> None:
    office = OfficeSettings(pool_size=2, max_rss_mb=640, rss_kill_mb=768)
    assert office.memory_ceiling_mb == 2 * (768 + 64 + 256 + 2 * 48) + 128
    assert OfficeSettings(pool_size=1, max_rss_mb=1000).memory_ceiling_mb == 1500 + 64 + 256 + 96 + 128


def test_a_container_smaller_than_the_ceiling_is_named_at_start() -> None:
    office = OfficeSettings(pool_size=2, max_rss_mb=640, rss_kill_mb=768)
    assert memory_budget_warning(office, None) is None
    assert memory_budget_warning(office, office.memory_ceiling_mb) is None
    warning = memory_budget_warning(office, 2048)
    assert warning is not None and "2496 MiB" in warning and "2048 MiB" in warning and "OFFICE_RSS_KILL_MB" in warning


def test_waitress_refuses_a_body_over_twice_max_body_bytes_before_receiving_it() -> None:
    """A declared 1 GiB body is answered 413 at once (nothing parked on disk); 1.5x the limit still reaches the app,
    which answers its own 413 (logged, counted)."""
    seen: list[int] = []
    app = Flask("bodies")
    app.config["MAX_CONTENT_LENGTH"] = 1000

    @app.post("/")
    def post() -> tuple[str, int]:
        seen.append(1)
        return "app", 413

    def huge() -> Iterator[bytes]:  # never sent past the headers: waitress answers on Content-Length
        yield b"x" * 2**20

    with running(lambda a: make_server(a, "127.0.0.1", 0, threads=2, channel_timeout_s=120, max_body_bytes=1000),
                 app) as url:
        near = requests.post(url + "/", data=b"x" * 1500, timeout=30)
        assert (near.status_code, near.text, seen) == (413, "app", [1])
        far = requests.post(url + "/", data=huge(), headers={"Content-Length": str(2**30)}, timeout=30)
        assert far.status_code == 413 and far.text != "app" and seen == [1]
