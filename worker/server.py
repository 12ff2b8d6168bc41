"""`worker serve`: build the parts from the config (`build`), then serve with waitress and drain on SIGTERM (`run`)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from worker.config import Config, OfficeSettings
from worker.logs import setup as setup_logging
from worker.office import OfficePool

if TYPE_CHECKING:  # imported at run time only after the pool has started (see build)
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from worker.metrics import Metrics
    from worker.web import Lifecycle

log = logging.getLogger("worker.server")

PROBE_PATHS = frozenset({"/health", "/ready", "/metrics", "/gotenberg/health"})


class ProbeFirstDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]  # waitress is untyped
    """waitress's dispatcher, plus a small pool of threads that serve only GET /health, /ready and /metrics.

    With one shared pool a probe waits behind every queued push (measured: 350-700 ms during a burst of 30-60
    pushes, each downloading before it hears "queue full"); Cloud Run's liveness probe must not depend on that.
    """

    def __init__(self, probe_threads: int = 2) -> None:
        super().__init__()
        self.probes = ThreadedTaskDispatcher()
        self.probes.set_thread_count(probe_threads)

    def add_task(self, task: Any) -> None:
        requests = getattr(task, "requests", None)
        request = requests[0] if requests else None
        if request is not None and getattr(request, "command", "") in ("GET", "HEAD") \
                and getattr(request, "path", "") in PROBE_PATHS:
            self.probes.add_task(task)
        else:
            super().add_task(task)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.probes.shutdown(cancel_pending, timeout)
        return bool(super().shutdown(cancel_pending, timeout))


CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def container_memory_limit_mb(paths: tuple[Path, ...] = CGROUP_MEMORY_LIMITS) -> int | None:
    """The container's memory limit from its cgroup (v2, then v1); None when unlimited or not in a container."""
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if not text.isdigit() or int(text) >= 2**60:  # "max" (v2) or the v1 "unlimited" sentinel
            return None
        return int(text) // 2**20
    return None


def memory_budget_warning(office: OfficeSettings, limit_mb: int | None) -> str | None:
    """Say so at start when the offices can outgrow the container: the kernel would kill the whole worker."""
    if limit_mb is None or office.memory_ceiling_mb <= limit_mb:
        return None
    return (f"POOL_SIZE={office.pool_size} offices with OFFICE_RSS_KILL_MB={office.effective_rss_kill_mb} can use "
            f"{office.memory_ceiling_mb} MiB, more than the container's {limit_mb} MiB: lower OFFICE_RSS_KILL_MB "
            f"or POOL_SIZE, or raise the memory limit (docs/stress.md, Memory ceiling)")


def make_server(app: Any, host: str, port: int, threads: int, channel_timeout_s: float,
                channels: dict[int, Any] | None = None, max_body_bytes: int = 16 * 2**20) -> Any:
    """waitress on `threads` push threads plus 2 probe threads, so /health never waits behind a conversion.

    `channels` is waitress's socket map: pass a dict to see its connections (`_wait_responses_sent`).
    waitress receives a whole body before the app runs (its own cap is 1 GiB), so an unauthenticated caller could
    park a gigabyte on disk per request before the app's MAX_BODY_BYTES 413 and its 401: waitress refuses bodies
    over twice MAX_BODY_BYTES itself (a plain 413, no log line of ours); between 1x and 2x the app answers.
    """
    dispatcher = ProbeFirstDispatcher(probe_threads=2)
    dispatcher.set_thread_count(threads)
    return _create_server(app, {} if channels is None else channels, dispatcher, host=host, port=port,
                          threads=threads, ident="docworker", channel_timeout=channel_timeout_s,
                          max_request_body_size=2 * max_body_bytes)


@dataclass
class Parts:
    """What `worker serve` runs, built from the config by `build`; `run` owns the signals, the drain and the stop."""

    config: Config
    app: Flask
    pool: OfficePool
    metrics: Metrics
    registry: CollectorRegistry
    lifecycle: Lifecycle
    server: Any  # waitress's server (untyped)
    channels: dict[int, Any]  # the server's socket map
    host: str
    threads: int
    started: float


def serve(host: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; then refuse new pushes, let in-flight jobs finish, stop every office, exit 0."""
    # HOST=127.0.0.1 keeps local runs (demo, tests, bench) off the network; Cloud Run needs all interfaces.
    host = host or os.environ.get("HOST", "").strip() or "0.0.0.0"
    config = Config.from_env()
    setup_logging(os.environ.get("LOG_FORMAT") or ("text" if os.isatty(1) else config.log_format))
    return run(build(config, host))


def build(config: Config, host: str) -> Parts:
    """Every part from the config, the pool starting in the background; nothing serves yet."""
    pool = OfficePool(config.office)
    started = time.monotonic()
    limit_mb = container_memory_limit_mb()
    warning = memory_budget_warning(config.office, limit_mb)
    if warning:
        log.warning(warning, extra={"fields": {"memory_ceiling_mb": config.office.memory_ceiling_mb,
                                               "memory_limit_mb": limit_mb}})
    # The office needs about a second to start; begin now so it overlaps the ~0.5 s of imports below.
    threading.Thread(target=_start_pool, args=(pool, started), name="pool-start", daemon=True).start()
    try:
        return _build_parts(config, host, pool, limit_mb, started)
    except BaseException:
        pool.stop()  # e.g. no credentials, port taken: never leave offices behind a start-up error
        raise


def _start_pool(pool: OfficePool, started: float) -> None:
    try:
        pool.start()
        log.info("office pool ready", extra={"fields": {"pool_size": pool.size,
                                                        "start_s": round(time.monotonic() - started, 3)}})
    except Exception:  # /ready stays false; the platform restarts us
        if not pool.stopped:
            log.exception("office pool failed to start")


def _build_parts(config: Config, host: str, pool: OfficePool, limit_mb: int | None, started: float) -> Parts:
    from prometheus_client import CollectorRegistry

    from worker.auth import AuthSettings, PushAuthenticator
    from worker.job import Job
    from worker.metrics import Metrics
    from worker.options import MountedSecrets
    from worker.storage import Store
    from worker.web import Lifecycle, create_app

    auth = PushAuthenticator(AuthSettings(
        mode=config.auth_mode, audience=config.auth_audience,
        service_account=config.push_service_account, certs_url=config.auth_certs_url,
    ))
    registry = CollectorRegistry()
    metrics = Metrics(registry, pool)
    metrics.set_memory_budget(config.office.memory_ceiling_mb, limit_mb)
    secrets = None if config.secrets_dir is None else MountedSecrets(config.secrets_dir)
    job = Job(config, pool, Store(), secrets=secrets)
    life = Lifecycle()
    sync_auth = PushAuthenticator(AuthSettings(  # the synchronous route's callers: SYNC_CALLERS too
        mode=config.auth_mode, audience=config.auth_audience, service_account=config.push_service_account,
        certs_url=config.auth_certs_url, other_accounts=config.sync_callers,
    ))
    app = create_app(config, job=job, pool=pool, authenticator=auth, metrics=metrics, lifecycle=life,
                     converter=pool, sync_authenticator=sync_auth)
    threads = config.office.pool_size + config.office.effective_queue_size + 4 + config.effective_sync_max_offices \
        + config.effective_sync_queue_size  # room for the synchronous route's admitted requests beside pushes
    channels: dict[int, Any] = {}
    server = make_server(app, host, config.port, threads, config.office.conversion_timeout_s + 60, channels,
                         config.max_body_bytes)
    return Parts(config, app, pool, metrics, registry, life, server, channels, host, threads, started)


def run(parts: Parts) -> int:
    """Serve until SIGTERM/SIGINT, then drain and stop (`_drain_and_stop`); 0 on a clean stop."""
    from worker.metrics import serve_metrics

    if parts.config.metrics_port:
        serve_metrics(parts.config.metrics_port, parts.registry, parts.host)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=_drain_and_stop, args=(parts,), name="shutdown", daemon=True).start()

    def on_done(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_done)
    log.info("listening", extra={"fields": {"port": parts.config.port, "threads": parts.threads}})
    try:
        parts.server.run()  # returns after SIGUSR1 (waitress catches SystemExit and stops its task threads)
    finally:
        if not stopping.is_set():
            parts.pool.stop()
    log.info("stopped", extra={"fields": {"uptime_s": round(time.monotonic() - parts.started, 3)}})
    return 0


def _drain_and_stop(parts: Parts) -> None:
    """Refuse new pushes, wait for those in flight (bounded), stop the offices, then wake the main loop to exit."""
    config, life = parts.config, parts.lifecycle
    parts.metrics.draining.set(1)
    log.info("draining", extra={"fields": {"in_flight": life.in_flight, "grace_s": config.shutdown_grace_s}})
    if life.drain(config.shutdown_grace_s):
        # The route has returned, but waitress still has to write the 204: exiting first would lose the ack.
        _wait_responses_sent(parts.channels, timeout_s=1.0)
    else:
        log.warning("grace period over with jobs in flight; they will be redelivered",
                    extra={"fields": {"in_flight": life.in_flight}})
    t = time.monotonic()
    parts.pool.stop()
    log.info("office pool stopped", extra={"fields": {"stop_s": round(time.monotonic() - t, 3)}})
    os.kill(os.getpid(), signal.SIGUSR1)  # wakes the main loop to exit


# -- waitress internals, checked against waitress 3.0.2 -------------------------------------------------------------
# waitress has no public API for either: a custom task dispatcher is only accepted through `_dispatcher`, which
# create_server calls a "test shim", and there is no "every response written" signal (graceful shutdown is the open
# https://github.com/Pylons/waitress/pull/499). `map`, the socket map, is a public argument of create_server.
# Both are covered by tests/unit/test_server.py (the dispatcher) and test_ops' SIGTERM drain (the wait).


def _create_server(app: Any, channels: dict[int, Any], dispatcher: ThreadedTaskDispatcher, **adjustments: Any) -> Any:
    return create_server(app, map=channels, _dispatcher=dispatcher, **adjustments)


def _wait_responses_sent(channels: dict[int, Any], timeout_s: float) -> bool:
    """Wait until no waitress channel has a request in progress or bytes left to send (bounded).

    Reads each channel's `requests` and `total_outbufs_len`, waitress's own test of whether a channel is busy.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [ch for ch in list(channels.values())
                   if getattr(ch, "requests", None) or getattr(ch, "total_outbufs_len", 0)]
        if not pending:
            return True
        time.sleep(0.01)
    return False
