"""Job.run with per-document options: parsed from the event's metadata before any download, in the idempotency key,
secrets read from a real directory, the export handed to the pool, the PDF verified, every refusal one record.

The fakes are test_job's (GCS as a dict with generations, a pool that writes a PDF); the secrets directory, sniffing,
the options parser and the PDF checks are real.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pikepdf
import pytest

from tests.corpora import CORPUS, need_corpus
from tests.unit.test_job import IN, OUT, SAMPLE, FakePool, FakeStore, event
from worker.config import Config, OfficeSettings
from worker.errors import Reason
from worker.events import ObjectEvent
from worker.job import META_OPTIONS, Job, Outcome
from worker.office import STOCK_EXPORT, ConversionTiming, Export
from worker.options import DEFAULT, MountedSecrets, PdfOptions
from worker.outcome import JobResult
from worker.storage import ObjectInfo
from worker.web import status_for

CORPUS_PASSWORD = "Password1234_"  # MANIFEST.tsv: msoffcrypto-tool/example_password.docx


def blank_pdf() -> bytes:
    """A real one-page PDF with no outline, no form, no image: what a stock export of a blank page looks like."""
    pdf = pikepdf.new()
    pdf.add_blank_page()
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


class PdfPool(FakePool):
    """FakePool writing a real (parseable) PDF, so the job's verification reads something real."""

    def __init__(self) -> None:
        super().__init__()
        self.pdf = blank_pdf()

    def convert(self, src: Path, dst: Path, import_filter: str | None = None,
                export: Export = STOCK_EXPORT) -> ConversionTiming:
        timing = super().convert(src, dst, import_filter, export)
        dst.write_bytes(self.pdf)
        return timing


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(output_bucket=OUT, office=OfficeSettings(work_dir=tmp_path / "work"), input_buckets=(IN,),
                  max_delivery_attempts=3)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def pool() -> PdfPool:
    return PdfPool()


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    return d


def make_job(config: Config, pool: FakePool, store: FakeStore, secrets_dir: Path | None = None,
             defaults: PdfOptions = DEFAULT) -> Job:
    return Job(replace(config, pdf_defaults=defaults, secrets_dir=secrets_dir), pool, store,  # type: ignore[arg-type]
               secrets=None if secrets_dir is None else MountedSecrets(secrets_dir),
               now=lambda: datetime(2026, 12, 2, tzinfo=UTC))


def meta_event(info: ObjectInfo, metadata: dict[str, str] | None, *, message_id: str = "m-1",
               delivery_attempt: int | None = None) -> ObjectEvent:
    """The event of `info` as a push with the object resource would carry it (None: payload format NONE)."""
    return replace(event(info, message_id=message_id, delivery_attempt=delivery_attempt), metadata=metadata)


def record_of(store: FakeStore, name: str) -> tuple[ObjectInfo, dict[str, object]]:
    live = store.live(OUT, name)
    assert live is not None, name
    return live[0], json.loads(live[1])


# -- bad options: one record, acked at once, never downloaded ---------------------------------------------------


def test_bad_options_are_one_record_listing_every_key_before_any_download(
    config: Config, pool: PdfPool, store: FakeStore
) -> None:
    job = make_job(config, pool, store)
    src = store.put(IN, "in/a.docx", SAMPLE)
    metadata = {"docworker-pdfa": "4a", "Docworker-Colour": "red", "docworker-quality": "0", "owner": "bob"}
    result = job.run(meta_event(src, metadata))

    assert (result.outcome, result.reason) == (Outcome.FAILED, Reason.BAD_OPTION)
    assert status_for(result) == 204  # acked at once: never five retries
    assert store.download_sizes == [] and pool.calls == 0
    info, record = record_of(store, "in/a.docx.error.json")
    problems = record["problems"]
    assert isinstance(problems, dict)
    assert set(problems) == {"docworker-pdfa", "Docworker-Colour", "docworker-quality"}  # "owner" is not ours
    assert "1b, 2b or 3b" in problems["docworker-pdfa"] and "1-100" in problems["docworker-quality"]
    assert "unknown option" in problems["Docworker-Colour"]
    assert record["reason"] == "bad_option" and record["options"] is None
    assert info.metadata[META_OPTIONS] == "refused"

    # A redelivery (and a duplicate publish) of the same generation: the same record, never a second one.
    again = job.run(meta_event(src, metadata, delivery_attempt=2))
    twin = job.run(meta_event(src, metadata, message_id="m-2"))
    assert (again.outcome, again.reason) == (Outcome.DUPLICATE, "already_failed")
    assert (twin.outcome, status_for(twin)) == (Outcome.DUPLICATE, 204)
    assert len(store.objects[(OUT, "in/a.docx.error.json")]) == 1
    assert store.download_sizes == []


def test_an_option_naming_a_secret_without_a_secrets_dir_is_a_bad_option(
    config: Config, pool: PdfPool, store: FakeStore
) -> None:
    job = make_job(config, pool, store, secrets_dir=None)
    src = store.put(IN, "a.docx", SAMPLE)
    result = job.run(meta_event(src, {"docworker-password-secret": "reports"}))
    assert (result.outcome, result.reason) == (Outcome.FAILED, Reason.BAD_OPTION)
    _, record = record_of(store, "a.docx.error.json")
    assert "no secrets are configured" in str(record["problems"])
    assert store.download_sizes == []


@pytest.mark.parametrize(("setup", "expected"), [
    ("missing", "is not a secret this service has"),
    ("empty", "is empty"),
    ("binary", "is not UTF-8"),
])
def test_a_secret_that_cannot_be_had_is_a_bad_option(config: Config, pool: PdfPool, store: FakeStore,
                                                     secrets_dir: Path, setup: str, expected: str) -> None:
    if setup == "empty":
        (secrets_dir / "reports").write_bytes(b"")
    elif setup == "binary":
        (secrets_dir / "reports").write_bytes(b"\xff\xfe")
    job = make_job(config, pool, store, secrets_dir)
    src = store.put(IN, "a.docx", SAMPLE)
    result = job.run(meta_event(src, {"docworker-password-secret": "reports"}))
    assert (result.outcome, result.reason, status_for(result)) == (Outcome.FAILED, Reason.BAD_OPTION, 204)
    _, record = record_of(store, "a.docx.error.json")
    assert expected in str(record["problems"]) and "docworker-password-secret" in str(record["problems"])
    assert store.download_sizes == []


def test_a_secret_that_exists_but_cannot_be_read_now_is_retried(config: Config, pool: PdfPool, store: FakeStore,
                                                                 secrets_dir: Path) -> None:
    (secrets_dir / "reports").symlink_to("reports")  # a real I/O error (ELOOP), not "no such secret"
    job = make_job(config, pool, store, secrets_dir)
    src = store.put(IN, "a.docx", SAMPLE)
    result = job.run(meta_event(src, {"docworker-password-secret": "reports"}))
    assert (result.outcome, result.reason, status_for(result)) == (Outcome.RETRY, Reason.SECRET_UNAVAILABLE, 503)
    assert store.live(OUT, "a.docx.error.json") is None and store.download_sizes == []


# -- options applied, recorded and in the idempotency key -------------------------------------------------------


def test_options_reach_the_pool_and_the_stored_pdf_records_them(config: Config, pool: PdfPool,
                                                                 store: FakeStore) -> None:
    job = make_job(config, pool, store)
    src = store.put(IN, "a.docx", SAMPLE)
    result = job.run(meta_event(src, {"docworker-bookmarks": "FALSE", "docworker-form-fields": "no"}))
    assert (result.outcome, result.reason, result.profile) == (Outcome.CONVERTED, "ok", "custom")
    [export] = pool.exports
    assert export.filter_data is not None
    assert (export.filter_data["ExportBookmarks"], export.filter_data["ExportFormFields"]) == (False, False)
    pdf = store.get_output(OUT, "a.pdf")
    assert pdf is not None
    assert pdf.metadata["docworker-bookmarks"] == "false" and pdf.metadata["docworker-form-fields"] == "false"
    expected = PdfOptions(bookmarks=False, form_fields=False).digest()
    assert pdf.metadata[META_OPTIONS] == expected


def test_no_options_is_the_stock_export(config: Config, pool: PdfPool, store: FakeStore) -> None:
    job = make_job(config, pool, store)
    src = store.put(IN, "a.docx", SAMPLE, metadata={"owner": "bob"})
    result = job.run(meta_event(src, {"owner": "bob"}))
    assert (result.outcome, result.profile) == (Outcome.CONVERTED, "default")
    assert pool.exports[0].filter_data is None and pool.exports[0].load_password is None
    pdf = store.get_output(OUT, "a.pdf")
    assert pdf is not None and not [k for k in pdf.metadata if k.startswith("docworker-")]


def test_service_defaults_apply_and_metadata_overrides_them_key_by_key(config: Config, pool: PdfPool,
                                                                        store: FakeStore) -> None:
    job = make_job(config, pool, store, defaults=PdfOptions(bookmarks=False, quality=50))
    src = store.put(IN, "a.docx", SAMPLE)
    job.run(meta_event(src, {"docworker-quality": "70"}))
    data = pool.exports[0].filter_data
    assert data is not None and (data["ExportBookmarks"], data["Quality"]) == (False, 70)


def test_a_notification_without_the_object_resource_reads_the_metadata_once(config: Config, pool: PdfPool,
                                                                             store: FakeStore) -> None:
    job = make_job(config, pool, store)
    src = store.put(IN, "a.docx", SAMPLE, metadata={"docworker-bookmarks": "false"})
    result = job.run(meta_event(src, None))
    assert result.outcome == Outcome.CONVERTED and store.stats == 1
    assert pool.exports[0].filter_data is not None and pool.exports[0].filter_data["ExportBookmarks"] is False


def test_same_generation_and_options_is_a_duplicate_other_options_convert_again(
    config: Config, pool: PdfPool, store: FakeStore
) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    metadata = {"docworker-bookmarks": "false"}
    job = make_job(config, pool, store)
    assert job.run(meta_event(src, metadata)).outcome == Outcome.CONVERTED
    # Spelled differently, same options: the same digest, so a redelivery is a duplicate without a download.
    again = job.run(meta_event(src, {"DOCWORKER-BOOKMARKS": " off "}, delivery_attempt=2))
    assert (again.outcome, again.reason, pool.calls) == (Outcome.DUPLICATE, "same_generation", 1)

    # The service defaults changed (a new revision) before a redelivery: other options, converted again.
    changed = make_job(config, pool, store, defaults=PdfOptions(quality=60))
    result = changed.run(meta_event(src, metadata, delivery_attempt=3))
    assert (result.outcome, result.reason, pool.calls) == (Outcome.CONVERTED, "overwrite", 2)
    pdf = store.get_output(OUT, "a.pdf")
    assert pdf is not None and pdf.metadata["docworker-quality"] == "60"
    assert len(store.objects[(OUT, "a.pdf")]) == 2


def test_a_pdf_stored_before_options_existed_counts_as_the_stock_export(config: Config, pool: PdfPool,
                                                                         store: FakeStore) -> None:
    src = store.put(IN, "a.docx", SAMPLE)
    store.put(OUT, "a.pdf", b"%PDF-old", metadata={"source-bucket": IN, "source-object": "a.docx",
                                                   "source-generation": str(src.generation)})
    job = make_job(config, pool, store)
    result = job.run(meta_event(src, {}, delivery_attempt=2))
    assert (result.outcome, result.reason, pool.calls) == (Outcome.DUPLICATE, "same_generation", 0)
    other = job.run(meta_event(src, {"docworker-bookmarks": "false"}, delivery_attempt=3))
    assert (other.outcome, other.reason) == (Outcome.CONVERTED, "overwrite")


# -- verified, not trusted -----------------------------------------------------------------------------------------


def test_a_pdf_that_misses_what_was_asked_is_one_record_naming_each_failed_check(
    config: Config, pool: PdfPool, store: FakeStore
) -> None:
    job = make_job(config, pool, store)
    src = store.put(IN, "a.docx", SAMPLE)
    result: JobResult = job.run(meta_event(src, {"docworker-pdfa": "2b", "docworker-watermark": "DRAFT"}))
    assert (result.outcome, result.reason, status_for(result)) == (Outcome.FAILED, Reason.VERIFICATION_FAILED, 204)
    assert store.get_output(OUT, "a.pdf") is None  # never a silently non-compliant archive file
    info, record = record_of(store, "a.docx.error.json")
    checks = {c["check"] for c in record["failed_checks"]}  # type: ignore[union-attr]
    assert {"pdfa_metadata_missing", "pdfa_output_intent_missing", "watermark_missing"} <= checks
    assert set(result.checks_failed) == checks and result.profile == "pdfa-2b"
    assert record["options"] == {"docworker-pdfa": "2b", "docworker-watermark": "DRAFT"}
    assert info.metadata["docworker-pdfa"] == "2b"
    assert pool.exports[0].filter_data is not None and pool.exports[0].filter_data["SelectPdfVersion"] == 2


# -- encrypted inputs: the password from a real secrets directory ------------------------------------------------


@pytest.fixture
def encrypted_docx() -> bytes:
    return (need_corpus(CORPUS) / "msoffcrypto-tool" / "example_password.docx").read_bytes()


@pytest.mark.parametrize(("secret", "reason"), [(None, Reason.PASSWORD_REQUIRED), ("not-it", Reason.PASSWORD_WRONG)])
def test_an_encrypted_input_without_or_with_a_wrong_password_is_one_permanent_record(
    config: Config, pool: PdfPool, store: FakeStore, secrets_dir: Path, encrypted_docx: bytes,
    secret: str | None, reason: Reason,
) -> None:
    metadata = {}
    if secret is not None:
        (secrets_dir / "doc-pw").write_text(secret + "\n")
        metadata = {"docworker-password-secret": "doc-pw"}
    job = make_job(config, pool, store, secrets_dir)
    src = store.put(IN, "locked.docx", encrypted_docx)
    result = job.run(meta_event(src, metadata))
    assert (result.outcome, result.reason, status_for(result)) == (Outcome.FAILED, reason, 204)
    assert pool.calls == 0  # decided by sniffing, before any office
    _, record = record_of(store, "locked.docx.error.json")
    assert record["reason"] == reason.value
    assert "Password1234_" not in json.dumps(record) and (secret is None or secret not in json.dumps(record))


def test_an_encrypted_input_opens_with_its_mounted_secret(config: Config, pool: PdfPool, store: FakeStore,
                                                           secrets_dir: Path, encrypted_docx: bytes) -> None:
    (secrets_dir / "doc-pw").mkdir()  # the Cloud Run layout: one directory per secret, the value inside
    (secrets_dir / "doc-pw" / "value").write_text(CORPUS_PASSWORD)
    job = make_job(config, pool, store, secrets_dir)
    src = store.put(IN, "locked.docx", encrypted_docx)
    result = job.run(meta_event(src, {"docworker-password-secret": "doc-pw"}))
    assert (result.outcome, result.kind) == (Outcome.CONVERTED, "docx")
    assert pool.exports[0].load_password == CORPUS_PASSWORD
    pdf = store.get_output(OUT, "locked.pdf")
    assert pdf is not None and pdf.metadata["docworker-password-secret"] == "doc-pw"  # the name, never the value
    assert CORPUS_PASSWORD not in json.dumps(pdf.metadata)
