"""Flask routes: POST / (and /pubsub/push), GET /health, /ready, /metrics. Thin: parse, check, delegate, respond.

The one table mapping results to HTTP statuses is here (Pub/Sub acks only 102/200/201/202/204), and `respond`, the
one place a push's status, metrics and log line are written.
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
from worker.errors import RETRYABLE, Reason, WorkerError
from worker.events import NotStorageEvent, ObjectEvent, parse_push
from worker.logs import trace_fields
from worker.metrics import CONTENT_TYPE, Metrics
from worker.office import Converter, PoolView
from worker.outcome import Ignore, JobResult, Outcome

log = logging.getLogger("worker.push")

ACK = 204
# The acknowledgement table (docs/architecture.md, "Where a rule lives"). Every outcome not listed acks.
RETRY_STATUS = {Reason.QUEUE_FULL: 429}  # any other retryable reason -> 503
REFUSAL_STATUS = {Reason.BAD_REQUEST: 400, Reason.UNAUTHENTICATED: 401, Reason.FORBIDDEN: 403}
LEVELS = {Outcome.FAILED: logging.ERROR, Outcome.RETRY: logging.WARNING, Outcome.REFUSED: logging.WARNING}


def status_for(result: JobResult) -> int:
    """Ack everything the worker finished with (done, duplicate, ignored, failure recorded); nack the rest."""
    if result.outcome == Outcome.REFUSED:
        return refusal_status(Reason(result.reason))
    if result.outcome != Outcome.RETRY:
        return ACK
    return RETRY_STATUS.get(Reason(result.reason), 503)


def status_for_error(exc: WorkerError) -> int:
    """The status of a request refused with `exc` (auth, parsing)."""
    return refusal_status(exc.reason)


def refusal_status(reason: Reason) -> int:
    """Requests we cannot trust are never acked; transient trouble asks Pub/Sub to come back later."""
    if reason in REFUSAL_STATUS:
        return REFUSAL_STATUS[reason]
    if reason in RETRYABLE:
        return RETRY_STATUS.get(reason, 503)
    return 400


def level_for(result: JobResult) -> int:
    """The log level: by outcome, INFO when acked; a delivery that is not a storage event hints at a wrong setup."""
    if result.reason is Ignore.NOT_STORAGE_EVENT:
        return logging.WARNING
    return LEVELS.get(result.outcome, logging.INFO)


def respond(
    metrics: Metrics, result: JobResult, fields: dict[str, Any], *, event: ObjectEvent | None = None,
    total_s: float | None = None, now: datetime | None = None, status: int | None = None,
) -> Response:
    """Answer one push: the status from the table, every metric, one log line. The only place that writes them.

    `event` and `total_s` when the job ran; `status` only where the HTTP layer decided it (413 from the body limit).
    """
    status = status_for(result) if status is None else status
    fields.update(outcome=result.outcome.value, reason=result.reason.value)
    text = f"{result.outcome.value}: {result.message}"
    if event is not None:
        fields.update(_job_fields(result, event, total_s))
        text = f"{result.outcome.value}: gs://{event.bucket}/{event.name}" + \
            (f" ({result.message})" if result.message else "")
    fields["status"] = status
    metrics.observe(result, status, event.publish_time if event else None, now,
                    event.delivery_attempt if event else None, total_s)
    log.log(level_for(result), text, extra={"fields": fields})
    return Response(status=status)


def _job_fields(result: JobResult, event: ObjectEvent, total_s: float | None) -> dict[str, Any]:
    """The log fields of a push that reached the job (docs/operations.md lists them)."""
    fields: dict[str, Any] = {
        "bucket": event.bucket, "object": event.name, "generation": str(event.generation),
        "message_id": event.message_id, "delivery_attempt": event.delivery_attempt, "output": result.output,
        "kind": result.kind, "durations": {k: round(v, 4) for k, v in result.durations.items()},
        "input_bytes": result.input_bytes, "output_bytes": result.output_bytes,
        "total_s": None if total_s is None else round(total_s, 4),
    }
    if result.profile is not None:  # the options' profile (docs/options.md); failed checks name themselves
        fields["profile"] = result.profile
    if result.checks_failed:
        fields["checks_failed"] = list(result.checks_failed)
    if result.reason is Ignore.SUFFIX:
        fields["suffix"] = posixpath.splitext(event.name)[1].lower()
    return fields


class Runner(Protocol):
    def run(self, event: ObjectEvent) -> JobResult: ...


class Lifecycle:
    """Draining state and in-flight count, shared by the routes and the SIGTERM handler."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.sync_in_flight = 0  # synchronous conversions (worker/sync_route.py): drained, never counted as pushes
        self._cond = threading.Condition()

    @property
    def pushes_in_flight(self) -> int:
        return self.in_flight - self.sync_in_flight

    def enter(self, *, sync: bool = False) -> bool:
        with self._cond:
            if self.draining:
                return False
            self.in_flight += 1
            self.sync_in_flight += sync
            return True

    def leave(self, *, sync: bool = False) -> None:
        with self._cond:
            self.in_flight -= 1
            self.sync_in_flight -= sync
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
    converter: Converter | None = None,
    sync_authenticator: PushAuthenticator | None = None,
) -> Flask:
    """The app factory: every collaborator is passed in, so tests build the app from real or fake parts."""
    app = Flask("worker")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    life = lifecycle or Lifecycle()
    capacity = config.office.pool_size + config.office.effective_queue_size
    app.extensions["lifecycle"] = life

    def deliver(headers: dict[str, str], fields: dict[str, Any]) -> tuple[JobResult, ObjectEvent | None]:
        """Check, parse and run one push; the event only when the job ran."""
        if life.pushes_in_flight > capacity:
            # More pushes than offices plus queue: say so before any download, not after.
            return JobResult(Outcome.RETRY, Reason.QUEUE_FULL, "every office busy and the queue is full"), None
        try:
            authenticator.check(request.headers.get("Authorization"))
            parsed = parse_push(headers, request.get_data(cache=False))
        except WorkerError as exc:
            return JobResult(Outcome.REFUSED, exc.reason, exc.message), None
        if isinstance(parsed, NotStorageEvent):
            fields["message_id"] = parsed.message_id
            return JobResult(Outcome.IGNORED, Ignore.NOT_STORAGE_EVENT, parsed.why), None
        return job.run(parsed), parsed

    @app.post("/")
    @app.post("/pubsub/push")
    def push() -> Response:
        started = time.monotonic()
        headers = dict(request.headers)
        fields: dict[str, Any] = trace_fields(headers, config.google_cloud_project)
        if not life.enter():
            return respond(metrics, JobResult(Outcome.REFUSED, Reason.SHUTTING_DOWN, "draining"), fields)
        try:
            result, event = deliver(headers, fields)
            total_s = None if event is None else time.monotonic() - started
            return respond(metrics, result, fields, event=event, total_s=total_s, now=now())
        finally:
            life.leave()

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        ok = pool.ready() and not life.draining
        body = jsonify(ready=ok, draining=life.draining, queue_depth=pool.queue_depth, instances=_instances(pool))
        return body, 200 if ok else 503

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE)

    if converter is not None:  # the synchronous Gotenberg route on the same pool (worker/sync_route.py)
        from worker.sync_route import SyncRoute

        SyncRoute(config, converter=converter, pool=pool, authenticator=sync_authenticator or authenticator,
                  metrics=metrics, lifecycle=life).register(app)
    _add_error_handlers(app, config, metrics)
    return app


def _instances(pool: PoolView) -> list[dict[str, Any]]:
    """/ready's view of each office."""
    return [
        {"index": s.index, "state": s.state.value, "pid": s.pid, "conversions": s.conversions,
         "rss_bytes": s.rss_bytes, "seconds_since_ok": None if s.seconds_since_ok is None
         else round(s.seconds_since_ok, 3), "restarts": s.restarts}
        for s in pool.status()
    ]


def _add_error_handlers(app: Flask, config: Config, metrics: Metrics) -> None:
    """A body over MAX_BODY_BYTES is a refusal like any other; a bug of ours is a 500 without a traceback."""

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        fields = trace_fields(dict(request.headers), config.google_cloud_project)
        result = JobResult(Outcome.REFUSED, Reason.BAD_REQUEST, "request body too large")
        return respond(metrics, result, fields, status=413)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response | HTTPException:
        if isinstance(exc, HTTPException):
            return exc
        # A bug of ours: never a traceback to the caller; 500 makes Pub/Sub redeliver, so nothing is lost.
        log.exception("unexpected error", extra={"fields": {"outcome": "error"}})
        metrics.requests.labels("500").inc()
        return Response("internal error\n", status=500, content_type="text/plain")
