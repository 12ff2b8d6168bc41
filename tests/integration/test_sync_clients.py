"""Gotenberg's own clients, written by other people, against a real `worker serve` (real pool, real LibreOffice):
the PyPI `gotenberg-client` package and npm's `chromiumly` (installed by `make node-clients`, pinned by
tests/clients/package-lock.json). Each converts docx/xlsx/pptx, several files (zip), a merge, options checked in the
PDF (PDF/A-2b with pikepdf, page ranges by page count), metadata, and gets a refused file's error status and body.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import requests
from gotenberg_client import GotenbergClient
from gotenberg_client._errors import HttpStatusError
from gotenberg_client.options import PdfAFormat
from msoffcrypto.format.ooxml import OOXMLFile

from tests.harness.metrics_scrape import value
from tests.harness.waiting import wait_for
from tests.harness.worker_process import WorkerProcess
from tests.integration.conftest_office import make_long_docx
from worker import emulators

pytestmark = pytest.mark.office

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CLIENTS = REPO / "tests" / "clients"
SAMPLES = ("sample.docx", "sample.xlsx", "sample.pptx")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, fake_gcs: emulators.Proc) -> Iterator[WorkerProcess]:
    """One `worker serve` with 2 offices (1 for this route, 1 kept for pushes), AUTH_MODE=off on loopback."""
    tmp = tmp_path_factory.mktemp("sync-clients")
    out_bucket = f"sync-{uuid.uuid4().hex[:12]}"
    for bucket in (out_bucket, out_bucket + "-in"):
        emulators.create_bucket(fake_gcs.url, bucket)
    proc = WorkerProcess(tmp / "logs", tmp / "work", fake_gcs.url, output_bucket=out_bucket,
                         input_buckets=(out_bucket + "-in",), env={"POOL_SIZE": "2", "SYNC_TIMEOUT_S": "120"})
    proc.start(120)
    yield proc
    proc.stop(grace_s=15)


@pytest.fixture(scope="module")
def gotenberg(worker: WorkerProcess) -> Iterator[GotenbergClient]:
    """gotenberg-client pointed at the worker's Gotenberg root, the way a Gotenberg user switches over."""
    with GotenbergClient(worker.url + "/gotenberg", timeout=180) as client:
        yield client


def pages(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


def pdfa_identification(data: bytes) -> tuple[str, str]:
    """(part, conformance) from the PDF's XMP, and every font embedded: what PDF/A-2b requires of LibreOffice."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        meta = pdf.open_metadata()
        assert "/OutputIntents" in pdf.Root
        return str(meta.get("pdfaid:part")), str(meta.get("pdfaid:conformance"))


# -- gotenberg-client (PyPI) ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_gotenberg_client_converts_each_office_family(gotenberg: GotenbergClient, name: str) -> None:
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert(DATA / name).output_filename("report").trace_id(f"py-{name}").run()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == "attachment; filename=report.pdf"
    assert response.headers["Gotenberg-Trace"] == f"py-{name}"
    assert pages(response.content) >= 1


def test_gotenberg_client_gets_a_zip_for_several_files(gotenberg: GotenbergClient, tmp_path: Path) -> None:
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert_files([DATA / n for n in SAMPLES]).run()
    assert response.is_zip
    response.extract_to(tmp_path)  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n + ".pdf" for n in SAMPLES)
    assert all(pages((tmp_path / (n + ".pdf")).read_bytes()) >= 1 for n in SAMPLES)


def test_gotenberg_client_merges(gotenberg: GotenbergClient) -> None:
    with gotenberg.libre_office.to_pdf() as route:
        single = route.convert(DATA / "sample-10pages.docx").run()
    with gotenberg.libre_office.to_pdf() as route:
        merged = route.convert_files([DATA / "sample-10pages.docx", DATA / "sample.docx"]).merge(merge=True).run()
    assert merged.headers["Content-Type"] == "application/pdf"
    assert pages(merged.content) == pages(single.content) + 1


def test_gotenberg_client_pdfa_page_ranges_and_metadata_are_in_the_pdf(gotenberg: GotenbergClient) -> None:
    with gotenberg.libre_office.to_pdf() as route:
        response = (route.convert(DATA / "sample-10pages.docx").pdf_format(PdfAFormat.A2b).page_ranges("2-3")
                    .metadata(title="Quarterly", author="Docworker tests").run())
    assert response.status_code == 200
    assert pdfa_identification(response.content) == ("2", "B")
    assert pages(response.content) == 2
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert str(pdf.docinfo["/Title"]) == "Quarterly"
        assert str(pdf.docinfo["/Author"]) == "Docworker tests"


def test_gotenberg_client_gets_the_error_status_and_body_of_a_refused_file(gotenberg: GotenbergClient,
                                                                          tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is not a zip at all")
    with gotenberg.libre_office.to_pdf() as route, pytest.raises(HttpStatusError) as caught:
        route.convert(broken).run()
    assert caught.value.response.status_code == 400
    body = caught.value.response.content.decode()
    assert "'broken.docx'" in body and "corrupt" in body


def test_gotenberg_client_gets_400_naming_a_field_we_cannot_honour(gotenberg: GotenbergClient) -> None:
    with gotenberg.libre_office.to_pdf() as route, pytest.raises(HttpStatusError) as caught:
        route.convert(DATA / "sample.docx").skip_empty_pages(skip_empty_pages=True).run()
    assert caught.value.response.status_code == 400
    assert "form field 'skipEmptyPages' is invalid" in caught.value.response.content.decode()


def test_gotenberg_client_health(gotenberg: GotenbergClient) -> None:
    status = gotenberg.health.health()
    assert status.overall == "up"
    assert status.uno is not None and status.uno.status == "up"


def test_the_routes_metrics_and_log_lines_carry_the_route(worker: WorkerProcess,
                                                         gotenberg: GotenbergClient) -> None:
    with gotenberg.libre_office.to_pdf() as route:
        route.convert(DATA / "sample.docx").trace_id("metrics-check").run()
    _, samples = worker.scrape()
    assert value(samples, "worker_route_requests_total", route="libreoffice_convert", code="200", reason="ok") >= 1
    lines = [e for e in worker.log_lines() if e.get("logger") == "worker.sync"]
    mine = [e for e in lines if e.get("correlation_id") == "metrics-check"]
    assert len(mine) == 1
    assert (mine[0]["status"], mine[0]["route"], mine[0]["kinds"]) == (200, "libreoffice_convert", ["docx"])
    assert mine[0]["durations"]["convert"] > 0


# -- chromiumly (npm) -----------------------------------------------------------------------------------


def run_chromiumly(worker: WorkerProcess, tmp_path: Path, cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each case through chromiumly's LibreOffice.convert in one node process; its results by case name."""
    assert shutil.which("node"), "node is required (the machine's nodejs)"
    assert (CLIENTS / "node_modules" / "chromiumly").is_dir(), "run `make node-clients` (npm ci in tests/clients)"
    for case in cases:
        case["out"] = str(tmp_path / f"{case['name']}.out")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"endpoint": worker.url, "cases": cases}))
    done = subprocess.run(["node", str(CLIENTS / "chromiumly_convert.cjs"), str(plan)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    results = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(results) == {c["name"] for c in cases}, done.stdout
    return results


def test_chromiumly_converts_families_zip_merge_options_and_gets_a_refusal(worker: WorkerProcess,
                                                                          tmp_path: Path) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is not a zip at all")
    cases: list[dict[str, Any]] = [
        *({"name": n, "files": [str(DATA / n)], "options": {}} for n in SAMPLES),
        {"name": "several", "files": [str(DATA / n) for n in SAMPLES], "options": {}},
        {"name": "merged", "files": [str(DATA / "sample.docx"), str(DATA / "sample-10pages.docx")],
         "options": {"merge": True}},
        {"name": "pdfa", "files": [str(DATA / "sample-10pages.docx")],
         "options": {"pdfa": "PDF/A-2b", "properties": {"nativePageRanges": {"from": 2, "to": 4}},
                     "metadata": {"Title": "From chromiumly"}}},
        {"name": "refused", "files": [str(broken)], "options": {}},
    ]
    results = run_chromiumly(worker, tmp_path, cases)
    for name in (*SAMPLES, "several", "merged", "pdfa"):
        assert results[name]["ok"], results[name]
    out = {name: Path(c["out"]).read_bytes() for c in cases if results[(name := c["name"])]["ok"]}
    for name in SAMPLES:
        assert pages(out[name]) >= 1
    with zipfile.ZipFile(io.BytesIO(out["several"])) as archive:  # chromiumly names its parts file01.docx, ...
        assert sorted(archive.namelist()) == ["file01.docx.pdf", "file02.xlsx.pdf", "file03.pptx.pdf"]
    ten = pages(out["merged"]) - 1
    assert ten >= 10  # sample.docx (1 page) then sample-10pages.docx
    assert pdfa_identification(out["pdfa"]) == ("2", "B")
    assert pages(out["pdfa"]) == 3
    with pikepdf.open(io.BytesIO(out["pdfa"])) as pdf:
        assert str(pdf.docinfo["/Title"]) == "From chromiumly"
    refused = results["refused"]
    assert not refused["ok"]
    assert "Status: 400" in refused["error"] and "'file01.docx'" in refused["error"]
    assert "corrupt" in refused["error"]


def test_plain_http_answers_like_gotenberg(worker: WorkerProcess) -> None:
    """What curl sees (README): the route at the root too, and Gotenberg's 415 for a non-multipart body."""
    with (DATA / "sample.docx").open("rb") as f:
        r = requests.post(worker.url + "/forms/libreoffice/convert", files={"files": ("a.docx", f)}, timeout=120)
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    r = requests.post(worker.url + "/forms/libreoffice/convert", json={}, timeout=30)
    assert r.status_code == 415 and r.headers["Content-Type"] == "text/plain; charset=UTF-8"


# -- passwords and the push path -------------------------------------------------------------------------


def encrypted_docx(path: Path, password: str) -> Path:
    """sample.docx encrypted as Word does (ECMA-376 agile encryption, msoffcrypto-tool)."""
    with (DATA / "sample.docx").open("rb") as src, path.open("wb") as out:
        OOXMLFile(src).encrypt(password, out)
    return path


def test_gotenberg_client_password_opens_an_encrypted_input_and_user_password_encrypts_the_output(
        gotenberg: GotenbergClient, tmp_path: Path) -> None:
    locked = encrypted_docx(tmp_path / "locked.docx", "s3cret")
    with gotenberg.libre_office.to_pdf() as route, pytest.raises(HttpStatusError) as caught:
        route.convert(locked).run()
    assert caught.value.response.status_code == 400
    assert caught.value.response.content.decode() == (
        "The document 'locked.docx' is password-protected. Provide its password in the 'password' form field.")
    with gotenberg.libre_office.to_pdf() as route, pytest.raises(HttpStatusError) as caught:
        route.convert(locked).password("wrong").run()
    assert caught.value.response.status_code == 400
    assert "The password for the document 'locked.docx' is incorrect" in caught.value.response.content.decode()
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert(locked).password("s3cret").user_password("open-me").run()
    assert response.status_code == 200
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(io.BytesIO(response.content))
    with pikepdf.open(io.BytesIO(response.content), password="open-me") as pdf:
        assert len(pdf.pages) >= 1


def test_a_push_is_served_while_the_route_holds_all_its_offices(worker: WorkerProcess, tmp_path: Path) -> None:
    """POOL_SIZE=2 gives this route 1 office: with it busy (a 1500-page document, several seconds) and one more
    request waiting, a push still converts on the office kept for pushes, answered while the long one runs."""
    long_doc = make_long_docx(tmp_path / "long.docx", 1500)
    answers: dict[str, int] = {}

    def convert(name: str, path: Path) -> None:
        with path.open("rb") as f:
            answers[name] = requests.post(worker.url + "/forms/libreoffice/convert", files={"files": (path.name, f)},
                                          timeout=300).status_code

    threads = [threading.Thread(target=convert, args=("long", long_doc)),
               threading.Thread(target=convert, args=("waiting", DATA / "sample.docx"))]
    threads[0].start()
    wait_for("the route's office busy",
             lambda: value(worker.scrape()[1], "worker_route_offices_in_use", route="libreoffice_convert") == 1,
             timeout_s=30)
    threads[1].start()
    name = f"push/{uuid.uuid4().hex[:8]}.docx"
    blob = worker.client.bucket(worker.in_bucket).blob(name)
    blob.upload_from_filename(str(DATA / "sample.docx"))
    blob.reload()
    item = {"kind": "storage#object", "bucket": worker.in_bucket, "name": name, "generation": str(blob.generation),
            "size": str(blob.size)}
    push = worker.post(emulators.push_envelope(item, "sync-1", subscription="projects/p/subscriptions/s"))
    assert push.status_code == 204
    assert threads[0].is_alive() and "long" not in answers  # the push did not wait for the route's conversion
    for t in threads:
        t.join(300)
    assert answers == {"long": 200, "waiting": 200}
