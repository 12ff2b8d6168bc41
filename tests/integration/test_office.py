"""The warm conversion core against real LibreOffice: formats, crashes, timeouts, hostile documents, supervision."""

from __future__ import annotations

import io
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.processes import launcher_pids_under, office_pids_under
from tests.harness.waiting import wait_for
from tests.hostile_docs import (
    make_linked_image_docx,
    make_linked_image_odt,
    make_macro_onload_odt,
    make_many_links_docx,
    paragraph,
    write_docx,
)
from tests.integration.conftest_office import (
    BAD_INPUT_REASONS,
    DATA,
    SAMPLE_EXTS,
    CountingServer,
    initialised_template,
    make_bad_inputs,
    make_long_docx,
    office_settings,
    pdf_text,
    running_pool,
)
from worker.conversion import convert_file
from worker.errors import Reason, WorkerError
from worker.office import OfficePool, State
from worker.office.instance import OfficeInstance
from worker.office.procfs import group_members
from worker.office.profile import records_office_version
from worker.options import DEFAULT, PdfOptions, from_metadata

pytestmark = pytest.mark.office

SAMPLE = DATA / "sample.docx"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised profile for every pool in the session (each start then costs ~1 s, not ~2.5 s)."""
    return initialised_template(tmp_path_factory.getbasetemp() / "office-template")


@pytest.fixture(scope="module")
def shared_pool(tmp_path_factory: pytest.TempPathFactory, template: Path) -> Iterator[OfficePool]:
    """Two instances for the tests that only convert and never disturb the pool."""
    settings = office_settings(tmp_path_factory.mktemp("shared-pool"), template, pool_size=2, conversion_timeout_s=30)
    with running_pool(settings) as pool:
        yield pool
    assert office_pids_under(settings.work_dir) == []


def convert_sample(pool: OfficePool, tmp_path: Path, src: Path = SAMPLE, options: PdfOptions = DEFAULT) -> Path:
    out = tmp_path / f"{src.stem}-{time.monotonic_ns()}.pdf"
    convert_file(pool, src, out, src.name, tmp_path, options=options)
    return out


# -- 1. formats ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", SAMPLE_EXTS)
def test_sample_converts_to_pdf_with_its_text(shared_pool: OfficePool, tmp_path: Path, ext: str) -> None:
    src = DATA / f"sample.{ext}"
    out = tmp_path / "out.pdf"
    result = convert_file(shared_pool, src, out, src.name, tmp_path)
    pages, text = pdf_text(out)
    assert pages >= 1
    assert f"docworker sample {ext}" in text
    assert result.pdf_bytes == out.stat().st_size
    assert not list(tmp_path.glob("job-*")), "the job's private temp dir was left behind"


# -- 2. crash mid-conversion --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "reason", "restart"), [
    (signal.SIGSEGV, Reason.OFFICE_CRASHED, "crash"),  # the office itself crashed: may be the document (poison)
    (signal.SIGKILL, Reason.OFFICE_KILLED, "killed"),  # killed from outside (OOM killer, operator): not poison
], ids=["crash", "killed"])
def test_losing_the_office_mid_conversion_fails_retryably_and_recovers(
    tmp_path: Path, template: Path, sig: signal.Signals, reason: Reason, restart: str
) -> None:
    # sample-100pages.docx converts in ~0.2 s on this machine, so a kill at 0.3 s would land after it; 500 pages ~2 s.
    long_doc = make_long_docx(tmp_path / "long.docx", 500)
    settings = office_settings(tmp_path / "work", template, queue_wait_s=30)
    with running_pool(settings) as pool:
        (inst,) = pool.instances()
        old_pgid, old_pid = inst.pgid, inst.office_pid
        assert old_pgid is not None and old_pid is not None
        outcome: dict[str, object] = {}

        def convert_long() -> None:
            try:
                convert_sample(pool, tmp_path, long_doc)
                outcome["ok"] = True
            except WorkerError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=convert_long)
        worker.start()
        wait_for("the long conversion to start", lambda: pool.status()[0].state == State.BUSY, 10)
        time.sleep(0.3)
        assert pool.status()[0].state == State.BUSY, "the 100-page conversion must still be running at the kill"
        inst.kill_office(sig)
        worker.join(30)
        assert not worker.is_alive()

        error = outcome.get("error")
        assert isinstance(error, WorkerError), outcome
        assert error.reason is reason
        assert error.retryable

        out = convert_sample(pool, tmp_path)
        assert pdf_text(out)[0] >= 1
        assert pool.restarts[restart] == 1
        assert group_members(old_pgid) == []
        (new,) = pool.instances()
        assert new.office_pid != old_pid
        assert office_pids_under(settings.work_dir) == [new.office_pid], "an orphan soffice.bin survived"
    assert office_pids_under(settings.work_dir) == []


# -- 3. timeout ---------------------------------------------------------------------------------------------------


def test_conversion_past_timeout_is_stopped_and_the_next_succeeds(tmp_path: Path, template: Path) -> None:
    settings = office_settings(tmp_path / "work", template, conversion_timeout_s=2, queue_wait_s=30)
    noise = tmp_path / "noise.txt"
    noise.write_bytes(random.Random(1).randbytes(50 * 1024))  # LibreOffice spends 16+ s on this without a filter
    with running_pool(settings) as pool:
        (inst,) = pool.instances()
        old_pgid = inst.pgid
        assert old_pgid is not None
        t0 = time.monotonic()
        with pytest.raises(WorkerError) as caught:
            pool.convert(noise, tmp_path / "noise.pdf", None)
        elapsed = time.monotonic() - t0
        assert caught.value.reason is Reason.CONVERSION_TIMEOUT
        assert elapsed >= 2, f"the timeout fired early, after {elapsed:.2f} s"  # load only makes this longer

        out = convert_sample(pool, tmp_path)
        assert pdf_text(out)[0] >= 1
        assert pool.restarts["timeout"] == 1
        assert group_members(old_pgid) == [], "the timed-out office is still running"


def test_office_growing_past_the_ceiling_mid_conversion_is_killed_long_before_the_timeout(
    tmp_path: Path, template: Path
) -> None:
    from tests.stress.poison import make_memory_bomb_fods

    settings = office_settings(tmp_path / "work", template, conversion_timeout_s=60, max_rss_mb=400,
                               rss_kill_mb=600, queue_wait_s=30)
    bomb = make_memory_bomb_fods(tmp_path / "bomb.fods")
    with running_pool(settings) as pool:
        with pytest.raises(WorkerError) as caught:
            pool.convert(bomb, tmp_path / "bomb.pdf", None)
        # not conversion_timeout: the office was killed for its size while converting, not after the 60 s ran out
        assert caught.value.reason is Reason.MEMORY_EXHAUSTED and caught.value.retryable
        assert pool.restarts["memory"] >= 1
        out = convert_sample(pool, tmp_path)
        assert pdf_text(out)[0] >= 1


# -- 4. hostile documents -----------------------------------------------------------------------------------------


@pytest.fixture
def canary() -> Iterator[CountingServer]:
    with CountingServer() as server:
        yield server


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("linked.docx", lambda path, url: make_linked_image_docx(path, url)),
        ("linked.odt", lambda path, url: make_linked_image_odt(path, url)),
        ("many-links.docx", lambda path, url: make_many_links_docx(path, url, 20)),
    ],
)
def test_linked_images_are_never_fetched(
    shared_pool: OfficePool, canary: CountingServer, tmp_path: Path, name: str, build
) -> None:
    src = tmp_path / name
    build(src, canary.url())
    out = tmp_path / "out.pdf"
    convert_file(shared_pool, src, out, name, tmp_path)
    assert pdf_text(out)[0] >= 1
    assert canary.requests == []


def test_onload_macro_never_runs(shared_pool: OfficePool, tmp_path: Path) -> None:
    marker = tmp_path / "macro-ran.txt"
    src = tmp_path / "macro.odt"
    make_macro_onload_odt(src, marker)
    out = tmp_path / "out.pdf"
    convert_file(shared_pool, src, out, src.name, tmp_path)
    _, text = pdf_text(out)
    assert "docworker macro document" in text
    assert not marker.exists()


def test_control_cold_soffice_with_default_profile_does_fetch_the_linked_image(
    canary: CountingServer, tmp_path: Path
) -> None:
    """CONTROL: proves the SSRF test above can fail; an unhardened LibreOffice reaches our canary server."""
    src = tmp_path / "linked.docx"
    make_linked_image_docx(src, canary.url())
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), HOME=str(tmp_path))
    cmd = [
        "soffice", f"-env:UserInstallation=file://{tmp_path / 'default-profile'}", "--headless",
        "--convert-to", "pdf", "--outdir", str(tmp_path / "out"), str(src),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert (tmp_path / "out" / "linked.pdf").exists()
    assert any(r.startswith("GET /canary.png") for r in canary.requests), canary.requests
    assert office_pids_under(tmp_path) == []


# -- 5. bad inputs ------------------------------------------------------------------------------------------------


def test_bad_inputs_are_refused_before_reaching_an_office_with_distinct_reasons(
    shared_pool: OfficePool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_to_office: list[Path] = []
    real_convert = shared_pool.convert

    def recording_convert(src: Path, dst: Path, import_filter: str | None) -> object:
        sent_to_office.append(src)
        return real_convert(src, dst, import_filter)

    monkeypatch.setattr(shared_pool, "convert", recording_convert)
    reasons = {}
    for label, src in make_bad_inputs(tmp_path).items():
        with pytest.raises(WorkerError) as caught:
            convert_file(shared_pool, src, tmp_path / f"{label}.pdf", src.name, tmp_path)
        assert sent_to_office == [], f"{label} was sent to an office instead of being refused up front"
        assert not caught.value.retryable
        assert not (tmp_path / f"{label}.pdf").exists()
        reasons[label] = caught.value.reason
    assert reasons == BAD_INPUT_REASONS
    assert len(set(reasons.values())) == 4


# -- 7. supervision rules -----------------------------------------------------------------------------------------


def test_recycles_after_max_conversions_without_failing_a_request(tmp_path: Path, template: Path) -> None:
    settings = office_settings(tmp_path / "work", template, max_conversions=2, queue_wait_s=30)
    with running_pool(settings) as pool:
        (first,) = pool.instances()
        first_pgid = first.pgid
        for _ in range(3):
            convert_sample(pool, tmp_path)
        assert pool.restarts["max_conversions"] >= 1
        assert pool.restarts["crash"] == pool.restarts["timeout"] == 0
        (current,) = pool.instances()
        assert current.pgid != first_pgid
        assert first_pgid is not None and group_members(first_pgid) == []


def test_recycles_above_rss_ceiling_without_failing_a_request(tmp_path: Path, template: Path) -> None:
    # The planned ceiling only: the separate hard limit (killing mid-conversion) is kept out of the way here.
    settings = office_settings(tmp_path / "work", template, max_rss_mb=1, rss_kill_mb=4096, queue_wait_s=30)
    with running_pool(settings) as pool:
        convert_sample(pool, tmp_path)
        convert_sample(pool, tmp_path)  # waits for the first recycle, so the counter is already bumped
        assert pool.restarts["memory"] >= 1
        convert_sample(pool, tmp_path)
        assert pool.restarts["memory"] >= 2
        assert pool.restarts["crash"] == 0


def test_queue_is_bounded_and_the_overflow_fails_at_once(tmp_path: Path, template: Path) -> None:
    long_doc = make_long_docx(tmp_path / "long.docx", 500)
    settings = office_settings(tmp_path / "work", template, queue_size=1, queue_wait_s=60)
    with running_pool(settings) as pool:
        errors: list[BaseException] = []

        def convert(src: Path) -> None:
            try:
                convert_sample(pool, tmp_path, src)
            except BaseException as exc:
                errors.append(exc)

        running = threading.Thread(target=convert, args=(long_doc,))
        running.start()
        wait_for("the long conversion to start", lambda: pool.status()[0].state == State.BUSY, 10)
        waiting = threading.Thread(target=convert, args=(SAMPLE,))
        waiting.start()
        wait_for("the second request to queue", lambda: pool.queue_depth == 1, 10)
        assert pool.status()[0].state == State.BUSY

        with pytest.raises(WorkerError) as caught:
            convert_sample(pool, tmp_path)
        assert caught.value.reason is Reason.QUEUE_FULL
        assert caught.value.retryable
        # refused at once: the 500-page conversion and the one waiting behind it are both still where they were
        assert running.is_alive() and waiting.is_alive() and pool.queue_depth == 1
        running.join(60)
        waiting.join(60)
        assert errors == []


def test_idle_office_that_dies_is_restarted_by_the_monitor(tmp_path: Path, template: Path) -> None:
    settings = office_settings(tmp_path / "work", template)
    with running_pool(settings) as pool:
        assert pool.ready()
        (inst,) = pool.instances()
        old_pgid = inst.pgid
        assert old_pgid is not None
        inst.kill_office()
        wait_for("the monitor to notice", lambda: pool.restarts["exit"] + pool.restarts["unhealthy"] >= 1, 10)
        wait_for("the pool to be ready again", pool.ready, 30)
        assert group_members(old_pgid) == []
        assert pdf_text(convert_sample(pool, tmp_path))[0] >= 1


def test_update_indexes_rebuilds_a_stale_table_of_contents(tmp_path: Path, template: Path) -> None:
    """UPDATE_INDEXES=true regenerates tables of contents before export; documents without indexes still convert.

    The per-document option docworker-update-indexes overrides the service setting either way.
    """
    toc = ('<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> TOC \\o "1-3"'
           ' \\u </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>STALE ENTRY</w:t>'
           '</w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>')
    heading = '<w:p><w:pPr><w:outlineLvl w:val="0"/></w:pPr><w:r><w:t>{}</w:t></w:r></w:p>'
    doc = tmp_path / "toc.docx"
    write_docx(doc, toc + heading.format("Alpha Chapter") + paragraph("one") + heading.format("Beta Chapter"))
    texts, overridden = {}, {}
    for update in (False, True):
        with running_pool(office_settings(tmp_path / f"work-{update}", template, update_indexes=update)) as pool:
            texts[update] = pdf_text(convert_sample(pool, tmp_path, doc))[1]
            per_doc = from_metadata({"docworker-update-indexes": str(not update).lower()})
            overridden[not update] = pdf_text(convert_sample(pool, tmp_path, doc, per_doc))[1]
            if update:
                for ext in ("xlsx", "pptx"):  # no indexes to update: must convert as usual
                    assert pdf_text(convert_sample(pool, tmp_path, DATA / f"sample.{ext}"))[0] >= 1
    assert "STALE ENTRY" in texts[False]  # the control: without the update the cached entry stays
    assert "STALE ENTRY" not in texts[True]
    assert "STALE ENTRY" in overridden[False] and "STALE ENTRY" not in overridden[True]
    assert re.search(r"Alpha Chapter\.+\s*1", texts[True]) and re.search(r"Beta Chapter\.+", texts[True])


def test_a_started_office_skipped_libreoffices_graphics_self_test(
    tmp_path: Path, template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """LibreOffice self-tests its graphics (~0.8 s of a ~1 s start) whenever the profile's last version is older.

    The initialised template records the version, so no instance pays it; the control shows the same start on a
    template without that record does write the self-test's log, so the check can fail.
    """
    assert records_office_version(template)
    with running_pool(office_settings(tmp_path / "work", template)) as pool:
        (inst,) = pool.instances()
        assert not (inst.dir / "profile" / "user" / "GraphicsRenderTests.log").exists()

    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(template, unrecorded)
    xcu = unrecorded / "user" / "registrymodifications.xcu"
    xcu.write_text(re.sub(r'<item oor:path="/org.openoffice.Setup/Product">.*?</item>', "", xcu.read_text()))
    assert not records_office_version(unrecorded)
    with caplog.at_level(logging.WARNING, logger="worker.office.profile"), \
            running_pool(office_settings(tmp_path / "control", unrecorded)) as pool:
        (inst,) = pool.instances()
        assert (inst.dir / "profile" / "user" / "GraphicsRenderTests.log").exists()
    assert "graphics self-test" in caplog.text  # the operator is told why such starts are slow


def test_every_family_is_warm_before_the_pool_says_ready(
    tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A family's first conversion loads its modules (~3x a warm one): start() converts one of each first."""
    seen: list[tuple[str, str]] = []
    real_convert = OfficeInstance.convert

    def recording(self: OfficeInstance, src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
        real_convert(self, src, dst, *args, **kwargs)
        seen.append((self.name, src.suffix))

    monkeypatch.setattr(OfficeInstance, "convert", recording)
    with running_pool(office_settings(tmp_path / "work", template, pool_size=2)) as pool:
        at_ready = list(seen)
        names = [inst.name for inst in pool.instances()]
    assert len(names) == 2
    for name in names:
        assert sorted(ext for n, ext in at_ready if n == name) == [".docx", ".pptx", ".xlsx"]


def test_stop_leaves_no_process_group_members(tmp_path: Path, template: Path) -> None:
    settings = office_settings(tmp_path / "work", template, pool_size=2)
    pool = OfficePool(settings)
    try:
        pool.start()
        pgids = [inst.pgid for inst in pool.instances()]
        assert len(pgids) == 2 and None not in pgids
        assert len(office_pids_under(settings.work_dir)) == 2
    finally:
        pool.stop()
    assert [group_members(pgid) for pgid in pgids if pgid is not None] == [[], []]
    assert office_pids_under(settings.work_dir) == []
    assert not pool.ready()


def test_offices_die_with_a_sigkilled_worker(tmp_path: Path, template: Path) -> None:
    """The launcher runs in its own session (for group kills), so nothing kills it with the worker: it must notice."""
    work = tmp_path / "work"
    child = (
        "import sys; from pathlib import Path; "
        "from tests.integration.conftest_office import office_settings; from worker.office import OfficePool; "
        "pool = OfficePool(office_settings(Path(sys.argv[1]), Path(sys.argv[2]), pool_size=2)); pool.start(); "
        "print('READY', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(work), str(template)],
        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
        offices = office_pids_under(work)
        launchers = launcher_pids_under(work)
        assert len(offices) == 2 and len(launchers) == 2, (offices, launchers)
        proc.kill()
        proc.wait(10)
        wait_for("the offices of a SIGKILLed worker to exit",
                 lambda: not office_pids_under(work) and not launcher_pids_under(work), 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in office_pids_under(work) + launcher_pids_under(work):  # never leave orphans, even on failure
            os.kill(pid, 9)


def test_convert_is_sent_once_even_when_the_connection_drops(tmp_path: Path) -> None:
    """xmlrpc.client re-sends a request once on a reset kept-alive connection; a conversion must never go twice.

    A fake launcher answers one ping (HTTP/1.1, kept alive), closes that idle connection (our transport must notice
    before sending, and reconnect), then drops the convert request without answering (must not be re-sent).
    """
    import socket

    from worker.config import OfficeSettings
    from worker.office.instance import OfficeInstance
    from worker.office.rpc import unix_address

    inst = OfficeInstance(OfficeSettings(work_dir=tmp_path), "fake", tmp_path, io.BytesIO())
    inst.dir.mkdir(parents=True)
    (tmp_path / "in.docx").write_bytes(b"staged into the instance before the call")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unix_address(inst.rpc_socket) as address:
        listener.bind(address)
    listener.listen()
    listener.settimeout(10)
    requests: list[bytes] = []
    ping_reply = (b"<?xml version='1.0'?><methodResponse><params><param><value><struct><member><name>office_pid"
                  b"</name><value><int>1</int></value></member></struct></value></param></params></methodResponse>")

    def read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        length = int(lengths[0])
        while len(body) < length:
            body += conn.recv(65536)
        return body

    def serve() -> None:
        conn, _ = listener.accept()
        requests.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(ping_reply), ping_reply))
        time.sleep(0.2)
        conn.close()  # the idle kept-alive connection goes away
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            requests.append(read_request(conn))
            conn.close()  # dropped without an answer, like an office that died mid-request
            listener.settimeout(1.5)

    server = threading.Thread(target=serve)
    server.start()
    try:
        assert inst.ping(timeout=5)["office_pid"] == 1
        time.sleep(0.5)
        with pytest.raises(OSError):
            inst.convert(tmp_path / "in.docx", tmp_path / "out.pdf", None, timeout=5)
    finally:
        server.join(10)
        listener.close()
    assert [b"<methodName>convert" in r for r in requests] == [False, True], requests


def test_an_office_starts_and_converts_under_a_work_dir_with_a_space_and_a_hash(tmp_path: Path, template: Path) -> None:
    """The profile reaches LibreOffice as a URL: an unencoded space once kept every office from starting."""
    work = tmp_path / "work dir #1"
    with running_pool(office_settings(work, template)) as pool:
        src = DATA / "sample.docx"
        out = tmp_path / "out.pdf"
        convert_file(pool, src, out, src.name, tmp_path)
    assert "docworker sample docx" in pdf_text(out)[1]
