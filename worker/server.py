"""`worker serve`: build the collaborators from the config, start the pool, serve with waitress, drain on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from worker.config import Config, OfficeSettings
from worker.logs import setup as setup_logging
from worker.office import OfficePool

log = logging.getLogger("worker.server")

PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})


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


def make_server(app: Any, host: str, port: int, threads: int, channel_timeout_s: float) -> Any:
    """waitress on `threads` push threads plus 2 probe threads, so /health never waits behind a conversion."""
    dispatcher = ProbeFirstDispatcher(probe_threads=2)
    dispatcher.set_thread_count(threads)
    return create_server(app, host=host, port=port, threads=threads, ident="docworker",
                         channel_timeout=channel_timeout_s, _dispatcher=dispatcher)


def serve(host: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; then refuse new pushes, let in-flight jobs finish, stop every office, exit 0."""
    # HOST=127.0.0.1 keeps local runs (demo, tests, bench) off the network; Cloud Run needs all interfaces.
    host = host or os.environ.get("HOST", "").strip() or "0.0.0.0"
    config = Config.from_env()
    setup_logging(os.environ.get("LOG_FORMAT") or ("text" if os.isatty(1) else config.log_format))
    pool = OfficePool(config.office)
    started = time.monotonic()
    limit_mb = container_memory_limit_mb()
    warning = memory_budget_warning(config.office, limit_mb)
    if warning:
        log.warning(warning, extra={"fields": {"memory_ceiling_mb": config.office.memory_ceiling_mb,
                                               "memory_limit_mb": limit_mb}})

    def start_pool() -> None:
        try:
            pool.start()
            log.info("office pool ready", extra={"fields": {"pool_size": pool.size,
                                                            "start_s": round(time.monotonic() - started, 3)}})
        except Exception:  # /ready stays false; the platform restarts us
            if not pool.stopped:
                log.exception("office pool failed to start")

    # The office needs about a second to start; begin now so it overlaps the ~0.5 s of imports below.
    threading.Thread(target=start_pool, name="pool-start", daemon=True).start()
    try:
        from prometheus_client import CollectorRegistry

        from worker.auth import AuthSettings, PushAuthenticator
        from worker.job import Job
        from worker.metrics import Metrics, serve_metrics
        from worker.storage import Store
        from worker.web import Lifecycle, create_app

        auth = PushAuthenticator(AuthSettings(
            mode=config.auth_mode, audience=config.auth_audience,
            service_account=config.push_service_account, certs_url=config.auth_certs_url,
        ))
        registry = CollectorRegistry()
        metrics = Metrics(registry, pool)
        metrics.set_memory_budget(config.office.memory_ceiling_mb, limit_mb)
        job = Job(config, pool, Store())
    except BaseException:
        pool.stop()  # e.g. no credentials: never leave offices behind a start-up error
        raise
    life = Lifecycle()
    app = create_app(config, job=job, pool=pool, authenticator=auth, metrics=metrics, lifecycle=life)
    threads = config.office.pool_size + config.office.effective_queue_size + 4
    server = make_server(app, host, config.port, threads, channel_timeout_s=config.office.conversion_timeout_s + 60)
    if config.metrics_port:
        serve_metrics(config.metrics_port, registry, host)

    stopping = threading.Event()

    def shutdown() -> None:
        metrics.draining.set(1)
        log.info("draining", extra={"fields": {"in_flight": life.in_flight, "grace_s": config.shutdown_grace_s}})
        finished = life.drain(config.shutdown_grace_s)
        if finished:
            # The route has returned, but waitress still has to write the 204: exiting first would lose the ack.
            _wait_responses_sent(server, timeout_s=1.0)
        else:
            log.warning("grace period over with jobs in flight; they will be redelivered",
                        extra={"fields": {"in_flight": life.in_flight}})
        t = time.monotonic()
        pool.stop()
        log.info("office pool stopped", extra={"fields": {"stop_s": round(time.monotonic() - t, 3)}})
        os.kill(os.getpid(), signal.SIGUSR1)  # wakes the main loop to exit

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=shutdown, name="shutdown", daemon=True).start()

    def on_done(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_done)
    log.info("listening", extra={"fields": {"port": config.port, "threads": threads}})
    try:
        server.run()  # returns after SIGUSR1 (waitress catches SystemExit and stops its task threads)
    finally:
        if not stopping.is_set():
            pool.stop()
    log.info("stopped", extra={"fields": {"uptime_s": round(time.monotonic() - started, 3)}})
    return 0


def _wait_responses_sent(server: object, timeout_s: float) -> bool:
    """Wait until no waitress channel has a request in progress or bytes left to send (bounded)."""
    channels = getattr(server, "_map", None) or getattr(server, "map", None) or {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [ch for ch in list(channels.values())
                   if getattr(ch, "requests", None) or getattr(ch, "total_outbufs_len", 0)]
        if not pending:
            return True
        time.sleep(0.01)
    return False
