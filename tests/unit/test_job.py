"""Job.run's decisions in isolation: an in-memory Store with real generation preconditions and a fake pool.

What is real: the filter, the idempotency rules, sniffing, the failure records, temp-dir cleanup. What is fake: GCS
(a dict with generations and `if_generation_match`) and LibreOffice (writes a tiny valid PDF, or raises on cue).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.config import Config, OfficeSettings
from worker.errors import Reason, WorkerError
from worker.events import ObjectEvent
from worker.job import Job, Outcome, output_names
from worker.office import STOCK_EXPORT, ConversionTiming, Export
from worker.storage import ObjectGone, ObjectInfo

DATA = Path(__file__).resolve().parents[1] / "data"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
IN, OUT = "in-bucket", "out-bucket"


class FakeStore:
    """GCS semantics that matter here: generations, create-only and conditional writes, pinned reads."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[tuple[ObjectInfo, bytes]]] = {}  # every generation, newest last
        self._gen = itertools.count(1_000_001)
        self.creates = 0
        self.replaces = 0
        self.before_create: Callable[[str, str], object] | None = None
        self.before_replace: Callable[[str, str], object] | None = None
        self.fail_writes: WorkerError | None = None
        self.output_checks = 0  # get_outputs calls: the idempotency reads before a conversion
        self.download_sizes: list[int | None] = []  # the size each download was told (from the event)
        self.stats = 0

    def put(self, bucket: str, name: str, data: bytes, metadata: dict[str, str] | None = None,
            content_type: str | None = None) -> ObjectInfo:
        info = ObjectInfo(bucket, name, next(self._gen), len(data), content_type, dict(metadata or {}))
        self.objects.setdefault((bucket, name), []).append((info, data))
        return info

    def live(self, bucket: str, name: str) -> tuple[ObjectInfo, bytes] | None:
        versions = self.objects.get((bucket, name))
        return versions[-1] if versions else None

    def stat(self, bucket: str, name: str, generation: int) -> ObjectInfo:
        self.stats += 1
        live = self.live(bucket, name)
        if live is None or live[0].generation != generation:
            raise ObjectGone(f"gs://{bucket}/{name}#{generation} no longer exists")
        return live[0]

    def download(self, bucket: str, name: str, generation: int, dest: Path, *, max_bytes: int,
                 size: int | None = None) -> int:
        self.download_sizes.append(size)
        live = self.live(bucket, name)
        if live is None or live[0].generation != generation:  # like GCS without versioning: old generations go
            raise ObjectGone(f"gs://{bucket}/{name}#{generation} no longer exists")
        info, data = live
        if info.size > max_bytes:
            raise WorkerError(Reason.TOO_LARGE, f"{info.size} > {max_bytes}")
        dest.write_bytes(data)
        return len(data)

    def get_output(self, bucket: str, name: str) -> ObjectInfo | None:
        live = self.live(bucket, name)
        return None if live is None else live[0]

    def get_outputs(self, bucket: str, names: list[str]) -> list[ObjectInfo | None]:
        self.output_checks += 1
        return [self.get_output(bucket, name) for name in names]

    def create(self, bucket: str, name: str, src: Path | bytes, *, content_type: str,
               metadata: dict[str, str]) -> ObjectInfo | None:
        return self._write(bucket, name, src, content_type, metadata, 0)

    def replace(self, bucket: str, name: str, src: Path | bytes, *, content_type: str, metadata: dict[str, str],
                if_generation_match: int) -> ObjectInfo | None:
        self.replaces += 1
        return self._write(bucket, name, src, content_type, metadata, if_generation_match)

    def _write(self, bucket: str, name: str, src: Path | bytes, content_type: str, metadata: dict[str, str],
               match: int) -> ObjectInfo | None:
        if self.fail_writes is not None:
            raise self.fail_writes
        if match == 0:
            self.creates += 1
            if self.before_create is not None:
                hook, self.before_create = self.before_create, None
                hook(bucket, name)
        elif self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook(bucket, name)
        live = self.live(bucket, name)
        current = 0 if live is None else live[0].generation
        if current != match:
            return None  # 412
        data = src.read_bytes() if isinstance(src, Path) else src
        return self.put(bucket, name, data, metadata, content_type)


class FakePool:
    """Writes a valid PDF, or raises the queued errors first (one per call)."""

    def __init__(self) -> None:
        self.errors: list[WorkerError] = []
        self.calls = 0
        self.seen: list[Path] = []
        self.exports: list[Export] = []

    def convert(self, src: Path, dst: Path, import_filter: str | None = None,
                export: Export = STOCK_EXPORT) -> ConversionTiming:
        self.calls += 1
        self.seen.append(src)
        self.exports.append(export)
        assert src.exists()
        if self.errors:
            raise self.errors.pop(0)
        dst.write_bytes(PDF)
        return ConversionTiming(0.0, 0.01, 0)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path / "work"), input_buckets=(IN,),
                  max_delivery_attempts=3)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def job(config: Config, pool: FakePool, store: FakeStore) -> Job:
    return Job(config, pool, store, now=lambda: datetime(2026, 11, 28, tzinfo=UTC))  # type: ignore[arg-type]


SAMPLE = (DATA / "sample.docx").read_bytes()


def event(info: ObjectInfo, *, message_id: str = "m-1", event_type: str = "OBJECT_FINALIZE",
          delivery_attempt: int | None = None, generation: int | None = None) -> ObjectEvent:
    return ObjectEvent(bucket=info.bucket, name=info.name, generation=generation or info.generation,
                       event_type=event_type, size=info.size, content_type=None, message_id=message_id,
                       publish_time=None, delivery_attempt=delivery_attempt, subscription=None, shape="push")


def jobs_dir_empty(config: Config) -> bool:
    return list((config.office.work_dir / "jobs").iterdir()) == []


# -- the happy path and idempotency -----------------------------------------------------------------------------


def test_converts_and_stores_with_source_metadata(job: Job, store: FakeStore, config: Config) -> None:
    src = store.put(IN, "incoming/a b/report.docx", SAMPLE)
    result = job.run(event(src))
    assert (result.outcome, result.reason) == (Outcome.CONVERTED, "ok")
    assert result.output == f"gs://{OUT}/incoming/a b/report.pdf"
    pdf = store.get_output(OUT, "incoming/a b/report.pdf")
    assert pdf is not None and pdf.content_type == "application/pdf"
    assert pdf.metadata["source-bucket"] == IN
    assert pdf.metadata["source-object"] == "incoming/a b/report.docx"
    assert pdf.metadata["source-generation"] == str(src.generation)
    assert pdf.metadata["source-message-id"] == "m-1"
    assert result.kind == "docx" and result.input_bytes == len(SAMPLE) and result.output_bytes == len(PDF)
    assert set(result.durations) == {"download", "queue_wait", "convert", "upload"}
    assert jobs_dir_empty(config)


def test_redelivery_is_a_duplicate_without_download_or_conversion(job: Job, store: FakeStore, pool: FakePool) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(src)).outcome == Outcome.CONVERTED
    again = job.run(event(src, message_id="m-2"))
    assert (again.outcome, again.reason) == (Outcome.DUPLICATE, "same_generation")
    assert pool.calls == 1 and store.creates == 1
    assert len(store.objects[(OUT, "a.pdf")]) == 1


def test_concurrent_delivery_that_stored_first_makes_this_one_a_duplicate(job: Job, store: FakeStore) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    meta = {"source-bucket": IN, "source-object": "a.docx", "source-generation": str(src.generation)}
    store.before_create = lambda b, n: store.put(b, n, PDF, meta)  # the twin delivery wins the race
    result = job.run(event(src))
    assert (result.outcome, result.reason) == (Outcome.DUPLICATE, "concurrent")
    assert len(store.objects[(OUT, "a.pdf")]) == 1


def test_a_redelivery_is_answered_from_storage_without_converting(job: Job, store: FakeStore, pool: FakePool) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(src, delivery_attempt=1)).outcome == Outcome.CONVERTED
    assert (pool.calls, store.output_checks) == (1, 0)  # a first delivery goes straight to work
    again = job.run(event(src, delivery_attempt=2))
    assert (again.outcome, again.reason) == (Outcome.DUPLICATE, "same_generation")
    assert (pool.calls, store.output_checks) == (1, 1)
    unknown = job.run(event(src))  # no deliveryAttempt (no dead-letter policy): always check first
    assert unknown.outcome == Outcome.DUPLICATE and pool.calls == 1


def test_a_duplicate_publish_on_first_delivery_never_writes_a_second_pdf(
    job: Job, store: FakeStore, pool: FakePool
) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(src, message_id="m-1", delivery_attempt=1)).outcome == Outcome.CONVERTED
    twin = job.run(event(src, message_id="m-2", delivery_attempt=1))  # GCS notified twice: two messages
    assert (twin.outcome, twin.reason) == (Outcome.DUPLICATE, "concurrent")
    assert pool.calls == 2  # the price of skipping the reads: one wasted conversion
    assert len(store.objects[(OUT, "a.pdf")]) == 1


def test_newer_generation_replaces_the_pdf_conditionally(job: Job, store: FakeStore) -> None:
    old = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(old)).outcome == Outcome.CONVERTED
    first_pdf = store.get_output(OUT, "a.pdf")
    new = store.put(IN, "a.docx", SAMPLE)
    result = job.run(event(new))
    assert (result.outcome, result.reason) == (Outcome.CONVERTED, "overwrite")
    pdf = store.get_output(OUT, "a.pdf")
    assert pdf is not None and first_pdf is not None
    assert pdf.metadata["source-generation"] == str(new.generation) and pdf.generation != first_pdf.generation
    # The old generation's late delivery changes nothing.
    stale = job.run(event(old))
    assert (stale.outcome, stale.reason) == (Outcome.IGNORED, "stale")
    assert store.get_output(OUT, "a.pdf") == pdf


def test_older_delivery_never_replaces_a_pdf_stored_meanwhile_by_a_newer_one(job: Job, store: FakeStore) -> None:
    old = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(old)).outcome == Outcome.CONVERTED
    mid = store.put(IN, "a.docx", SAMPLE)
    newest_gen = mid.generation + 1000

    def newer_lands_first(bucket: str, name: str) -> None:
        # Between our read of the old PDF and our replace, a newer generation's PDF is stored.
        live = store.live(bucket, name)
        assert live is not None
        store.put(bucket, name, PDF, {**live[0].metadata, "source-generation": str(newest_gen)})

    store.before_replace = newer_lands_first
    result = job.run(event(mid))
    assert (result.outcome, result.reason) == (Outcome.IGNORED, "stale")
    assert store.replaces == 1  # it tried, conditionally on the generation it had read, and lost
    pdf = store.get_output(OUT, "a.pdf")
    assert pdf is not None and pdf.metadata["source-generation"] == str(newest_gen)


def test_event_for_a_generation_that_is_gone_is_ignored_as_stale(job: Job, store: FakeStore, pool: FakePool) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    store.put(IN, "a.docx", SAMPLE)  # overwritten before we got to it
    result = job.run(event(src))
    assert (result.outcome, result.reason) == (Outcome.IGNORED, "stale")
    assert pool.calls == 0 and store.get_output(OUT, "a.pdf") is None


def test_name_collision_gets_the_full_name_and_a_third_source_gets_a_record(job: Job, store: FakeStore) -> None:
    docx = store.put(IN, "a.docx", SAMPLE)
    odt = store.put(IN, "a.odt", (DATA / "sample.odt").read_bytes())
    assert job.run(event(docx)).output == f"gs://{OUT}/a.pdf"
    result = job.run(event(odt))
    assert (result.outcome, result.output) == (Outcome.CONVERTED, f"gs://{OUT}/a.odt.pdf")
    a = store.get_output(OUT, "a.pdf")
    assert a is not None and a.metadata["source-object"] == "a.docx"  # the first keeps its PDF
    # Someone else's object already sits at both names: never silently treated as done.
    store.put(OUT, "b.pdf", PDF, {"source-bucket": IN, "source-object": "b.xlsx", "source-generation": "1"})
    store.put(OUT, "b.docx.pdf", PDF, {"source-object": "unrelated"})
    b = store.put(IN, "b.docx", SAMPLE)
    failed = job.run(event(b))
    assert (failed.outcome, failed.reason) == (Outcome.FAILED, "name_collision")
    record = store.live(OUT, "b.docx.error.json")
    assert record is not None and json.loads(record[1])["reason"] == "name_collision"


# -- the filter ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bucket", "name", "event_type", "reason"), [
    (IN, "a.docx", "OBJECT_DELETE", "event_type"),
    (IN, "a.docx", "OBJECT_METADATA_UPDATE", "event_type"),
    (IN, "a.exe", "OBJECT_FINALIZE", "suffix"),
    (IN, "a.pdf", "OBJECT_FINALIZE", "suffix"),
    (IN, "docx", "OBJECT_FINALIZE", "suffix"),
    ("elsewhere", "a.docx", "OBJECT_FINALIZE", "bucket_not_allowed"),
])
def test_filter(job: Job, store: FakeStore, pool: FakePool, bucket: str, name: str, event_type: str,
                reason: str) -> None:
    src = store.put(bucket, name, SAMPLE)
    result = job.run(event(src, event_type=event_type))
    assert (result.outcome, result.reason) == (Outcome.IGNORED, reason)
    assert pool.calls == 0 and store.creates == 0


def test_suffix_is_case_insensitive_and_output_keeps_the_path(job: Job, store: FakeStore) -> None:
    src = store.put(IN, "dir/../Report.FINAL.DOCX", SAMPLE)
    assert job.run(event(src)).output == f"gs://{OUT}/dir/../Report.FINAL.pdf"


def test_own_outputs_are_never_fed_back_in(tmp_path: Path, store: FakeStore, pool: FakePool) -> None:
    config = Config(output_bucket="shared", office=OfficeSettings(work_dir=tmp_path), output_prefix="pdf",
                    input_buckets=("shared",))
    job = Job(config, pool, store)  # type: ignore[arg-type]
    for name in ("pdf/x.docx", "x.docx.error.json", "x.pdf"):
        src = store.put("shared", name, SAMPLE)
        result = job.run(event(src))
        assert result.outcome == Outcome.IGNORED and result.reason in ("own_output", "suffix"), name
    src = store.put("shared", "in/x.docx", SAMPLE)
    assert job.run(event(src)).output == "gs://shared/pdf/in/x.pdf"
    assert output_names(config, "in/x.docx") == ("pdf/in/x.pdf", "pdf/in/x.docx.pdf", "pdf/in/x.docx.error.json")


# -- failures -----------------------------------------------------------------------------------------------------


def test_permanent_failure_writes_one_record_and_acks(job: Job, store: FakeStore, pool: FakePool,
                                                      config: Config) -> None:
    src = store.put(IN, "incoming/broken.docx", SAMPLE[:2000])  # a zip cut short: corrupt
    result = job.run(event(src, message_id="m-7"))
    assert (result.outcome, result.reason) == (Outcome.FAILED, "corrupt")
    assert pool.calls == 0  # refused before LibreOffice saw it
    live = store.live(OUT, "incoming/broken.docx.error.json")
    assert live is not None
    record = json.loads(live[1])
    assert record["reason"] == "corrupt" and record["message_id"] == "m-7"
    assert record["generation"] == str(src.generation) and record["source"] == f"gs://{IN}/incoming/broken.docx"
    assert live[0].content_type == "application/json"
    assert store.get_output(OUT, "incoming/broken.pdf") is None
    again = job.run(event(src, message_id="m-8"))
    assert (again.outcome, again.reason) == (Outcome.DUPLICATE, "already_failed")
    assert len(store.objects[(OUT, "incoming/broken.docx.error.json")]) == 1
    assert jobs_dir_empty(config)


def test_conversion_refused_by_office_is_permanent(job: Job, store: FakeStore, pool: FakePool) -> None:
    pool.errors = [WorkerError(Reason.CONVERSION_FAILED, "Couldn't convert")]
    src = store.put(IN, "a.docx", SAMPLE)
    assert (job.run(event(src)).outcome, pool.calls) == (Outcome.FAILED, 1)


@pytest.mark.parametrize("reason", [Reason.OFFICE_CRASHED, Reason.CONVERSION_TIMEOUT, Reason.MEMORY_EXHAUSTED])
@pytest.mark.parametrize("max_attempts", [2, 5])
def test_poison_document_is_recorded_at_its_second_office_failure(
    tmp_path: Path, store: FakeStore, pool: FakePool, reason: Reason, max_attempts: int
) -> None:
    """Not after MAX_DELIVERY_ATTEMPTS: 5 x 120 s of an office per poison document was the old price."""
    config = Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path / "work"), input_buckets=(IN,),
                    max_delivery_attempts=max_attempts)
    job = Job(config, pool, store)  # type: ignore[arg-type]
    src = store.put(IN, "poison.docx", SAMPLE)
    pool.errors = [WorkerError(reason, "boom")] * 10
    outcomes = [job.run(event(src)).outcome for _ in range(2)]
    assert outcomes == [Outcome.RETRY, Outcome.FAILED]
    assert pool.calls == 2
    live = store.live(OUT, "poison.docx.error.json")
    assert live is not None and json.loads(live[1])["reason"] == reason.value
    assert job.run(event(src)).outcome == Outcome.DUPLICATE  # and then it stays done
    assert pool.calls == 2
    assert jobs_dir_empty(config)


def test_different_office_failures_add_up(job: Job, store: FakeStore, pool: FakePool) -> None:
    src = store.put(IN, "poison.docx", SAMPLE)
    pool.errors = [WorkerError(Reason.MEMORY_EXHAUSTED, "bloat"), WorkerError(Reason.CONVERSION_TIMEOUT, "hang")]
    assert [job.run(event(src)).outcome for _ in range(2)] == [Outcome.RETRY, Outcome.FAILED]


def test_an_office_killed_from_outside_is_never_a_strike(job: Job, store: FakeStore, pool: FakePool) -> None:
    """Chaos kills between two timeouts neither count nor reset: the document is recorded at its second timeout."""
    src = store.put(IN, "slow.xlsx", SAMPLE)
    killed = WorkerError(Reason.OFFICE_KILLED, "SIGKILL")
    timeout = WorkerError(Reason.CONVERSION_TIMEOUT, "hang")
    pool.errors = [killed, timeout, killed, killed, killed, timeout]
    results = [job.run(event(src)) for _ in range(6)]
    assert [r.outcome for r in results] == [Outcome.RETRY] * 5 + [Outcome.FAILED]
    assert results[-1].reason == "conversion_timeout"


def test_strikes_belong_to_one_generation(job: Job, store: FakeStore, pool: FakePool) -> None:
    """An overwrite is a new document: the old generation's strike does not count against it."""
    old = store.put(IN, "a.docx", SAMPLE)
    pool.errors = [WorkerError(Reason.CONVERSION_TIMEOUT, "hang")] * 2
    assert job.run(event(old)).outcome == Outcome.RETRY
    new = store.put(IN, "a.docx", SAMPLE)
    assert job.run(event(new)).outcome == Outcome.RETRY
    assert job.run(event(new)).outcome == Outcome.CONVERTED


def test_one_attempt_configured_means_no_retry(tmp_path: Path, store: FakeStore, pool: FakePool) -> None:
    config = Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path / "work"), max_delivery_attempts=1)
    job = Job(config, pool, store)  # type: ignore[arg-type]
    src = store.put(IN, "poison.docx", SAMPLE)
    pool.errors = [WorkerError(Reason.OFFICE_CRASHED, "boom")]
    assert job.run(event(src)).outcome == Outcome.FAILED


def test_pubsub_delivery_attempt_caps_strikes_spread_over_instances(job: Job, store: FakeStore,
                                                                      pool: FakePool) -> None:
    """This process saw no strike yet, but Pub/Sub delivered MAX_DELIVERY_ATTEMPTS times: the first one is final."""
    src = store.put(IN, "poison.docx", SAMPLE)
    pool.errors = [WorkerError(Reason.OFFICE_CRASHED, "boom")]
    assert job.run(event(src, delivery_attempt=3)).outcome == Outcome.FAILED


def test_redeliveries_for_backpressure_alone_do_not_make_a_document_poison(job: Job, store: FakeStore,
                                                                           pool: FakePool) -> None:
    """Pub/Sub's deliveryAttempt counts 429s too: below the cap, a first office failure is still retried."""
    src = store.put(IN, "a.docx", SAMPLE)
    pool.errors = [WorkerError(Reason.CONVERSION_TIMEOUT, "slow under load")]
    assert job.run(event(src, delivery_attempt=2)).outcome == Outcome.RETRY
    assert job.run(event(src, delivery_attempt=3)).outcome == Outcome.CONVERTED


@pytest.mark.parametrize("reason", [Reason.QUEUE_FULL, Reason.OFFICE_UNAVAILABLE, Reason.SHUTTING_DOWN,
                                    Reason.OFFICE_KILLED])  # killed from outside: says nothing about the document
def test_overload_is_retried_forever_never_recorded(job: Job, store: FakeStore, pool: FakePool,
                                                    reason: Reason) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    pool.errors = [WorkerError(reason, "busy")] * 10
    results = [job.run(event(src)) for _ in range(6)]
    assert {(r.outcome, r.reason) for r in results} == {(Outcome.RETRY, reason.value)}
    assert store.live(OUT, "a.docx.error.json") is None


def test_storage_outage_while_recording_a_failure_is_retried(job: Job, store: FakeStore) -> None:
    src = store.put(IN, "broken.docx", SAMPLE[:2000])
    store.fail_writes = WorkerError(Reason.STORAGE_UNAVAILABLE, "HTTP 503")
    result = job.run(event(src))
    assert (result.outcome, result.reason) == (Outcome.RETRY, "storage_unavailable")
    store.fail_writes = None
    assert job.run(event(src)).outcome == Outcome.FAILED


def test_too_large_is_refused_before_download(tmp_path: Path, store: FakeStore, pool: FakePool) -> None:
    config = Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path), max_input_bytes=1000)
    job = Job(config, pool, store)  # type: ignore[arg-type]
    src = store.put(IN, "big.docx", SAMPLE)
    result = job.run(event(src))
    assert (result.outcome, result.reason) == (Outcome.FAILED, "too_large")
    assert pool.calls == 0


def test_the_download_is_told_the_events_size(job: Job, store: FakeStore) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    job.run(event(src))
    assert store.download_sizes == [len(SAMPLE)]  # so the store can skip its metadata read


def test_object_name_never_becomes_a_local_path(job: Job, store: FakeStore, pool: FakePool, config: Config,
                                                tmp_path: Path) -> None:
    src = store.put(IN, "../../../../escape me/ünï.docx", SAMPLE)
    assert job.run(event(src)).outcome == Outcome.CONVERTED
    [seen] = pool.seen
    assert seen.is_relative_to(config.office.work_dir / "jobs")
    assert "escape" not in str(seen) and "ünï" not in str(seen)
    assert not [p for p in tmp_path.rglob("*") if "escape" in p.name or "ünï" in p.name]
    assert jobs_dir_empty(config)



def test_output_names_never_exceed_the_gcs_name_limit() -> None:
    from worker.job import MAX_OBJECT_NAME_BYTES, fit_object_name

    long_name = "incoming/" + "é" * 600 + ".docx"  # 1214 bytes
    fitted = fit_object_name(long_name, ".error.json")
    assert len(fitted.encode()) <= MAX_OBJECT_NAME_BYTES
    assert fitted.endswith(".error.json") and fitted.startswith("incoming/é")
    assert fitted == fit_object_name(long_name, ".error.json")  # stable, so redeliveries find the same record
    assert fit_object_name("incoming/a", ".pdf") == "incoming/a.pdf"  # short names are untouched


def test_temp_dirs_of_a_killed_worker_are_removed_at_start(tmp_path: Path, store: FakeStore, pool: FakePool) -> None:
    """A SIGKILLed worker never runs its `finally` (seen in the stress campaign's chaos scenario)."""
    stale = tmp_path / "jobs" / "job-abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "input").write_bytes(b"x" * 10)
    config = Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path))
    Job(config, pool, store)  # type: ignore[arg-type]
    assert list((tmp_path / "jobs").iterdir()) == []
