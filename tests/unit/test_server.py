"""The real waitress server `worker serve` builds: probes answer while every push thread is held by a conversion."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from flask import Flask
from waitress.server import create_server

from worker.server import make_server


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
