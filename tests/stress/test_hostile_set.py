"""Issue 11 layer 5: every vector of tests/hostile_set.py through the real pool and through the push chain.

No request may reach the canary and no byte of the secrets may come back, in a PDF or in a failure record; the
bombs must end as `hostile` refusals. A few vectors run in `make test`, all of them under `make stress` (slow).
The controls show both checks can fail: an unsandboxed cold soffice with a default profile fetches a link
(tests/integration/test_office.py), and an embedded secret is found by secret_traces().
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.harness.chain import DIRECT_BUCKET, IN_BUCKET, OUT_BUCKET, envelope
from tests.hostile_set import MARKER, VECTORS, Secrets, Vector, file_url, secret_traces, write_odf, write_word
from tests.integration.conftest_office import CountingServer, initialised_template, office_settings, running_pool
from tests.stress.harness import ended, stress_worker, upload_all, wait_all_ended
from worker import emulators
from worker.conversion import convert_file
from worker.errors import Reason, WorkerError
from worker.office import OfficePool

pytestmark = pytest.mark.office

# The default run: one of each family and mechanism kind the issue found leaking, plus one bomb.
SMALL = {"docx-shape-fill.docx", "odt-backgrounds.odt", "pptx-links.pptx", "ods-links.ods",
         "docx-svg-href-secret.docx", "bomb-svg-in-docx.docx"}
# Through the push chain (slow): a representative subset.
CHAIN = ("docx-linked-secret-png.docx", "docx-page-background.docx", "odt-svg-href-secret.odt", "odp-links.odp",
         "xlsx-links.xlsx", "rtf-fields.rtf", "bomb-nested-tables.docx", "bomb-utf16-no-bom.docx")
BY_NAME = {v.name: v for v in VECTORS}


def vector_params() -> list[object]:
    return [pytest.param(v, id=v.name, marks=() if v.name in SMALL else pytest.mark.slow) for v in VECTORS]


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    return Secrets.write(tmp_path_factory.mktemp("secrets"))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficePool]:
    base = tmp_path_factory.mktemp("hostile-set")
    template = initialised_template(base / "template")
    # Real documents of this size convert in well under a second: 20 s only bounds what a hang costs the run.
    with running_pool(office_settings(base / "work", template, conversion_timeout_s=20)) as pool:
        yield pool


def settle(canary: CountingServer) -> None:
    """Requests an office sends from a background thread may trail the conversion: give them a moment."""
    time.sleep(0.5)


@pytest.mark.parametrize("vector", vector_params())
def test_vector_through_the_pool(vector: Vector, pool: OfficePool, secrets: Secrets, tmp_path: Path) -> None:
    with CountingServer() as canary:
        src = vector.build(tmp_path / vector.name, canary.url(), secrets)
        out = tmp_path / "out.pdf"
        error: WorkerError | None = None
        try:
            convert_file(pool, src, out, src.name, tmp_path)
        except WorkerError as exc:
            error = exc
        settle(canary)
        requests_seen = list(canary.requests)
    if vector.expect == "hostile":
        assert error is not None and error.reason is Reason.HOSTILE, error
    assert requests_seen == [], f"{vector.what}: {requests_seen}"
    # A link that holds an office until the timeout is a denial of service even when nothing leaks.
    assert error is None or error.reason is not Reason.CONVERSION_TIMEOUT, f"{vector.what}: {error}"
    if out.exists():
        assert secret_traces(out) == [], vector.what
    assert error is None or MARKER not in error.message


def test_secret_traces_finds_embedded_secrets(pool: OfficePool, secrets: Secrets, tmp_path: Path) -> None:
    """CONTROL: the same secrets, embedded in the package instead of linked, are found in the PDF."""
    png = write_word(tmp_path / "embedded.docx", _inline_embedded(), [("rIdE", "image", "media/s.png", False)],
                     parts={"word/media/s.png": secrets.png.read_bytes()})
    svg = write_odf(tmp_path / "embedded.odt", "text",
                    '<text:p>x<draw:frame text:anchor-type="paragraph" svg:width="8cm" svg:height="2cm">'
                    '<draw:image xlink:href="Pictures/s.svg" xlink:type="simple"/></draw:frame></text:p>',
                    parts={"Pictures/s.svg": secrets.svg.read_text()})
    for src in (png, svg):
        out = tmp_path / f"{src.stem}.pdf"
        convert_file(pool, src, out, src.name, tmp_path)
        assert secret_traces(out), f"{src.name}: the embedded secret was not found"
    assert file_url(secrets.png).startswith("file:///")


def _inline_embedded() -> str:
    from tests.hostile_set import _inline_picture

    return _inline_picture('<a:blip r:embed="rIdE"/>')


# -- the push chain ------------------------------------------------------------------------------------------------


@pytest.fixture
def gcs(logs: Path) -> Iterator[emulators.Proc]:
    proc = emulators.start_fake_gcs(logs)
    for name in (IN_BUCKET, DIRECT_BUCKET, OUT_BUCKET):
        emulators.create_bucket(proc.url, name)
    yield proc
    emulators.stop(proc)


@pytest.mark.slow
@pytest.mark.emulators
def test_vectors_through_the_push_chain(gcs: emulators.Proc, logs: Path, secrets: Secrets, tmp_path: Path) -> None:
    """fake-gcs-server -> push envelope -> `worker serve` -> LibreOffice -> PDF or failure record in the bucket."""
    with CountingServer() as canary:
        files = {name: BY_NAME[name].build(tmp_path / name, canary.url(), secrets) for name in CHAIN}
        worker = stress_worker(logs, tmp_path / "work", gcs.url, CONVERSION_TIMEOUT_S="20")
        worker.start()
        try:
            uploads = upload_all(worker, DIRECT_BUCKET, [(f"set/{n}", p) for n, p in files.items()], threads=4)
            with ThreadPoolExecutor(2) as ex:
                statuses = list(ex.map(lambda u: requests.post(
                    f"{worker.url}/", json=envelope(worker, DIRECT_BUCKET, u.name, u.generation, f"s-{u.name}"),
                    timeout=300).status_code, uploads))
            wait_all_ended(worker, uploads, "set/", 120)
            results = ended(worker, uploads, "set/")
            settle(canary)
            requests_seen = list(canary.requests)
        finally:
            orphans = worker.stop()
    assert statuses == [204] * len(uploads)
    assert orphans == []
    leaks: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for up in uploads:
        [blob] = results[up.name]
        local = tmp_path / ("out-" + Path(blob.name).name)
        blob.download_to_filename(str(local))
        name = up.name.split("/", 1)[1]
        if blob.name.endswith(".pdf"):
            leaks[name] = secret_traces(local)
        else:
            record = json.loads(local.read_text())
            leaks[name] = [f"marker in the failure record {record}"] if MARKER in local.read_text() else []
            reasons[name] = record["reason"]
    assert {n: r for n, r in reasons.items() if BY_NAME[n].expect == "hostile"} == {
        n: "hostile" for n in CHAIN if BY_NAME[n].expect == "hostile"}
    assert "conversion_timeout" not in reasons.values(), reasons
    # One assertion, so a failure lists every request and every leak at once.
    found = (sorted(set(requests_seen)), {name: traces for name, traces in leaks.items() if traces})
    assert found == ([], {}), json.dumps(found)
