"""Flask routes: POST / (and /pubsub/push), GET /health, /ready, /metrics. Thin: parse, check, delegate, map.

The one table mapping results and errors to HTTP statuses is here (Pub/Sub acks only 102/200/201/202/204).
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from worker.auth import PushAuthenticator
from worker.config import Config
from worker.errors import Reason, WorkerError
from worker.events import NotStorageEvent, ObjectEvent, parse_push
from worker.job import Ignore, JobResult, Outcome
from worker.logs import trace_fields
from worker.metrics import CONTENT_TYPE, Metrics
from worker.office import PoolView

log = logging.getLogger("worker.push")

ACK = 204
# The acknowledgement table (architecture.md). Every outcome not listed acks.
RETRY_STATUS = {Reason.QUEUE_FULL: 429}  # any other retryable reason -> 503
REFUSAL_STATUS = {Reason.BAD_REQUEST: 400, Reason.UNAUTHENTICATED: 401, Reason.FORBIDDEN: 403}


def status_for(result: JobResult) -> int:
    """Ack everything the worker finished with (done, duplicate, ignored, failure recorded); nack the rest."""
    if result.outcome != Outcome.RETRY:
        return ACK
    return RETRY_STATUS.get(Reason(result.reason), 503)


def status_for_error(exc: WorkerError) -> int:
    """Requests we cannot trust are never acked; transient trouble asks Pub/Sub to come back later."""
    if exc.reason in REFUSAL_STATUS:
        return REFUSAL_STATUS[exc.reason]
    if exc.retryable:
        return RETRY_STATUS.get(exc.reason, 503)
    return 400


class Runner(Protocol):
    def run(self, event: ObjectEvent) -> JobResult: ...


class Lifecycle:
    """Draining state and in-flight count, shared by the routes and the SIGTERM handler."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._cond = threading.Condition()

    def enter(self) -> bool:
        with self._cond:
            if self.draining:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def drain(self, grace_s: float) -> bool:
        """Refuse new work and wait for in-flight jobs; True if they all finished within the grace."""
        with self._cond:
            self.draining = True
            return self._cond.wait_for(lambda: self.in_flight == 0, timeout=grace_s)


def create_app(
    config: Config,
    *,
    job: Runner,
    pool: PoolView,
    authenticator: PushAuthenticator,
    metrics: Metrics,
    lifecycle: Lifecycle | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Flask:
    """The app factory: every collaborator is passed in, so tests build the app from real or fake parts."""
    app = Flask("worker")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    life = lifecycle or Lifecycle()
    capacity = config.office.pool_size + config.office.effective_queue_size
    app.extensions["lifecycle"] = life

    def answer(status: int, fields: dict[str, Any], message: str, level: int = logging.INFO) -> Response:
        metrics.requests.labels(str(status)).inc()
        fields["status"] = status
        log.log(level, message, extra={"fields": fields})
        return Response(status=status)

    @app.post("/")
    @app.post("/pubsub/push")
    def push() -> Response:
        started = time.monotonic()
        headers = dict(request.headers)
        fields: dict[str, Any] = trace_fields(headers, config.google_cloud_project)
        if not life.enter():
            fields.update(outcome="refused", reason=Reason.SHUTTING_DOWN.value)
            metrics.jobs.labels("refused", Reason.SHUTTING_DOWN.value).inc()
            return answer(503, fields, "refused: draining", logging.WARNING)
        try:
            if life.in_flight > capacity:
                # More pushes than offices plus queue: say so before any download, not after.
                fields.update(outcome="retry", reason=Reason.QUEUE_FULL.value)
                metrics.jobs.labels("retry", Reason.QUEUE_FULL.value).inc()
                return answer(429, fields, "retry: every office busy and the queue is full", logging.WARNING)
            try:
                authenticator.check(request.headers.get("Authorization"))
                parsed = parse_push(headers, request.get_data(cache=False))
            except WorkerError as exc:
                fields.update(outcome="refused", reason=exc.reason.value)
                metrics.jobs.labels("refused", exc.reason.value).inc()
                return answer(status_for_error(exc), fields, f"refused: {exc.message}", logging.WARNING)
            if isinstance(parsed, NotStorageEvent):
                fields.update(outcome="ignored", reason=Ignore.NOT_STORAGE_EVENT.value, message_id=parsed.message_id)
                metrics.jobs.labels("ignored", Ignore.NOT_STORAGE_EVENT.value).inc()
                return answer(ACK, fields, f"ignored: {parsed.why}", logging.WARNING)
            fields.update(bucket=parsed.bucket, object=parsed.name, generation=str(parsed.generation),
                          message_id=parsed.message_id, delivery_attempt=parsed.delivery_attempt)
            result = job.run(parsed)
            metrics.observe(result, parsed.publish_time, now(), parsed.delivery_attempt)
            metrics.job_duration.observe(time.monotonic() - started)
            fields.update(outcome=result.outcome.value, reason=result.reason, output=result.output,
                          kind=result.kind, durations={k: round(v, 4) for k, v in result.durations.items()},
                          input_bytes=result.input_bytes, output_bytes=result.output_bytes,
                          total_s=round(time.monotonic() - started, 4))
            if result.reason == Ignore.SUFFIX.value:
                fields["suffix"] = posixpath.splitext(parsed.name)[1].lower()
            level = {Outcome.FAILED: logging.ERROR, Outcome.RETRY: logging.WARNING}.get(result.outcome, logging.INFO)
            text = f"{result.outcome.value}: gs://{parsed.bucket}/{parsed.name}"
            if result.message:
                text += f" ({result.message})"
            return answer(status_for(result), fields, text, level)
        finally:
            life.leave()

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        ok = pool.ready() and not life.draining
        instances = [
            {"index": s.index, "state": s.state.value, "pid": s.pid, "conversions": s.conversions,
             "rss_bytes": s.rss_bytes, "seconds_since_ok": None if s.seconds_since_ok is None
             else round(s.seconds_since_ok, 3), "restarts": s.restarts}
            for s in pool.status()
        ]
        body = jsonify(ready=ok, draining=life.draining, queue_depth=pool.queue_depth, instances=instances)
        return body, 200 if ok else 503

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        metrics.jobs.labels("refused", Reason.BAD_REQUEST.value).inc()
        return answer(413, {}, "refused: request body too large", logging.WARNING)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response | HTTPException:
        if isinstance(exc, HTTPException):
            return exc
        # A bug of ours: never a traceback to the caller; 500 makes Pub/Sub redeliver, so nothing is lost.
        log.exception("unexpected error", extra={"fields": {"outcome": "error"}})
        metrics.requests.labels("500").inc()
        return Response("internal error\n", status=500, content_type="text/plain")

    return app
