"""POST /forms/libreoffice/convert (and under /gotenberg): Gotenberg's LibreOffice route on the push path's warm pool.

The HTTP side only: stream the multipart body to disk (MAX_INPUT_BYTES per file, MAX_BODY_BYTES in all), let
worker/gotenberg.py validate it, convert each file with convert_file (same sniffing and pool as a push), merge /
write metadata / zip (worker/pdf_output.py), answer. At most SYNC_MAX_OFFICES offices convert for this route at
once (`SyncGate`), so the rest of the pool always serves pushes; SYNC_TIMEOUT_S bounds a request from upload to
answer. Metrics and one log line per request, labelled by route, as for pushes.
"""

from __future__ import annotations

import io
import itertools
import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from worker import pdf_checks
from worker.auth import PushAuthenticator
from worker.config import Config
from worker.conversion import VerificationFailed, convert_file
from worker.errors import Reason, WorkerError
from worker.gotenberg import (
    FILENAME_HEADER,
    OTHER_FILE_FIELDS,
    ROOT,
    ROUTE,
    ROUTE_LABEL,
    TEXT,
    TRACE_HEADER,
    Plan,
    SyncError,
    Upload,
    build_plan,
    failure,
    health_body,
    output_name,
    sanitize_filename,
    zip_entry_name,
)
from worker.logs import trace_fields
from worker.metrics import Metrics
from worker.office import Converter, PoolView
from worker.options import DEFAULT
from worker.pdf_output import merge_pdfs, write_metadata, zip_pdfs

log = logging.getLogger("worker.sync")

MAX_FIELD_BYTES = 1 * 2**20  # one text field (metadata JSON is the largest we accept: 64 KiB)
MAX_PARTS = 1000
AUTH_STATUS = {Reason.UNAUTHENTICATED: 401, Reason.FORBIDDEN: 403}
TOO_LARGE_BODY = ("The request body exceeds the configured size limit. Increase it with MAX_BODY_BYTES, or send a "
                  "smaller request.")


class SyncGate:
    """At most `offices` conversions for this route at once and `queue` more waiting for one; others get 429.

    Every push still finds pool_size - offices offices that this route never takes (docs/operations.md).
    """

    def __init__(self, offices: int, queue: int) -> None:
        self.offices = offices
        self.limit = offices + queue
        self.inside = 0
        self.in_use = 0
        self._lock = threading.Lock()
        self._free = threading.BoundedSemaphore(offices)

    def enter(self) -> bool:
        """Admit a request (non-blocking): False when `offices + queue` requests are already inside."""
        with self._lock:
            if self.inside >= self.limit:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def acquire(self, timeout_s: float) -> bool:
        """Wait (bounded) for one of this route's offices."""
        if timeout_s <= 0 or not self._free.acquire(timeout=timeout_s):
            return False
        with self._lock:
            self.in_use += 1
        return True

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._free.release()


class FileTooLarge(Exception):
    """One uploaded file passed MAX_INPUT_BYTES while streaming to disk (not a ValueError: werkzeug swallows those)."""

    def __init__(self, filename: str, limit: int) -> None:
        super().__init__(f"The document '{filename}' is larger than MAX_INPUT_BYTES ({limit} bytes).")


class Abandoned(SyncError):
    """The request's deadline passed while its conversion still runs; that task now owns the temp directory."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, Reason.CONVERSION_TIMEOUT, retry_after_s=5)


class CappedFile(io.FileIO):
    """A file part streamed to disk that refuses to grow past `limit` bytes."""

    def __init__(self, path: Path, limit: int, filename: str) -> None:
        super().__init__(path, "w+")
        self.limit = limit
        self.filename = filename
        self.size = 0

    def write(self, data: Any) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise FileTooLarge(self.filename, self.limit)
        return super().write(data)


@dataclass
class Stats:
    """What one request did, for its metrics and log line."""

    stages: dict[str, float] = field(default_factory=dict)
    input_bytes: int = 0
    output_bytes: int = 0
    kinds: list[str] = field(default_factory=list)

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds


@dataclass(frozen=True)
class Answer:
    path: Path
    mimetype: str
    several: bool


def read_form(tmp: Path, max_file_bytes: int) -> tuple[dict[str, list[str]], list[Upload], list[str]]:
    """The multipart body, every file part streamed to its own fixed name under `tmp` (a name is never a path)."""
    if request.mimetype != "multipart/form-data":
        raise SyncError(415, "Invalid 'Content-Type' header value: want 'multipart/form-data'", Reason.BAD_REQUEST)
    if not request.mimetype_params.get("boundary"):
        raise SyncError(415, "Invalid 'Content-Type' header value: no boundary", Reason.BAD_REQUEST)
    numbers = itertools.count()

    def stream_factory(total_content_length: int | None, content_type: str | None, filename: str | None,
                       content_length: int | None = None) -> IO[bytes]:
        return CappedFile(tmp / f"upload-{next(numbers)}", max_file_bytes, sanitize_filename(filename or ""))

    parser = FormDataParser(stream_factory, max_form_memory_size=MAX_FIELD_BYTES, silent=False,
                            max_form_parts=MAX_PARTS)
    try:
        _, form, files = parser.parse(request.stream, request.mimetype, request.content_length,
                                      request.mimetype_params)
    except RequestEntityTooLarge as exc:
        raise SyncError(413, TOO_LARGE_BODY, Reason.TOO_LARGE) from exc
    except FileTooLarge as exc:
        raise SyncError(413, str(exc), Reason.TOO_LARGE) from exc
    except ValueError as exc:
        raise SyncError(400, "Malformed body: it does not match the 'Content-Type' header boundaries",
                        Reason.BAD_REQUEST) from exc
    uploads, file_fields = [], []
    for name, storage in files.items(multi=True):
        part = storage.stream
        assert isinstance(part, CappedFile)
        part.close()
        file_fields.append(name)
        if name not in OTHER_FILE_FIELDS:  # gotenberg-client names each part after its file, chromiumly 'files'
            uploads.append(Upload(sanitize_filename(storage.filename or ""), str(part.name), part.size))
    return {key: form.getlist(key) for key in form}, uploads, file_fields


class SyncRoute:
    """The route's collaborators and state; `register` adds its URL rules to the app."""

    def __init__(self, config: Config, *, converter: Converter, pool: PoolView, authenticator: PushAuthenticator,
                 metrics: Metrics, lifecycle: Any, clock: Any = time.monotonic) -> None:
        self.config = config
        self.converter = converter
        self.pool = pool
        self.authenticator = authenticator
        self.metrics = metrics
        self.life = lifecycle
        self.clock = clock
        self.gate = SyncGate(config.effective_sync_max_offices, config.effective_sync_queue_size)
        self.executor = ThreadPoolExecutor(max_workers=self.gate.offices, thread_name_prefix="sync-convert")
        self.work_root = config.office.work_dir / "sync"
        self.work_root.mkdir(parents=True, exist_ok=True)
        for stale in self.work_root.glob("sync-*"):  # left by a worker killed mid-request
            shutil.rmtree(stale, ignore_errors=True)
        metrics.route_offices.labels(ROUTE_LABEL).set_function(lambda: self.gate.in_use)

    def register(self, app: Flask) -> None:
        app.extensions["sync_route"] = self
        for root in ("", ROOT):
            app.add_url_rule(root + ROUTE, f"sync_convert{root.replace('/', '_')}", self.convert, methods=["POST"])
        app.add_url_rule(ROOT + "/health", "gotenberg_health", self.health, methods=["GET"])

    # -- the routes ---------------------------------------------------------------------------------

    def health(self) -> tuple[Response, int]:
        up = self.pool.ready() and not self.life.draining
        response = jsonify(health_body(up))
        response.headers[TRACE_HEADER] = _trace_id()
        return response, 200 if up else 503

    def convert(self) -> Response:
        started = self.clock()
        trace = _trace_id()
        fields: dict[str, Any] = {**trace_fields(dict(request.headers), self.config.google_cloud_project),
                                  "route": ROUTE_LABEL, "correlation_id": trace}
        stats = Stats()
        if not self.life.enter(sync=True):
            return self._answer_error(SyncError(503, "The service is shutting down. Retry shortly.",
                                                Reason.SHUTTING_DOWN, 5), trace, fields, stats, started)
        try:
            return self._convert(started, trace, fields, stats)
        finally:
            self.life.leave(sync=True)

    def _convert(self, started: float, trace: str, fields: dict[str, Any], stats: Stats) -> Response:
        tmp: Path | None = None
        entered = False
        try:
            self._authenticate()
            if not self.gate.enter():
                raise SyncError(429, "The request queue is full. Retry shortly.", Reason.QUEUE_FULL, 1)
            entered = True
            deadline = started + self.config.sync_timeout_s
            tmp = Path(tempfile.mkdtemp(prefix="sync-", dir=self.work_root))
            form, uploads, file_fields = read_form(tmp, self.config.max_input_bytes)
            stats.input_bytes = sum(u.size for u in uploads)
            stats.add("upload", self.clock() - started)
            fields["files"] = [u.filename for u in uploads]
            plan = build_plan(form, uploads, file_fields)
            answer = self._run_bounded(plan, tmp, stats, deadline)
            response = self._answer_file(answer, trace)  # an open file: the directory can go before it is sent
            self._observe(200, "ok", fields, stats, started)
            return response
        except SyncError as exc:
            if isinstance(exc, Abandoned):
                tmp = None
            return self._answer_error(exc, trace, fields, stats, started)
        finally:
            if entered:
                self.gate.leave()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _authenticate(self) -> None:
        try:
            self.authenticator.check(request.headers.get("Authorization"))
        except WorkerError as exc:
            status = AUTH_STATUS.get(exc.reason, 503)
            raise SyncError(status, exc.message, exc.reason, 5 if status == 503 else None) from exc

    def _run_bounded(self, plan: Plan, tmp: Path, stats: Stats, deadline: float) -> Answer:
        """Run the conversions on this route's share of the pool; answer 503 at the deadline whatever happens.

        A conversion past the deadline runs on to its end (CONVERSION_TIMEOUT_S bounds it) and keeps its office
        counted against SYNC_MAX_OFFICES until then, so a timed-out request never lets this route take more.
        """
        t = self.clock()
        if not self.gate.acquire(deadline - t):
            raise SyncError(503, "No office became free for this request within SYNC_TIMEOUT_S. Retry shortly.",
                            Reason.OFFICE_UNAVAILABLE, 5)
        stats.add("queue_wait", self.clock() - t)
        future = self.executor.submit(self._run_and_release, plan, tmp, stats)
        try:
            return future.result(timeout=max(0.0, deadline - self.clock()))
        except FutureTimeout:
            # The task still writes under tmp: it removes the directory when it ends, not the request.
            future.add_done_callback(lambda _: shutil.rmtree(tmp, ignore_errors=True))
            raise Abandoned(f"The request exceeded the time limit ({self.config.sync_timeout_s:g} s). Retry later, "
                            "or reduce the workload.") from None

    def _run_and_release(self, plan: Plan, tmp: Path, stats: Stats) -> Answer:
        try:
            return self._run(plan, tmp, stats)
        finally:
            self.gate.release()

    def _run(self, plan: Plan, tmp: Path, stats: Stats) -> Answer:
        """Each file through convert_file (sniff, pool, verify), then merge, metadata and zip as asked."""
        pdfs: list[tuple[str, Path]] = []
        for i, upload in enumerate(plan.uploads):
            dst = tmp / f"output-{i}.pdf"
            try:
                converted = convert_file(self.converter, Path(upload.path), dst, upload.filename, tmp,
                                         options=plan.options, passwords=plan.passwords)
            except WorkerError as exc:
                raise failure(exc, upload.filename) from exc
            stats.add("queue_wait", converted.timing.queue_wait_s)
            stats.add("convert", converted.timing.convert_s)
            stats.kinds.append(converted.sniffed.kind)
            pdfs.append((zip_entry_name(upload.filename), dst))
        t = self.clock()
        if plan.merge and len(pdfs) > 1:
            merged = tmp / "merged.pdf"
            merge_pdfs([path for _, path in pdfs], merged)
            self._verify_merged(plan, merged)
            pdfs = [("merged.pdf", merged)]
        for _, path in pdfs if plan.metadata else []:
            write_metadata(path, plan.metadata)
        if len(pdfs) == 1:
            answer = Answer(pdfs[0][1], "application/pdf", several=False)
        else:
            archive = tmp / "answer.zip"
            zip_pdfs(pdfs, archive)
            answer = Answer(archive, "application/zip", several=True)
        stats.add("assemble", self.clock() - t)
        stats.output_bytes = answer.path.stat().st_size
        return answer

    def _verify_merged(self, plan: Plan, merged: Path) -> None:
        """A merge must keep what was asked of every part (PDF/A identification, no outline, ...)."""
        if plan.options == DEFAULT:
            return
        failures = pdf_checks.check_pdf(merged, replace(plan.options, pages=None), plan.passwords)
        if failures:
            raise failure(VerificationFailed(failures), "the merged PDF")

    # -- answers ------------------------------------------------------------------------------------

    def _answer_file(self, answer: Answer, trace: str) -> Response:
        """Sent from an open descriptor, so the request's directory is removed at once whatever the client does."""
        name = output_name(request.headers.get(FILENAME_HEADER), answer.several)
        response = send_file(answer.path.open("rb"), mimetype=answer.mimetype, as_attachment=True,
                             download_name=name, conditional=False, etag=False, max_age=0)
        response.headers[TRACE_HEADER] = trace
        return response

    def _answer_error(self, exc: SyncError, trace: str, fields: dict[str, Any], stats: Stats,
                      started: float) -> Response:
        response = Response(exc.message, status=exc.status, content_type=TEXT)
        response.headers[TRACE_HEADER] = trace
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        fields["message"] = exc.message[:500]
        self._observe(exc.status, exc.reason.value, fields, stats, started)
        return response

    def _observe(self, status: int, reason: str, fields: dict[str, Any], stats: Stats, started: float) -> None:
        """Every metric and the one log line of a request (the route's `respond`)."""
        total_s = self.clock() - started
        output_bytes = 0 if status != 200 else stats.output_bytes
        self.metrics.observe_route(ROUTE_LABEL, status, reason, total_s, stats.stages, stats.input_bytes,
                                   output_bytes)
        fields.update(status=status, reason=reason, kinds=stats.kinds, input_bytes=stats.input_bytes,
                      durations={k: round(v, 4) for k, v in stats.stages.items()}, total_s=round(total_s, 4))
        level = logging.INFO if status == 200 else logging.ERROR if status >= 500 and status != 503 \
            else logging.WARNING
        log.log(level, f"{status} {ROUTE}: {reason}", extra={"fields": fields})


def _trace_id() -> str:
    """Gotenberg-Trace: the caller's value (bounded), or a fresh UUID; echoed on every answer."""
    given = "".join(ch for ch in request.headers.get(TRACE_HEADER, "") if ch.isprintable())[:128].strip()
    return given or str(uuid.uuid4())
