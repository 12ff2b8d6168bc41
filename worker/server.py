"""`worker serve`: build the collaborators from the config, start the pool, serve with waitress, drain on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from prometheus_client import CollectorRegistry
from waitress.server import create_server

from worker.auth import AuthSettings, PushAuthenticator
from worker.config import Config
from worker.job import Job
from worker.logs import setup as setup_logging
from worker.metrics import Metrics, serve_metrics
from worker.office import OfficePool
from worker.storage import Store
from worker.web import Lifecycle, create_app

log = logging.getLogger("worker.server")


def serve(host: str = "0.0.0.0") -> int:
    """Run until SIGTERM/SIGINT; then refuse new pushes, let in-flight jobs finish, stop every office, exit 0."""
    config = Config.from_env()
    setup_logging(os.environ.get("LOG_FORMAT") or ("text" if os.isatty(1) else config.log_format))
    auth = PushAuthenticator(AuthSettings(
        mode=config.auth_mode, audience=config.auth_audience,
        service_account=config.push_service_account, certs_url=config.auth_certs_url,
    ))
    pool = OfficePool(config.office)
    registry = CollectorRegistry()
    metrics = Metrics(registry, pool)
    job = Job(config, pool, Store())
    life = Lifecycle()
    app = create_app(config, job=job, pool=pool, authenticator=auth, metrics=metrics, lifecycle=life)
    # Enough threads that /health and /ready always find one, even with every office busy and the queue full.
    threads = config.office.pool_size + config.office.effective_queue_size + 4
    server = create_server(app, host=host, port=config.port, threads=threads, ident="docworker",
                           channel_timeout=config.office.conversion_timeout_s + 60)
    if config.metrics_port:
        serve_metrics(config.metrics_port, registry)

    started = time.monotonic()

    def start_pool() -> None:
        try:
            pool.start()
            log.info("office pool ready", extra={"fields": {"pool_size": pool.size,
                                                            "start_s": round(time.monotonic() - started, 3)}})
        except Exception:  # /ready stays false; the platform restarts us
            log.exception("office pool failed to start")

    threading.Thread(target=start_pool, name="pool-start", daemon=True).start()

    stopping = threading.Event()

    def shutdown() -> None:
        metrics.draining.set(1)
        log.info("draining", extra={"fields": {"in_flight": life.in_flight, "grace_s": config.shutdown_grace_s}})
        finished = life.drain(config.shutdown_grace_s)
        if not finished:
            log.warning("grace period over with jobs in flight; they will be redelivered",
                        extra={"fields": {"in_flight": life.in_flight}})
        pool.stop()
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
