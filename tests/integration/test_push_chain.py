"""The whole chain, nothing mocked: fake-gcs-server -> Pub/Sub emulator push -> `worker serve` -> LibreOffice -> GCS.

One worker subprocess (pool of 2) serves the whole module, so the office starts once. A second, dedicated worker
with a tiny conversion timeout proves that poison documents end as one failure record at their second office failure.
Every process started here is stopped by its PID (SIGTERM, then SIGKILL) and no office process of ours may survive.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.corpora import CORPUS, need_corpus
from tests.harness.chain import (
    ACKED,
    DIRECT_BUCKET,
    IN_BUCKET,
    OUT_BUCKET,
    chain_worker,
    envelope,
    start_emulator_chain,
    subscribe,
    upload,
)
from tests.harness.waiting import wait_for
from tests.harness.worker_process import WorkerProcess
from tests.integration.conftest_office import DATA, pdf_text
from worker import emulators
from worker.storage import ObjectInfo

pytestmark = [pytest.mark.emulators, pytest.mark.office]

READY_TIMEOUT_S = 120.0
RESULT_TIMEOUT_S = 120.0


# -- the chain and its worker -------------------------------------------------------------------------------------


def stop_worker(worker: WorkerProcess) -> None:
    """SIGTERM (drain), SIGKILL after the grace; then nothing of ours may be left: no worker, no office process."""
    leftovers = worker.stop(grace_s=20.0)  # never leaves them running, but the run still fails
    with pytest.raises(ProcessLookupError):
        os.killpg(worker.proc.pid, 0)
    assert leftovers == [], f"office processes survived the worker: {leftovers}"


def start_chain(
    pubsub: emulators.Proc, log_dir: Path, work_dir: Path, **worker_env: str
) -> tuple[WorkerProcess, emulators.Proc]:
    """Topic + push subscription -> worker, fake-gcs publishing finalize events of IN_BUCKET/incoming/."""
    gcs, topic = start_emulator_chain(pubsub, log_dir)
    try:
        worker = chain_worker(log_dir, work_dir, gcs.url, **worker_env).start(READY_TIMEOUT_S)
    except BaseException:
        emulators.stop(gcs)
        raise
    # Events for a topic without a subscription are dropped, but nothing is uploaded before this point.
    subscribe(pubsub, topic, worker)
    return worker, gcs


@pytest.fixture(scope="module")
def pubsub(request: pytest.FixtureRequest) -> emulators.Proc:
    """The session's emulator, but a missing jar or java FAILS here: this module must not be skipped quietly."""
    emulators.pubsub_jar()
    proc: emulators.Proc = request.getfixturevalue("pubsub_emulator")
    return proc


@pytest.fixture(scope="module")
def chain(pubsub: emulators.Proc, emulator_log_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    base = tmp_path_factory.mktemp("chain")
    worker, gcs = start_chain(pubsub, emulator_log_dir, base / "work", SECRETS_DIR=str(mount_secrets(base)))
    try:
        yield worker
    finally:
        try:
            stop_worker(worker)
        finally:
            emulators.stop(gcs)


CORPUS_PASSWORD = "Password1234_"  # MANIFEST.tsv: msoffcrypto-tool/example_password.docx


def mount_secrets(base: Path) -> Path:
    """A real secrets directory laid out as Cloud Run mounts it: one directory per secret, the value inside."""
    secrets = base / "secrets"
    for name, value in {"doc-pw": CORPUS_PASSWORD + "\n", "doc-pw-wrong": "not the password"}.items():
        (secrets / name).mkdir(parents=True)
        (secrets / name / "value").write_text(value)
    return secrets


# -- helpers ------------------------------------------------------------------------------------------------------


def wait_output(worker: WorkerProcess, name: str, timeout_s: float = RESULT_TIMEOUT_S) -> ObjectInfo:
    return wait_for(f"gs://{OUT_BUCKET}/{name}", lambda: worker.store.get_output(OUT_BUCKET, name), timeout_s,
                    every_s=0.1, proc=worker.proc)


def fetch(worker: WorkerProcess, name: str, dest: Path) -> Path:
    info = worker.store.get_output(OUT_BUCKET, name)
    assert info is not None, name
    worker.store.download(OUT_BUCKET, name, info.generation, dest, max_bytes=1 << 30)
    return dest


def post(worker: WorkerProcess, body: dict[str, Any]) -> int:
    return worker.post(body).status_code


def final_answers(worker: WorkerProcess, name: str, bucket: str = IN_BUCKET) -> list[dict[str, Any]]:
    """The deliveries for an object once it was acked (2xx) by the worker."""
    lines: list[dict[str, Any]] = wait_for(
        f"an acked delivery of {name}",
        lambda: (lines := worker.deliveries(name, bucket)) and lines[-1]["status"] in ACKED and lines,
        RESULT_TIMEOUT_S, every_s=0.1, proc=worker.proc,
    )
    return lines


# -- 1. the full chain -------------------------------------------------------------------------------------------


def test_upload_becomes_pdf_through_pubsub_push(chain: WorkerProcess, tmp_path: Path) -> None:
    uploaded = upload(chain, IN_BUCKET, "incoming/sample.docx", DATA / "sample.docx")
    pdf = wait_output(chain, "incoming/sample.pdf")

    assert pdf.content_type == "application/pdf"
    assert pdf.metadata["source-generation"] == str(uploaded.generation)
    assert pdf.metadata["source-bucket"] == IN_BUCKET
    assert pdf.metadata["source-object"] == "incoming/sample.docx"
    pages, text = pdf_text(fetch(chain, "incoming/sample.pdf", tmp_path / "out.pdf"))
    assert pages == 1
    assert "docworker sample docx" in text
    [line] = final_answers(chain, "incoming/sample.docx")
    assert (line["status"], line["outcome"], line["generation"]) == (204, "converted", str(uploaded.generation))
    assert line["message_id"]  # the emulator's message id made it through
    assert pdf.metadata["source-message-id"] == line["message_id"]


# -- 2. redelivery, duplicates, overwrite, stale -------------------------------------------------------------------


def test_same_message_three_times_makes_one_pdf(chain: WorkerProcess, tmp_path: Path) -> None:
    name = "dup/report.docx"
    first = upload(chain, DIRECT_BUCKET, name, DATA / "sample.docx")
    body = envelope(chain, DIRECT_BUCKET, name, first.generation, "dup-1")

    with ThreadPoolExecutor(2) as ex:  # two deliveries racing each other
        statuses = list(ex.map(lambda _: post(chain, body), range(2)))
    pdf = chain.store.get_output(OUT_BUCKET, "dup/report.pdf")
    assert pdf is not None
    statuses.append(post(chain, body))  # and a late redelivery
    assert statuses == [204, 204, 204]
    again = chain.store.get_output(OUT_BUCKET, "dup/report.pdf")
    assert again is not None and again.generation == pdf.generation  # written once, never rewritten
    outcomes = Counter(line["outcome"] for line in chain.deliveries(name, DIRECT_BUCKET))
    assert outcomes == {"converted": 1, "duplicate": 2}
    assert pdf.metadata["source-generation"] == str(first.generation)

    # An overwrite is a new generation: a new conversion replaces the PDF.
    second = upload(chain, DIRECT_BUCKET, name, DATA / "sample-10pages.docx", overwrite=True)
    assert second.generation != first.generation
    assert post(chain, envelope(chain, DIRECT_BUCKET, name, second.generation, "dup-2")) == 204
    newer = chain.store.get_output(OUT_BUCKET, "dup/report.pdf")
    assert newer is not None and newer.generation != pdf.generation
    assert newer.metadata["source-generation"] == str(second.generation)
    assert pdf_text(fetch(chain, "dup/report.pdf", tmp_path / "newer.pdf"))[0] == 10
    last = chain.deliveries(name, DIRECT_BUCKET)[-1]
    assert (last["outcome"], last["reason"]) == ("converted", "overwrite")

    # A late delivery of the old generation is acked and changes nothing.
    assert post(chain, body) == 204
    stale = chain.deliveries(name, DIRECT_BUCKET)[-1]
    assert (stale["status"], stale["outcome"], stale["reason"]) == (204, "ignored", "stale")
    after = chain.store.get_output(OUT_BUCKET, "dup/report.pdf")
    assert after is not None and after.generation == newer.generation
    assert after.metadata["source-generation"] == str(second.generation)
    _, samples = chain.scrape()
    duplicates = {("worker_jobs_total", frozenset({("outcome", "duplicate"), ("reason", reason)}))
                  for reason in ("concurrent", "same_generation")}
    assert duplicates & set(samples)


# -- 3. a burst through the full chain ------------------------------------------------------------------------------


def test_twenty_uploads_at_once_all_become_pdfs_once(chain: WorkerProcess) -> None:
    names = [f"incoming/burst/doc-{i:02d}.docx" for i in range(20)]
    sample = (DATA / "sample.docx").read_bytes()
    with ThreadPoolExecutor(20) as ex:
        uploaded = dict(zip(names, ex.map(lambda n: upload(chain, IN_BUCKET, n, sample), names), strict=True))

    for name in names:
        pdf = wait_output(chain, name[: -len(".docx")] + ".pdf")
        assert pdf.metadata["source-generation"] == str(uploaded[name].generation)
    for name in names:
        lines = final_answers(chain, name)
        outcomes = Counter(line["outcome"] for line in lines)
        assert outcomes["converted"] == 1, (name, lines)  # created once
        assert outcomes["duplicate"] == 0, (name, lines)
        statuses = {line["status"] for line in lines}
        assert statuses <= {204, 429, 503}, (name, statuses)  # no 5xx except backpressure by design
        assert all(line["reason"] in ("ok", "queue_full", "office_unavailable") for line in lines), lines


# -- 4. hostile documents, an office crash, poison documents ---------------------------------------------------------


def test_encrypted_and_corrupt_documents_end_as_failure_records_delivered_once(
    chain: WorkerProcess, tmp_path: Path
) -> None:
    # MANIFEST: password-encrypted; encrypted OOXML in CFB
    encrypted = need_corpus(CORPUS) / "oletools" / "encrypted.docx"
    # The corpus' "corrupt" files (python-pptx/missing_rels_item.pptx, xlrd/corrupted_error.xls) still convert:
    # LibreOffice repairs them. A corpus docx cut in half is corrupt beyond repair (its zip directory is gone).
    corrupt = (CORPUS / "Open-XML-SDK" / "5Errors.docx").read_bytes()[:6000]
    # Encrypted OOXML opens with its password: without a docworker-password-secret it is password_required.
    cases: dict[str, tuple[Path | bytes, str]] = {"incoming/hostile/encrypted.docx": (encrypted, "password_required"),
             "incoming/hostile/truncated.docx": (corrupt, "corrupt")}
    uploaded = {name: upload(chain, IN_BUCKET, name, src) for name, (src, _) in cases.items()}

    for name, (_, reason) in cases.items():
        record_name = name + ".error.json"
        wait_output(chain, record_name)
        record = json.loads(fetch(chain, record_name, tmp_path / "r.json").read_text())
        [line] = final_answers(chain, name)
        assert record["reason"] == reason
        assert record["generation"] == str(uploaded[name].generation)
        assert record["message_id"] == line["message_id"] and record["message_id"]
        assert record["source"] == f"gs://{IN_BUCKET}/{name}"
        assert (line["status"], line["outcome"], line["reason"]) == (204, "failed", reason)
        assert chain.store.get_output(OUT_BUCKET, name[: -len(".docx")] + ".pdf") is None
    time.sleep(3)  # the emulator redelivers a nack after about 1 s: give it three chances to show a loop
    for name in cases:
        assert len(chain.deliveries(name, IN_BUCKET)) == 1, chain.deliveries(name, IN_BUCKET)


def test_office_killed_mid_conversion_answers_503_and_redelivery_succeeds(chain: WorkerProcess, tmp_path: Path) -> None:
    name = "incoming/crash/hundred.docx"
    upload(chain, IN_BUCKET, name, DATA / "sample-100pages.docx")

    def busy() -> bool:
        try:
            ready = requests.get(f"{chain.url}/ready", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return any(inst["state"] == "busy" for inst in ready["instances"])

    wait_for("a busy office", busy, 60, every_s=0.01, proc=chain.proc)
    killed = chain.office_pids()
    assert killed, "no soffice.bin under the worker's WORK_DIR"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    pdf = wait_output(chain, "incoming/crash/hundred.pdf")
    assert pdf_text(fetch(chain, pdf.name, tmp_path / "h.pdf"))[0] == 100
    lines = final_answers(chain, name)
    # a SIGKILL the worker did not send: retried, and not counted against the document as a crash would be
    assert (lines[0]["status"], lines[0]["reason"]) == (503, "office_killed"), lines
    assert (lines[-1]["status"], lines[-1]["outcome"]) == (204, "converted")
    assert Counter(line["outcome"] for line in lines)["converted"] == 1
    assert not set(killed) & set(chain.office_pids())  # replaced by new processes


def test_poison_documents_end_as_one_failure_record_at_their_second_office_failure(
    pubsub: emulators.Proc, emulator_log_dir: Path, tmp_path: Path
) -> None:
    """A dedicated worker (2 offices, MAX_DELIVERY_ATTEMPTS=5) whose timeout no poison document can meet: a 500-page
    document (~2 s) and the memory-bomb .fods (never finishes) each take exactly two office attempts, not five."""
    from tests.integration.conftest_office import make_long_docx
    from tests.stress.poison import make_memory_bomb_fods

    poison = {"incoming/poison/long.docx": make_long_docx(tmp_path / "long.docx", 500),
              "incoming/poison/bomb.fods": make_memory_bomb_fods(tmp_path / "bomb.fods")}
    worker, gcs = start_chain(pubsub, emulator_log_dir, tmp_path / "work", POOL_SIZE="2",
                              CONVERSION_TIMEOUT_S="0.3", QUEUE_WAIT_S="60", MAX_DELIVERY_ATTEMPTS="5")
    try:
        uploaded = {name: upload(worker, IN_BUCKET, name, src) for name, src in poison.items()}
        for name in poison:
            wait_output(worker, name + ".error.json")
        time.sleep(3)  # would-be redeliveries after the record
        office_faults = ("conversion_timeout", "office_crashed", "memory_exhausted")
        for name, info in uploaded.items():
            record = json.loads(fetch(worker, name + ".error.json", tmp_path / "r.json").read_text())
            assert record["reason"] in office_faults, record
            assert record["generation"] == str(info.generation)
            lines = worker.deliveries(name, IN_BUCKET)
            attempts = [line for line in lines if line["reason"] in office_faults]
            assert [line["status"] for line in attempts] == [503, 204], lines  # retried once, then final
            assert lines[-1]["status"] == 204 and lines[-1]["outcome"] == "failed"
            assert all(line["status"] in (204, 503) for line in lines), lines
            stem = name.rsplit(".", 1)[0]
            assert worker.store.get_output(OUT_BUCKET, stem + ".pdf") is None
    finally:
        try:
            stop_worker(worker)
        finally:
            emulators.stop(gcs)


# -- 6. hostile object names ------------------------------------------------------------------------------------------


def _files_under(root: Path, skip: Path | None = None) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        if skip is not None and Path(dirpath).is_relative_to(skip):
            dirnames[:] = []
            continue
        found.update(os.path.join(dirpath, f) for f in filenames + dirnames)
    return found


def test_odd_object_names_land_beside_their_source(chain: WorkerProcess, tmp_path: Path) -> None:
    stuffing = "x" * (900 - len("incoming/names/long-.docx"))
    names = {
        "incoming/names/with space & plus+.docx": "incoming/names/with space & plus+.pdf",
        "incoming/names/ünïcødé-文档 ✓.docx": "incoming/names/ünïcødé-文档 ✓.pdf",
        "incoming/names/../../dotdot-escape.docx": "incoming/names/../../dotdot-escape.pdf",
        f"incoming/names/long-{stuffing}.docx": f"incoming/names/long-{stuffing}.pdf",
        "incoming/names/SHOUTING.DOCX": "incoming/names/SHOUTING.pdf",
    }
    assert len(next(n for n in names if "long-" in n).encode()) == 900
    direct = {"../../../tmp/dotdot-direct.docx": "../../../tmp/dotdot-direct.pdf",
              "/abs/dotdot-absolute.docx": "/abs/dotdot-absolute.pdf"}
    markers = ("dotdot-", "ünïcødé", "with space", "SHOUTING", "xxxxxxxxxxxxxxxx")
    around = chain.work_dir.parent
    before_around = _files_under(around, skip=chain.work_dir / "office")
    before_tmp = set(os.listdir("/tmp"))

    for name in names:
        upload(chain, IN_BUCKET, name, DATA / "sample.docx")
    for i, name in enumerate(direct):
        info = upload(chain, DIRECT_BUCKET, name, DATA / "sample.docx")
        assert post(chain, envelope(chain, DIRECT_BUCKET, name, info.generation, f"names-{i}")) == 204

    for src, pdf_name in {**names, **direct}.items():
        pdf = wait_output(chain, pdf_name)
        assert pdf.metadata["source-object"] == src
        assert "docworker sample docx" in pdf_text(fetch(chain, pdf_name, tmp_path / "n.pdf"))[1]
    for name in names:
        assert [line["status"] for line in final_answers(chain, name)] == [204]

    # Nothing named like an object appeared anywhere: the job uses fixed names in its own temp dir.
    new_around = _files_under(around, skip=chain.work_dir / "office") - before_around
    assert new_around == set(), new_around
    assert list((chain.work_dir / "jobs").iterdir()) == []  # every job's temp dir was removed
    new_tmp = set(os.listdir("/tmp")) - before_tmp
    assert not [n for n in new_tmp if any(m in n for m in markers)], new_tmp
    for root in ("/tmp", "/abs", str(Path(chain.work_dir).anchor)):
        if os.path.isdir(root):
            assert not [n for n in os.listdir(root) if any(m in n for m in markers)], root
    office_files = _files_under(chain.work_dir / "office")
    assert not [f for f in office_files if any(m in f for m in markers)]


# -- 7. per-document options on the upload (issue 14) ----------------------------------------------------------------


def test_pdfa_option_on_the_upload_makes_a_pdfa_2b_pdf_and_a_reupload_with_other_options_converts_again(
    chain: WorkerProcess, tmp_path: Path
) -> None:
    import pikepdf

    from worker.job import META_OPTIONS
    from worker.options import PdfOptions

    name, pdf_name = "incoming/options/archive.docx", "incoming/options/archive.pdf"
    first = upload(chain, IN_BUCKET, name, DATA / "sample.docx", metadata={"docworker-pdfa": "2b", "owner": "alice"})
    pdf = wait_output(chain, pdf_name)
    assert pdf.metadata["docworker-pdfa"] == "2b" and "owner" not in pdf.metadata  # the options applied, only
    assert pdf.metadata[META_OPTIONS] == PdfOptions(pdfa="2b").digest()
    with pikepdf.open(fetch(chain, pdf_name, tmp_path / "a.pdf")) as doc:
        meta = doc.open_metadata()
        assert (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) == ("2", "B")
        assert len(doc.Root.OutputIntents) >= 1
    [line] = final_answers(chain, name)
    assert (line["status"], line["outcome"], line["profile"]) == (204, "converted", "pdfa-2b")

    # Same object, new generation, other options: converted again, the PDF replaced and saying so.
    second = upload(chain, IN_BUCKET, name, DATA / "sample.docx", overwrite=True,
                    metadata={"docworker-watermark": "DRAFT COPY"})
    assert second.generation != first.generation
    newer = wait_for("the re-upload's PDF", lambda: (info := chain.store.get_output(OUT_BUCKET, pdf_name)) and
                     info.metadata["source-generation"] == str(second.generation) and info,
                     RESULT_TIMEOUT_S, every_s=0.1, proc=chain.proc)
    assert newer.metadata["docworker-watermark"] == "DRAFT COPY" and "docworker-pdfa" not in newer.metadata
    path = fetch(chain, pdf_name, tmp_path / "b.pdf")
    assert "DRAFT COPY" in pdf_text(path)[1]
    with pikepdf.open(path) as doc:
        assert doc.open_metadata().get("pdfaid:part") is None
    _, samples = chain.scrape()
    for profile in ("pdfa-2b", "custom"):
        assert samples[("worker_conversions_total", frozenset({("profile", profile)}))] >= 1


def test_bad_options_and_encrypted_inputs_end_as_one_record_each_and_the_right_secret_converts(
    chain: WorkerProcess, tmp_path: Path
) -> None:
    locked = need_corpus(CORPUS) / "msoffcrypto-tool" / "example_password.docx"
    failing: dict[str, tuple[Path, dict[str, str], str]] = {
        "incoming/options/bad.docx": (DATA / "sample.docx", {"docworker-pdfa": "4a", "Docworker-Colour": "red"},
                                      "bad_option"),
        "incoming/options/locked-wrong.docx": (locked, {"docworker-password-secret": "doc-pw-wrong"},
                                               "password_wrong"),
        "incoming/options/locked-none.docx": (locked, {}, "password_required"),
        "incoming/options/unmounted.docx": (DATA / "sample.docx", {"docworker-password-secret": "nobody-mounted"},
                                            "bad_option"),
    }
    uploaded = {name: upload(chain, IN_BUCKET, name, src, metadata=meta) for name, (src, meta, _) in failing.items()}
    opened = upload(chain, IN_BUCKET, "incoming/options/locked-right.docx", locked,
                    metadata={"docworker-password-secret": "doc-pw"})

    pdf = wait_output(chain, "incoming/options/locked-right.pdf")
    assert pdf.metadata["source-generation"] == str(opened.generation)
    assert pdf.metadata["docworker-password-secret"] == "doc-pw"  # the secret's name, never its value
    assert CORPUS_PASSWORD not in json.dumps(pdf.metadata)
    assert pdf_text(fetch(chain, pdf.name, tmp_path / "open.pdf"))[0] >= 1
    for name, (_, _, reason) in failing.items():
        wait_output(chain, name + ".error.json")
        record = json.loads(fetch(chain, name + ".error.json", tmp_path / "r.json").read_text())
        [line] = final_answers(chain, name)
        assert (line["status"], line["outcome"], line["reason"]) == (204, "failed", reason), line
        assert record["reason"] == reason and record["generation"] == str(uploaded[name].generation)
        assert chain.store.get_output(OUT_BUCKET, name[: -len(".docx")] + ".pdf") is None
        assert CORPUS_PASSWORD not in json.dumps(record) and "not the password" not in json.dumps(record)
    bad = json.loads(fetch(chain, "incoming/options/bad.docx.error.json", tmp_path / "bad.json").read_text())
    assert set(bad["problems"]) == {"docworker-pdfa", "Docworker-Colour"}
    assert "1b, 2b or 3b" in bad["problems"]["docworker-pdfa"]
    time.sleep(3)  # the emulator redelivers a nack after about 1 s: give it three chances to show a loop
    for name in failing:
        assert len(chain.deliveries(name, IN_BUCKET)) == 1, chain.deliveries(name, IN_BUCKET)
