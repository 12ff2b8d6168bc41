"""Job.run(event) -> JobResult: the one orchestration (filter, dedup, download, sniff, convert, upload, record).

It never speaks HTTP; the route maps the result to a status through one table (worker/web.py, `respond`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum, auto
from pathlib import Path
from typing import Protocol

from worker.config import Config
from worker.conversion import VerificationFailed, convert_file
from worker.errors import Reason, WorkerError
from worker.events import ObjectEvent
from worker.office import Converter
from worker.options import BadOptions, Passwords, PdfOptions, SecretSource, from_metadata, resolve_passwords
from worker.outcome import Done, Duplicate, Ignore, JobResult, Outcome
from worker.storage import ObjectGone, ObjectInfo

FINALIZE = "OBJECT_FINALIZE"
MAX_OBJECT_NAME_BYTES = 1024
META_BUCKET = "source-bucket"
META_OBJECT = "source-object"
META_GENERATION = "source-generation"
META_OPTIONS = "options-digest"  # PdfOptions.digest(): same generation + same options = the same work
REFUSED_OPTIONS = "refused"  # the digest recorded beside a bad_option record: no options were applied


class Stored(Enum):
    """What a versioned write came to (`Job._store_versioned`); the job maps it to an outcome."""

    CREATED = auto()
    REPLACED = auto()  # an older generation's output was replaced
    DUPLICATE = auto()  # this generation's output is already there (a concurrent delivery was first)
    STALE = auto()  # a newer generation's output is already there


class Source(Enum):
    """How an existing output relates to this event's source object (`_compare`)."""

    SAME = auto()  # the same generation
    OLDER = auto()
    NEWER = auto()
    OTHER = auto()  # another source object, or no source metadata: a name collision


# A stored PDF's write -> the delivery's outcome, reason and message.
PDF_STORED: dict[Stored, tuple[Outcome, Done | Duplicate | Ignore, str]] = {
    Stored.CREATED: (Outcome.CONVERTED, Done.OK, ""),
    Stored.REPLACED: (Outcome.CONVERTED, Done.OVERWRITE, ""),
    Stored.DUPLICATE: (Outcome.DUPLICATE, Duplicate.CONCURRENT, "a concurrent delivery stored it first"),
    Stored.STALE: (Outcome.IGNORED, Ignore.STALE, "a newer generation was stored meanwhile"),
}


class OptionsRefused(WorkerError):
    """Bad per-document options, or a secret they name that cannot be had: permanent, the record lists each key."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(Reason.BAD_OPTION, str(BadOptions(problems)))


class Store(Protocol):
    """What the job needs from storage (worker.storage.Store; tests may pass a fake where GCS cannot run)."""

    def stat(self, bucket: str, name: str, generation: int) -> ObjectInfo: ...
    def download(
        self, bucket: str, name: str, generation: int, dest: Path, *, max_bytes: int, size: int | None = None
    ) -> int: ...
    def get_output(self, bucket: str, name: str) -> ObjectInfo | None: ...
    def get_outputs(self, bucket: str, names: Sequence[str]) -> list[ObjectInfo | None]: ...
    def create(
        self, bucket: str, name: str, src: Path | bytes, *, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo | None: ...
    def replace(
        self, bucket: str, name: str, src: Path | bytes, *, content_type: str, metadata: dict[str, str],
        if_generation_match: int,
    ) -> ObjectInfo | None: ...


# Office failures a document can cause: each is a strike against it (see Job._give_up). Not office_killed: a SIGKILL
# from outside the worker (OOM killer, operator, chaos) says nothing about the document.
OFFICE_FAULTS = frozenset({Reason.CONVERSION_TIMEOUT, Reason.OFFICE_CRASHED, Reason.MEMORY_EXHAUSTED})
POISON_STRIKES = 2  # the second office failure of one generation is permanent


class AttemptCounter:
    """Counts strikes (office failures) per object generation in this process.

    Pub/Sub sends deliveryAttempt only with a dead-letter policy, and counts every delivery (429s included); without
    this count a document that always crashes or hangs the office would be redelivered forever. Bounded LRU, so it
    cannot grow without limit.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def bump(self, key: tuple[str, str, int]) -> int:
        with self._lock:
            n = self._counts.pop(key, 0) + 1
            self._counts[key] = n
            while len(self._counts) > self._capacity:
                self._counts.popitem(last=False)
            return n


def output_names(config: Config, name: str) -> tuple[str, str, str]:
    """(pdf, pdf on a name collision, failure record) for an input object name; keeps the object's path."""
    stem, _ = posixpath.splitext(name)
    prefix = config.output_prefix + "/" if config.output_prefix else ""
    return (
        fit_object_name(prefix + stem, ".pdf"),
        fit_object_name(prefix + name, ".pdf"),
        fit_object_name(prefix + name, ".error.json"),
    )


def fit_object_name(base: str, suffix: str, limit: int = MAX_OBJECT_NAME_BYTES) -> str:
    """GCS refuses names over 1024 bytes (a 400 that would be redelivered forever): shorten with a stable hash."""
    name = base + suffix
    if len(name.encode()) <= limit:
        return name
    tag = "~" + hashlib.sha256(base.encode()).hexdigest()[:16]
    room = limit - len((tag + suffix).encode())
    head = base.encode()[:room].decode(errors="ignore")
    return head + tag + suffix


def ignore_reason(config: Config, event: ObjectEvent) -> Ignore | None:
    """The filter: only finalized office files from allowed buckets, never our own outputs."""
    if event.event_type != FINALIZE:
        return Ignore.EVENT_TYPE
    if config.input_buckets and event.bucket not in config.input_buckets:
        return Ignore.BUCKET
    if event.bucket == config.output_bucket:
        # Input and output may share a bucket: never feed our PDFs or failure records back in.
        if config.output_prefix and (event.name + "/").startswith(config.output_prefix + "/"):
            return Ignore.OWN_OUTPUT
        if event.name.lower().endswith((".pdf", ".error.json")):
            return Ignore.OWN_OUTPUT
    if posixpath.splitext(event.name)[1].lower() not in config.input_suffixes:
        return Ignore.SUFFIX
    return None


class Job:
    """Holds the collaborators; `run(event)` handles one delivery end to end."""

    def __init__(
        self,
        config: Config,
        pool: Converter,
        store: Store,
        *,
        secrets: SecretSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.pool = pool
        self.store = store
        self.secrets = secrets  # the operator's mounted secrets (config.secrets_dir); None: *-secret is refused
        self.clock = clock
        self.now = now
        self.attempts = AttemptCounter()
        jobs = config.office.work_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        # A worker killed mid-job (SIGKILL, OOM) never ran its `finally`: its temp dirs are nobody's now.
        for stale in jobs.glob("job-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def run(self, event: ObjectEvent) -> JobResult:
        ignored = ignore_reason(self.config, event)
        if ignored is Ignore.SUFFIX:
            suffix = posixpath.splitext(event.name)[1].lower() or "(none)"
            return JobResult(Outcome.IGNORED, ignored, f"suffix {suffix} is not in INPUT_SUFFIXES")
        if ignored is not None:
            return JobResult(Outcome.IGNORED, ignored, f"{ignored.value}: {event.name}")
        pdf_name, alt_name, record_name = output_names(self.config, event.name)
        durations: dict[str, float] = {}
        options: PdfOptions | None = None
        try:
            # Before any download: a bad option or secret is answered at once, with one record, never retried.
            asked = self._options(event)
            digest = REFUSED_OPTIONS if isinstance(asked, OptionsRefused) else asked.digest()
            # Only a redelivery is likely to find its output stored: a first delivery (Pub/Sub says attempt 1 when
            # the subscription has a dead-letter policy) skips the reads, a storage round trip on every push; a
            # duplicate publish is still caught by the create-only write, at the cost of one wasted conversion.
            if event.delivery_attempt != 1:
                done = self._already_done(event, digest, pdf_name, alt_name, record_name)
                if done is not None:
                    return done
            if isinstance(asked, OptionsRefused):
                raise asked
            options = asked
            passwords = self._passwords(options)
            with tempfile.TemporaryDirectory(prefix="job-", dir=self.config.office.work_dir / "jobs") as tmp:
                return self._convert_and_store(event, Path(tmp), pdf_name, alt_name, options, passwords, durations)
        except ObjectGone as exc:
            return JobResult(Outcome.IGNORED, Ignore.STALE, str(exc), durations=durations)
        except WorkerError as exc:
            if exc.retryable and not self._give_up(event, exc):
                return JobResult(Outcome.RETRY, exc.reason, exc.message, durations=durations)
            return self._record_failure(event, record_name, exc, durations, options)

    # -- steps -------------------------------------------------------------------------------------

    def _options(self, event: ObjectEvent) -> PdfOptions | OptionsRefused:
        """The upload's docworker-* metadata over the service defaults, or the refusal listing every bad key
        (returned, so a redelivery of a refused generation finds its record like any other failure).

        A notification without the object resource (payload format NONE) carries no metadata: read it then, one
        request, so options are never silently ignored.
        """
        metadata = event.metadata
        if metadata is None:
            metadata = self.store.stat(event.bucket, event.name, event.generation).metadata
        try:
            return from_metadata(metadata, self.config.pdf_defaults)
        except BadOptions as exc:
            refused = OptionsRefused(exc.problems)
            refused.__cause__ = exc
            return refused

    def _passwords(self, options: PdfOptions) -> Passwords:
        """Read the secrets the options name, once per job (MountedSecrets caches per version)."""
        try:
            return resolve_passwords(options, self.secrets)
        except BadOptions as exc:  # not mounted, empty, not UTF-8, too large, or a combination refused
            raise OptionsRefused(exc.problems) from exc
        except OSError as exc:  # there but unreadable now (I/O, permission): may pass, so Pub/Sub comes back
            raise WorkerError(Reason.SECRET_UNAVAILABLE,
                              f"a secret the options name could not be read: {type(exc).__name__}") from exc

    def _already_done(
        self, event: ObjectEvent, digest: str, pdf_name: str, alt_name: str, record_name: str
    ) -> JobResult | None:
        """Skip download and conversion when this generation's PDF or failure record, with these options, is stored."""
        record, *pdfs = self.store.get_outputs(self.config.output_bucket, [record_name, pdf_name, alt_name])
        if record is not None and _compare(record, event, digest) is Source.SAME:
            return JobResult(Outcome.DUPLICATE, Duplicate.ALREADY_FAILED, "a failure record for this generation exists",
                             output=_uri(record))
        for existing in pdfs:
            if existing is None:
                continue
            source = _compare(existing, event, digest)
            if source is Source.SAME:
                return JobResult(Outcome.DUPLICATE, Duplicate.SAME_GENERATION, "already converted",
                                 output=_uri(existing))
            if source is Source.NEWER:
                return JobResult(Outcome.IGNORED, Ignore.STALE, "a newer generation is already converted")
        return None

    def _convert_and_store(
        self, event: ObjectEvent, tmp: Path, pdf_name: str, alt_name: str, options: PdfOptions,
        passwords: Passwords, durations: dict[str, float],
    ) -> JobResult:
        src, pdf = tmp / "input", tmp / "output.pdf"  # fixed names: an object name never becomes a path
        t = self.clock()
        input_bytes = self.store.download(
            event.bucket, event.name, event.generation, src, max_bytes=self.config.max_input_bytes, size=event.size
        )
        durations["download"] = self.clock() - t
        converted = convert_file(self.pool, src, pdf, posixpath.basename(event.name), tmp,
                                 options=options, passwords=passwords)
        durations["queue_wait"] = converted.timing.queue_wait_s
        durations["convert"] = converted.timing.convert_s
        t = self.clock()
        stored, info = self._store_versioned(event, pdf_name, alt_name, pdf, "application/pdf", options)
        durations["upload"] = self.clock() - t
        outcome, reason, message = PDF_STORED[stored]
        return JobResult(
            outcome, reason, message, output=None if info is None else _uri(info), durations=durations,
            input_bytes=input_bytes, output_bytes=converted.pdf_bytes if outcome == Outcome.CONVERTED else 0,
            kind=converted.sniffed.kind, profile=options.profile,
        )

    def _store_versioned(
        self, event: ObjectEvent, name: str, alt_name: str | None, src: Path | bytes, content_type: str,
        options: PdfOptions | None,
    ) -> tuple[Stored, ObjectInfo | None]:
        """Create-only write; on conflict decide by the existing object's source metadata.

        Same source generation and options -> duplicate. Older generation of the same source, or the same generation
        converted with other options (the service defaults changed) -> replace, conditional on the
        generation we read (an older delivery can never replace a newer PDF). Newer -> stale. Another source that
        maps to the same name (a.docx and a.xlsx -> a.pdf) -> the first keeps `a.pdf`, the other gets `a.xlsx.pdf`.
        Returns what happened and the object written (created, replaced) or found (duplicate); None when stale.
        """
        bucket = self.config.output_bucket
        metadata = self._output_metadata(event, options)
        digest = metadata[META_OPTIONS]
        for _ in range(5):  # each lap follows a concurrent writer; five laps means something is fighting us
            created = self.store.create(bucket, name, src, content_type=content_type, metadata=metadata)
            if created is not None:
                return Stored.CREATED, created
            existing = self.store.get_output(bucket, name)
            if existing is None:
                continue  # deleted between our create and our read: try again
            source = _compare(existing, event, digest)
            if source is Source.SAME:
                return Stored.DUPLICATE, existing
            if source is Source.NEWER:
                return Stored.STALE, None
            if source is Source.OLDER:
                replaced = self.store.replace(
                    bucket, name, src, content_type=content_type, metadata=metadata,
                    if_generation_match=existing.generation,
                )
                if replaced is not None:
                    return Stored.REPLACED, replaced
                continue
            if alt_name is None:
                break
            name, alt_name = alt_name, None  # a name collision: fall back to the full-name form once
        raise WorkerError(Reason.NAME_COLLISION, f"gs://{bucket}/{name} belongs to another source object")

    def _output_metadata(self, event: ObjectEvent, options: PdfOptions | None) -> dict[str, str]:
        """The source and options an output came from: what `_compare` reads back to decide duplicate, stale or
        collision; the options applied as their docworker-* keys (secret names at most, never a password).
        """
        metadata = {
            META_BUCKET: event.bucket,
            META_OBJECT: event.name,
            META_GENERATION: str(event.generation),
            META_OPTIONS: REFUSED_OPTIONS if options is None else options.digest(),
            "converted-at": self.now().isoformat(),
        }
        if options is not None:
            metadata.update(options.to_metadata())
        if event.message_id:
            metadata["source-message-id"] = event.message_id
        return metadata

    def _give_up(self, event: ObjectEvent, exc: WorkerError) -> bool:
        """Poison rule: a generation that hangs, crashes or bloats the office twice is recorded as failed.

        Motivated by the stress campaign's poison documents (a 6,000-page .docx, a 700-byte .fods declaring a
        billion cells): they never finish, and at MAX_DELIVERY_ATTEMPTS (5) x CONVERSION_TIMEOUT_S (120 s) each
        costs 10 minutes of an office. One strike is forgiven, because an innocent document can fail once on an
        office bloated or damaged by earlier documents: the pool discards the office after every one of these
        failures, so the retry runs on another office process, and two offices failing on it is the document.
        office_killed never counts (under chaos an innocent spreadsheet whose office was SIGKILLed 3 times ended as
        a poison record). A busy machine is no reason for more attempts: the redelivery comes seconds later under
        the same load, and a document that needs close to CONVERSION_TIMEOUT_S needs a longer timeout instead.
        Strikes are counted in this process; Pub/Sub's deliveryAttempt (dead-letter policy only) still ends it at
        MAX_DELIVERY_ATTEMPTS when redeliveries spread over instances or the worker restarted in between.
        """
        if exc.reason not in OFFICE_FAULTS:
            return False
        strikes = self.attempts.bump((event.bucket, event.name, event.generation))
        if strikes >= min(POISON_STRIKES, self.config.max_delivery_attempts):
            return True
        return (event.delivery_attempt or 0) >= self.config.max_delivery_attempts

    def _record_failure(
        self, event: ObjectEvent, record_name: str, exc: WorkerError, durations: dict[str, float],
        options: PdfOptions | None,
    ) -> JobResult:
        """Leave a JSON record where the PDF would have gone, so the user can see why no PDF came.

        It names what the options asked (`options`, the applied docworker-* keys), every bad key (`problems`) or
        every failed check of the PDF (`failed_checks`).
        """
        record: dict[str, object] = {
            "source": f"gs://{event.bucket}/{event.name}",
            "generation": str(event.generation),
            "reason": exc.reason.value,
            "message": exc.message,
            "message_id": event.message_id,
            "time": self.now().isoformat(),
            "options": None if options is None else options.to_metadata(),
        }
        checks: tuple[str, ...] = ()
        if isinstance(exc, OptionsRefused):
            record["problems"] = exc.problems
        if isinstance(exc, VerificationFailed):
            record["failed_checks"] = [{"check": f.reason.value, "detail": f.detail} for f in exc.failures]
            checks = tuple(f.reason.value for f in exc.failures)
        body = (json.dumps(record, indent=2) + "\n").encode()
        try:
            stored, info = self._store_versioned(event, record_name, None, body, "application/json", options)
        except WorkerError as store_exc:
            if store_exc.retryable:  # could not write the record: do not ack, or the user would never know
                return JobResult(Outcome.RETRY, store_exc.reason, store_exc.message, durations=durations)
            raise
        # The log names the record only when this delivery wrote it (not a twin's, not a newer generation's).
        output = _uri(info) if info is not None and stored in (Stored.CREATED, Stored.REPLACED) else None
        return JobResult(Outcome.FAILED, exc.reason, exc.message, output=output, durations=durations,
                         profile=None if options is None else options.profile, checks_failed=checks)


def _compare(existing: ObjectInfo, event: ObjectEvent, digest: str) -> Source:
    """How an existing output relates to this event's source and options, from what `_output_metadata` wrote.

    An output written before options existed carries no digest: it was the stock export, the defaults' digest.
    The same generation with other options is OLDER: its output is replaced, never kept as a duplicate.
    """
    meta = existing.metadata or {}
    if meta.get(META_BUCKET) != event.bucket or meta.get(META_OBJECT) != event.name:
        return Source.OTHER
    try:
        gen = int(meta.get(META_GENERATION, ""))
    except ValueError:
        return Source.OTHER
    if gen == event.generation:
        return Source.SAME if meta.get(META_OPTIONS, STOCK_DIGEST) == digest else Source.OLDER
    return Source.OLDER if gen < event.generation else Source.NEWER


STOCK_DIGEST = PdfOptions().digest()


def _uri(info: ObjectInfo) -> str:
    return f"gs://{info.bucket}/{info.name}"
