"""The synchronous route's HTTP side (worker/sync_route.py) on Flask's test client, the office replaced by a converter
that writes a small real PDF (this isolates the route: the real pool is in tests/integration/test_sync_clients.py).

Streaming limits, one PDF / zip / merge / metadata, Gotenberg's headers and error bodies, the share of offices this
route may take (429 with Retry-After beyond it), the per-request timeout, auth, drain, and pushes never counting
synchronous requests against their queue.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pikepdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from tests.harness.metrics_scrape import samples_of, value
from tests.harness.waiting import wait_for
from tests.harness.web_app import NoPool, RecordingJob
from worker.auth import AuthSettings, PushAuthenticator
from worker.config import Config, OfficeSettings
from worker.errors import Reason, WorkerError
from worker.job import JobResult, Outcome
from worker.metrics import Metrics
from worker.office import STOCK_EXPORT, ConversionTiming, Export
from worker.web import Lifecycle, create_app

DATA = Path(__file__).resolve().parents[1] / "data"
DOCX = (DATA / "sample.docx").read_bytes()
XLSX = (DATA / "sample.xlsx").read_bytes()
ROUTE = "/forms/libreoffice/convert"


class PdfWriter:
    """Stands in for the pool: writes a PDF with `pages` pages, or waits for `release`, or raises `error`."""

    def __init__(self, pages: int = 1) -> None:
        self.pages = pages
        self.calls: list[Export] = []
        self.error: WorkerError | None = None
        self.release: threading.Event | None = None
        self.started = threading.Semaphore(0)

    def convert(self, src: Path, dst: Path, import_filter: str | None = None,
                export: Export = STOCK_EXPORT) -> ConversionTiming:
        self.calls.append(export)
        self.started.release()
        if self.release is not None:
            self.release.wait(10)
        if self.error is not None:
            raise self.error
        pdf = pikepdf.new()
        for _ in range(self.pages):
            pdf.add_blank_page()
        pdf.save(dst)
        return ConversionTiming(0.001, 0.002, 0)


@pytest.fixture
def converter() -> PdfWriter:
    return PdfWriter()


@pytest.fixture
def sync_config(tmp_path: Path) -> Config:
    return Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path, pool_size=2), auth_mode="off",
                  max_input_bytes=200_000, max_body_bytes=400_000, sync_queue_size=1, sync_timeout_s=5.0)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def life() -> Lifecycle:
    return Lifecycle()


@pytest.fixture
def sync_app(sync_config: Config, converter: PdfWriter, metrics: Metrics, life: Lifecycle) -> Flask:
    job = RecordingJob(JobResult(Outcome.CONVERTED, "ok", output="gs://out/x.pdf"))
    return create_app(sync_config, job=job, pool=NoPool(), authenticator=PushAuthenticator(AuthSettings("off")),
                      metrics=metrics, lifecycle=life, converter=converter)


@pytest.fixture
def http(sync_app: Flask) -> FlaskClient:
    return sync_app.test_client()


def post(http: FlaskClient, files: list[tuple[str, bytes]], fields: dict[str, str] | None = None,
         headers: dict[str, str] | None = None, path: str = ROUTE):  # type: ignore[no-untyped-def]
    data: dict[str, object] = dict(fields or {})
    data["files"] = [(io.BytesIO(body), name) for name, body in files]
    return http.post(path, data=data, headers=headers or {}, content_type="multipart/form-data")


def test_one_file_answers_one_pdf_named_by_the_header_with_the_trace(http: FlaskClient) -> None:
    r = post(http, [("a.docx", DOCX)], headers={"Gotenberg-Output-Filename": "foo", "Gotenberg-Trace": "t-1"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Content-Disposition"] == "attachment; filename=foo.pdf"
    assert r.headers["Gotenberg-Trace"] == "t-1"
    assert r.data.startswith(b"%PDF-")


def test_several_files_answer_a_zip_of_name_pdf_entries(http: FlaskClient) -> None:
    r = post(http, [("a.docx", DOCX), ("b.xlsx", XLSX)], headers={"Gotenberg-Output-Filename": "foo"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"] == "attachment; filename=foo.zip"
    with zipfile.ZipFile(io.BytesIO(r.data)) as archive:
        assert sorted(archive.namelist()) == ["a.docx.pdf", "b.xlsx.pdf"]
    assert r.headers["Gotenberg-Trace"]  # generated when the caller sent none


def test_merge_answers_one_pdf_with_every_page_and_metadata_written(http: FlaskClient, converter: PdfWriter) -> None:
    converter.pages = 2
    meta = '{"Title": "Quarter", "Author": ["Ann", "Bo"], "Keywords": ["q1", "sales"], "Trapped": "False"}'
    r = post(http, [("b.docx", DOCX), ("a.xlsx", XLSX)], {"merge": "true", "metadata": meta})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(r.data)) as pdf:
        assert len(pdf.pages) == 4
        assert str(pdf.docinfo["/Title"]) == "Quarter"
        assert str(pdf.docinfo["/Keywords"]) == "q1, sales"
        assert pdf.docinfo["/Trapped"] == pikepdf.Name("/False")
        assert pdf.open_metadata()["dc:creator"] == ["Ann", "Bo"]


def test_options_reach_the_export(http: FlaskClient, converter: PdfWriter) -> None:
    r = post(http, [("a.docx", DOCX)], {"exportBookmarks": "false", "quality": "40"})
    assert r.status_code == 200, r.text
    data = converter.calls[0].filter_data
    assert data is not None and data["ExportBookmarks"] is False and data["Quality"] == 40


def test_a_field_we_cannot_honour_is_400_naming_it_before_any_conversion(http: FlaskClient,
                                                                        converter: PdfWriter) -> None:
    r = post(http, [("a.docx", DOCX)], {"landscape": "true", "nativeWatermarkColor": "255"})
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert "form field 'landscape'" in r.text and "form field 'nativeWatermarkColor'" in r.text
    assert converter.calls == []


def test_a_refused_file_is_400_naming_it(http: FlaskClient, converter: PdfWriter) -> None:
    r = post(http, [("broken.docx", b"PK\x03\x04 not a zip at all")])
    assert r.status_code == 400
    assert "'broken.docx'" in r.text and "corrupt" in r.text
    assert converter.calls == []


def test_not_multipart_is_415(http: FlaskClient) -> None:
    r = http.post(ROUTE, data=b"{}", content_type="application/json")
    assert r.status_code == 415
    assert "multipart/form-data" in r.text


def test_a_file_over_max_input_bytes_is_413_naming_it(http: FlaskClient) -> None:
    r = post(http, [("big.docx", b"x" * 250_000)])
    assert r.status_code == 413
    assert "'big.docx'" in r.text and "MAX_INPUT_BYTES" in r.text


def test_a_body_over_max_body_bytes_is_413(http: FlaskClient) -> None:
    r = post(http, [("a.docx", b"x" * 150_000), ("b.docx", b"y" * 150_000), ("c.docx", b"z" * 150_000)])
    assert r.status_code == 413
    assert "MAX_BODY_BYTES" in r.text


def test_uploads_are_streamed_to_the_work_dir_and_removed_after(http: FlaskClient, sync_config: Config) -> None:
    r = post(http, [("a.docx", DOCX), ("b.xlsx", XLSX)])
    assert r.status_code == 200
    r.close()
    assert list((sync_config.office.work_dir / "sync").iterdir()) == []


def test_beyond_the_routes_share_of_offices_requests_get_429_with_retry_after(
        sync_app: Flask, converter: PdfWriter, metrics: Metrics) -> None:
    """pool_size 2 -> 1 office for this route plus a queue of 1: the third concurrent request is refused at once."""
    converter.release = threading.Event()
    answers: list[int] = []

    def call() -> None:
        answers.append(post(sync_app.test_client(), [("a.docx", DOCX)]).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    assert converter.started.acquire(timeout=5)  # the first one converts (the second waits for the office)
    gate = sync_app.extensions["sync_route"].gate
    wait_for("both requests inside the gate", lambda: gate.inside == 2, timeout_s=5)
    assert value(samples_of(metrics.exposition().decode()), "worker_route_offices_in_use",
                 route="libreoffice_convert") == 1
    r = post(sync_app.test_client(), [("a.docx", DOCX)])
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    converter.release.set()
    for t in threads:
        t.join(10)
    assert answers == [200, 200]


def test_a_request_past_sync_timeout_is_503_with_retry_after(http: FlaskClient, converter: PdfWriter,
                                                            sync_config: Config, sync_app: Flask) -> None:
    converter.release = threading.Event()
    sync_app.extensions["sync_route"].config = replace(sync_config, sync_timeout_s=0.3)
    r = post(http, [("a.docx", DOCX)])
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert "time limit" in r.text
    converter.release.set()


def test_office_trouble_is_503_with_retry_after(http: FlaskClient, converter: PdfWriter) -> None:
    converter.error = WorkerError(Reason.OFFICE_CRASHED, "boom")
    r = post(http, [("a.docx", DOCX)])
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert "'a.docx'" in r.text


def test_platform_auth_guards_the_route(tmp_path: Path, converter: PdfWriter) -> None:
    config = Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path, pool_size=2),
                    auth_mode="platform", push_service_account="push@x.iam.gserviceaccount.com")
    auth = PushAuthenticator(AuthSettings("platform", service_account="push@x.iam.gserviceaccount.com",
                                          other_accounts=("app@x.iam.gserviceaccount.com",)))
    app = create_app(config, job=RecordingJob(JobResult(Outcome.CONVERTED, "ok")), pool=NoPool(),
                     authenticator=auth, metrics=Metrics(CollectorRegistry()), converter=converter)
    http = app.test_client()
    assert post(http, [("a.docx", DOCX)]).status_code == 401
    assert post(http, [("a.docx", DOCX)], headers={"Authorization": "Bearer " + _token("eve@x.com")}).status_code \
        == 403
    r = post(http, [("a.docx", DOCX)], headers={"Authorization": "Bearer " + _token("app@x.iam.gserviceaccount.com")})
    assert r.status_code == 200


def _token(email: str) -> str:
    import base64
    import json

    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'email': email})}.SIGNATURE_REMOVED_BY_GOOGLE"


def test_draining_refuses_with_503(http: FlaskClient, life: Lifecycle) -> None:
    life.drain(0)
    r = post(http, [("a.docx", DOCX)])
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"


def test_the_same_route_answers_under_the_gotenberg_root_with_its_health(http: FlaskClient) -> None:
    assert post(http, [("a.docx", DOCX)], path="/gotenberg" + ROUTE).status_code == 200
    r = http.get("/gotenberg/health", headers={"Gotenberg-Trace": "h-1"})
    assert r.status_code == 200
    assert r.json is not None and r.json["status"] == "up"
    assert r.json["details"]["libreoffice"]["status"] == "up"
    assert r.headers["Gotenberg-Trace"] == "h-1"
    assert http.get("/health").json == {"status": "ok"}  # ours is untouched


def test_metrics_count_each_answer_by_route_code_and_reason(http: FlaskClient, metrics: Metrics) -> None:
    post(http, [("a.docx", DOCX)])
    post(http, [("a.docx", DOCX)], {"landscape": "true"})
    text = samples_of(metrics.exposition().decode())
    assert value(text, "worker_route_requests_total", route="libreoffice_convert", code="200", reason="ok") == 1
    assert value(text, "worker_route_requests_total", route="libreoffice_convert", code="400",
                 reason="bad_option") == 1
    assert value(text, "worker_route_bytes_total", route="libreoffice_convert", direction="in") == 2 * len(DOCX)
    assert not any(name == "worker_jobs_total" for name, _ in text)  # pushes' counters stay the pushes'


@pytest.fixture
def held_sync(sync_app: Flask, converter: PdfWriter) -> Iterator[None]:
    """One synchronous conversion in flight for the duration of a test."""
    converter.release = threading.Event()
    t = threading.Thread(target=lambda: post(sync_app.test_client(), [("a.docx", DOCX)]))
    t.start()
    assert converter.started.acquire(timeout=5)
    yield
    converter.release.set()
    t.join(10)


def test_synchronous_requests_never_count_against_the_push_queue(sync_app: Flask, life: Lifecycle,
                                                                 held_sync: None) -> None:
    assert life.in_flight == 1 and life.pushes_in_flight == 0


def test_sync_settings_default_to_all_offices_but_one_and_are_validated() -> None:
    env = {"OUTPUT_BUCKET": "out", "AUTH_MODE": "off", "POOL_SIZE": "3"}
    config = Config.from_env(env)
    assert (config.effective_sync_max_offices, config.effective_sync_queue_size, config.sync_timeout_s) == (2, 4, 30)
    assert Config.from_env({**env, "POOL_SIZE": "1"}).effective_sync_max_offices == 1
    with pytest.raises(WorkerError) as caught:
        Config.from_env({**env, "SYNC_MAX_OFFICES": "4", "SYNC_TIMEOUT_S": "-1"})
    assert "SYNC_MAX_OFFICES=4 is more than POOL_SIZE=3" in caught.value.message
    assert "SYNC_TIMEOUT_S" in caught.value.message


def test_literal_passwords_reach_the_export_and_an_unencrypted_answer_is_never_sent(
        http: FlaskClient, converter: PdfWriter) -> None:
    """userPassword has no secret name in the options: the export must still encrypt, and the PDF is verified
    (this fake writes an unencrypted one, so the answer is a 400 naming the failed check, not that PDF)."""
    r = post(http, [("a.docx", DOCX)], {"userPassword": "open-me"})
    data = converter.calls[0].filter_data
    assert data is not None and data["EncryptFile"] is True and data["DocumentOpenPassword"] == "open-me"
    assert r.status_code == 400
    assert "verification_failed" in r.text and "open-me" not in r.text
