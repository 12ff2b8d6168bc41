"""Scenarios 4 and 5: hostile files through `worker serve` + real LibreOffice, hostile requests in AUTH_MODE=oidc.

Envelopes are POSTed straight to the worker (the push path is the same code the emulator reaches).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.harness.chain import DIRECT_BUCKET, IN_BUCKET, OUT_BUCKET, envelope
from tests.harness.worker_process import WorkerProcess
from tests.hostile_docs import make_dde_docx, make_linked_image_odt, make_macro_onload_odt, make_many_links_docx
from tests.integration.conftest_office import DATA, PNG_1X1, CountingServer
from tests.oidc_fixtures import id_token_claims, make_signing_key, serve_certs
from tests.stress.harness import Report, Sampler, Upload, ceiling_mb, stress_worker, tally, upload_all
from worker import emulators

pytestmark = [pytest.mark.emulators, pytest.mark.office]


@pytest.fixture
def gcs(logs: Path) -> Iterator[emulators.Proc]:
    proc = emulators.start_fake_gcs(logs)
    for name in (IN_BUCKET, DIRECT_BUCKET, OUT_BUCKET, "someone-elses-bucket"):
        emulators.create_bucket(proc.url, name)
    yield proc
    emulators.stop(proc)


def _zip_bomb(path: Path) -> Path:
    """A .docx-shaped zip whose document part inflates 1 GiB of zeros from about 1 MB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            chunk = b"\0" * 2**24
            for _ in range(64):
                f.write(chunk)
    return path


def _entity_bomb(path: Path) -> Path:
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = (f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY l0 "lol">{laughs}]>'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           "<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>")
    src = zipfile.ZipFile(DATA / "sample.docx")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for item in src.infolist():
            z.writestr(item, doc if item.filename == "word/document.xml" else src.read(item))
    return path


def _files_under(root: Path, skip: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        if Path(dirpath).is_relative_to(skip):
            dirnames[:] = []
            continue
        found.update(os.path.join(dirpath, f) for f in filenames + dirnames)
    return found


# -- 4. hostile files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [pytest.param(1, id="ci"), pytest.param(5, id="full", marks=pytest.mark.slow)])
def test_hostile_files(copies: int, gcs: emulators.Proc, logs: Path, tmp_path: Path, record: list[Report]) -> None:
    """Each file gets a clear refusal or a safe PDF; the canary gets no request; nothing lands outside the job dir."""
    marker = tmp_path / "macro-ran.txt"
    with CountingServer() as canary:
        files: dict[str, Path] = {
            "zip-bomb.docx": _zip_bomb(tmp_path / "zip-bomb.docx"),
            "entity-bomb.docx": _entity_bomb(tmp_path / "entity-bomb.docx"),
            "png-renamed.docx": tmp_path / "png.docx",
            "too-large.docx": tmp_path / "large.docx",
        }
        files["png-renamed.docx"].write_bytes(PNG_1X1)
        with files["too-large.docx"].open("wb") as f:  # fake-gcs keeps objects in memory: 150 MB per copy
            f.truncate(150 * 2**20)
        once: dict[str, Path] = {}
        if copies > 1:  # the full size adds the 1 GB sparse upload, once (1 GiB of fake-gcs memory)
            once["huge-sparse.docx"] = tmp_path / "huge.docx"
            with once["huge-sparse.docx"].open("wb") as f:
                f.truncate(2**30)
        make_many_links_docx(links := tmp_path / "links.docx", canary.url("/links"), 300)
        make_linked_image_odt(linked := tmp_path / "linked.odt", canary.url("/odt"))
        make_macro_onload_odt(macro := tmp_path / "macro.odt", marker)
        make_dde_docx(dde := tmp_path / "dde.docx")
        files |= {"external-links.docx": links, "linked-image.odt": linked, "macro-onload.odt": macro,
                  "dde.docx": dde}
        expected = {"zip-bomb.docx": "zip_bomb", "entity-bomb.docx": "hostile",
                    "png-renamed.docx": "unsupported_type", "too-large.docx": "too_large"}
        expected |= {name: "too_large" for name in once}

        worker = stress_worker(logs, tmp_path / "work", gcs.url, CONVERSION_TIMEOUT_S="60")
        worker.start()
        around = worker.work_dir.parent
        before = _files_under(around, skip=worker.work_dir / "office")
        before_tmp = set(os.listdir("/tmp"))
        items: list[tuple[str, Path | bytes]] = [(f"hostile/{c}/{name}", path) for c in range(copies)
                                                 for name, path in files.items()]
        items += [(f"hostile/0/{name}", path) for name, path in once.items()]
        report = Report("hostile-files", f"{len(files)} kinds x {copies}" + (" + 1 GiB sparse" if once else ""),
                        len(items), ceiling_mb=ceiling_mb(2, 1024))
        record.append(report)
        try:
            uploads = upload_all(worker, DIRECT_BUCKET, items, threads=4)
            t0 = time.monotonic()
            with Sampler(worker) as sampler, ThreadPoolExecutor(4) as ex:
                statuses = list(ex.map(lambda u: _post(worker, envelope(worker, DIRECT_BUCKET, u.name, u.generation,
                                                                         f"h-{u.name}")), uploads))
                report.wall_s = round(time.monotonic() - t0, 1)
            done = tally(worker, uploads, "hostile/", report, sampler)
            answers = {a["object"]: a for a in worker.answers() if a.get("object", "").startswith("hostile/")}
            outcome = {u.name.split("/", 2)[2]: (answers[u.name]["outcome"], answers[u.name]["reason"])
                       for u in uploads}
            too_large_stages = [answers[u.name].get("durations") for u in uploads
                                if u.name.endswith(("too-large.docx", "huge-sparse.docx"))]
            report.extra = {"outcomes": outcome, "canary_requests": len(canary.requests),
                            "too_large_durations": too_large_stages}
        finally:
            report.orphans_at_end = len(worker.stop())
        new_files = _files_under(around, skip=worker.work_dir / "office") - before
        new_tmp = set(os.listdir("/tmp")) - before_tmp

    assert all(s == 204 for s in statuses), statuses
    assert report.lost == 0 and report.both == 0 and report.corrupt == 0, report.text()
    assert canary.requests == [], canary.requests
    assert not marker.exists(), "the on-load macro ran"
    for name, reason in expected.items():
        assert outcome[name] == ("failed", reason), (name, outcome[name])
    assert len(too_large_stages) == copies + len(once)
    for name in set(files) - set(expected):
        assert outcome[name][0] in ("converted", "failed"), (name, outcome[name])
    for durations in too_large_stages:  # refused from the object's metadata: the download stage never ran
        assert "download" not in (durations or {}), durations
    # Only the worker's own log and the (emptied) jobs dir are new; nothing appeared in /tmp either.
    assert {f for f in new_files if not f.startswith(str(worker.work_dir / "jobs"))
            and not f.endswith("office.log")} <= {str(worker.work_dir), str(worker.work_dir / "jobs")}, new_files
    assert list((worker.work_dir / "jobs").iterdir()) == []
    # OSL_PIPE_* are LibreOffice's single-instance sockets: soffice.bin puts them in /tmp whatever TMPDIR says,
    # and every office on the machine (other pools, other test runs) adds its own: reported, not a file of a job.
    assert not [n for n in new_tmp if not n.startswith(("pytest-", "tmp", "OSL_PIPE_"))], new_tmp
    assert report.orphans_at_end == 0
    assert all(done.values())


def _post(worker: WorkerProcess, body: dict[str, object], headers: dict[str, str] | None = None) -> int:
    return worker.post(body, headers).status_code


# -- 5. hostile requests in oidc mode -------------------------------------------------------------------------------

AUD = "https://docworker-stress.a.run.app/"
SA = "pusher@stress.iam.gserviceaccount.com"


@pytest.mark.parametrize("rounds", [pytest.param(3, id="ci"), pytest.param(30, id="full", marks=pytest.mark.slow)])
def test_hostile_requests_oidc(rounds: int, gcs: emulators.Proc, logs: Path, tmp_path: Path,
                               record: list[Report]) -> None:
    """Forged, expired, wrong-audience tokens; oversized and deeply nested bodies; a foreign bucket. None is acked
    as a conversion, none crashes the worker; a good request in between still converts."""
    key, other = make_signing_key("k1"), make_signing_key("k1")  # `other` forges with the same kid
    with serve_certs({key.kid: key.cert_pem}) as certs:
        worker = stress_worker(logs, tmp_path / "work", gcs.url, AUTH_MODE="oidc", AUTH_AUDIENCE=AUD,
                               PUSH_SERVICE_ACCOUNT=SA, AUTH_CERTS_URL=certs.url, INPUT_BUCKETS=DIRECT_BUCKET)
        worker.start()
        report = Report("hostile-requests", f"{rounds} rounds x 9 kinds (oidc)", 0, ceiling_mb=ceiling_mb(2, 1024))
        record.append(report)
        try:
            good = id_token_claims(audience=AUD, email=SA)
            past = time.time() - 7200
            tokens = {
                "forged": other.sign(good),
                "expired": key.sign(id_token_claims(audience=AUD, email=SA, now=past, lifetime_s=3600)),
                "wrong_audience": key.sign(id_token_claims(audience="https://elsewhere.example/", email=SA)),
                "wrong_email": key.sign(id_token_claims(audience=AUD, email="intruder@evil.example")),
                "none": "",
            }
            counts: dict[str, dict[str, int]] = {}
            uploads: list[Upload] = []
            t0 = time.monotonic()

            def hit(kind: str, status: int) -> None:
                counts.setdefault(kind, {}).setdefault(str(status), 0)
                counts[kind][str(status)] += 1
                report.sent += 1
                assert requests.get(f"{worker.url}/health", timeout=5).status_code == 200, kind

            with Sampler(worker) as sampler:
                for r in range(rounds):
                    [up] = upload_all(worker, DIRECT_BUCKET, [(f"req/{r}/doc.docx", DATA / "sample.docx")])
                    body = envelope(worker, DIRECT_BUCKET, up.name, up.generation, f"m-{r}")
                    for kind, token in tokens.items():
                        headers = {"Authorization": f"Bearer {token}"} if token else {}
                        hit(kind, _post(worker, body, headers))
                    auth = {"Authorization": f"Bearer {key.sign(good)}"}
                    big = requests.post(f"{worker.url}/", data=b"{" + b" " * (17 * 2**20) + b"}",
                                        headers=auth | {"Content-Type": "application/json"}, timeout=60)
                    hit("oversized_body", big.status_code)
                    deep = b'{"message":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
                    hit("deeply_nested", requests.post(f"{worker.url}/", data=deep, timeout=60,
                                                       headers=auth | {"Content-Type": "application/json"}).status_code)
                    [foreign] = upload_all(worker, "someone-elses-bucket", [(f"req/{r}/x.docx", DATA / "sample.docx")])
                    hit("foreign_bucket", _post(worker, envelope(worker, "someone-elses-bucket", foreign.name,
                                                                  foreign.generation, f"f-{r}"), auth))
                    hit("good", _post(worker, body, auth))  # the same upload, now properly signed
                    uploads.append(up)
                report.wall_s = round(time.monotonic() - t0, 1)
            tally(worker, uploads, "req/", report, sampler)
            foreign_outputs = [b.name for b in worker.client.list_blobs(OUT_BUCKET, prefix="req/")
                               if "/x." in b.name]
            converted = [a for a in worker.answers() if a.get("outcome") == "converted"]
            report.extra = {"answers_by_kind": counts, "certs_fetches": certs.request_count,
                            "worker_exit_code": worker.proc.popen.poll()}
        finally:
            report.orphans_at_end = len(worker.stop())

    for kind in ("forged", "expired", "wrong_audience", "wrong_email", "none"):
        assert set(counts[kind]) <= {"401", "403"}, (kind, counts[kind])
    assert set(counts["oversized_body"]) == {"413"}, counts
    assert set(counts["deeply_nested"]) == {"400"}, counts
    assert set(counts["foreign_bucket"]) == {"204"}, counts  # acked as ignored (bucket_not_allowed), not converted
    assert foreign_outputs == []
    assert set(counts["good"]) == {"204"}
    assert len(converted) == rounds and {a["object"] for a in converted} == {u.name for u in uploads}
    assert report.lost == 0 and report.duplicates == 0 and report.extra["worker_exit_code"] is None
    assert json.dumps(report.extra)  # serialisable for the results file
