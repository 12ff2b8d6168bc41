"""worker.storage against a real fake-gcs-server, plus tiny lying servers for failures it cannot fake."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.cloud import storage

from tests.harness.processes import bytes_read_by_this_process
from worker import emulators
from worker.errors import Reason, WorkerError
from worker.storage import ObjectGone, Store, emulator_client

pytestmark = pytest.mark.emulators

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
def store(gcs_client: storage.Client) -> Store:
    return Store(gcs_client, timeout_s=10, retry_deadline_s=10)


def put(store: Store, bucket: str, name: str, data: bytes, **metadata: str) -> int:
    info = store.create(bucket, name, data, content_type=DOCX, metadata=dict(metadata))
    assert info is not None
    return info.generation


def test_stat_and_download_pinned_generation(store: Store, bucket: str, tmp_path: Path) -> None:
    gen = put(store, bucket, "incoming/a.docx", b"first version", owner="alice")

    info = store.stat(bucket, "incoming/a.docx", gen)
    assert (info.bucket, info.name, info.generation, info.size) == (bucket, "incoming/a.docx", gen, 13)
    assert info.content_type == DOCX
    assert info.metadata == {"owner": "alice"}

    dest = tmp_path / "a.docx"
    assert store.download(bucket, "incoming/a.docx", gen, dest, max_bytes=1000) == 13
    assert dest.read_bytes() == b"first version"


def test_overwritten_generation_is_gone(store: Store, bucket: str, tmp_path: Path) -> None:
    old = put(store, bucket, "incoming/a.docx", b"old")
    current = store.get_output(bucket, "incoming/a.docx")
    assert current is not None
    new = store.replace(
        bucket,
        "incoming/a.docx",
        b"new",
        content_type=DOCX,
        metadata={},
        if_generation_match=current.generation,
    )
    assert new is not None and new.generation != old

    with pytest.raises(ObjectGone):
        store.stat(bucket, "incoming/a.docx", old)
    with pytest.raises(ObjectGone):
        store.download(bucket, "incoming/a.docx", old, tmp_path / "old.docx", max_bytes=1000)
    assert not (tmp_path / "old.docx").exists()
    store.download(bucket, "incoming/a.docx", new.generation, tmp_path / "new.docx", max_bytes=1000)
    assert (tmp_path / "new.docx").read_bytes() == b"new"


def test_missing_object_is_gone(store: Store, bucket: str) -> None:
    with pytest.raises(ObjectGone):
        store.stat(bucket, "never-uploaded.docx", 123)
    assert store.get_output(bucket, "never-uploaded.pdf") is None


def test_too_large_is_refused_before_download(store: Store, bucket: str, tmp_path: Path) -> None:
    gen = put(store, bucket, "big.docx", b"x" * 2048)
    dest = tmp_path / "big.docx"
    with pytest.raises(WorkerError) as err:
        store.download(bucket, "big.docx", gen, dest, max_bytes=2047)
    assert err.value.reason is Reason.TOO_LARGE
    assert not err.value.retryable
    assert not dest.exists()  # not a single byte fetched
    assert store.download(bucket, "big.docx", gen, dest, max_bytes=2048) == 2048


def test_with_the_events_size_the_download_is_one_request(
    store: Store, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = put(store, bucket, "a.docx", b"x" * 100)
    monkeypatch.setattr(store, "stat", lambda *a, **k: pytest.fail("a metadata read the event made needless"))
    dest = tmp_path / "a.docx"
    assert store.download(bucket, "a.docx", gen, dest, max_bytes=1000, size=100) == 100
    assert dest.read_bytes() == b"x" * 100
    with pytest.raises(ObjectGone):  # a stale generation still reads as gone, without the metadata read
        store.download(bucket, "a.docx", gen + 1, tmp_path / "gone", max_bytes=1000, size=100)
    assert not (tmp_path / "gone").exists()


def test_an_event_saying_too_large_is_refused_without_any_request(tmp_path: Path) -> None:
    dead = Store(emulator_client(f"http://127.0.0.1:{emulators.free_port()}"), timeout_s=0.5, retry_deadline_s=1)
    with pytest.raises(WorkerError) as err:  # any request would have failed as storage_unavailable
        dead.download("b", "big.docx", 1, tmp_path / "big", max_bytes=1000, size=1001)
    assert err.value.reason is Reason.TOO_LARGE
    assert not (tmp_path / "big").exists()


def test_an_event_understating_the_size_cannot_make_the_worker_read_the_whole_object(
    store: Store, bucket: str, tmp_path: Path
) -> None:
    big = 8 * 2**20
    gen = put(store, bucket, "liar.docx", b"x" * big)
    dest = tmp_path / "liar.docx"
    before = bytes_read_by_this_process()
    with pytest.raises(WorkerError) as err:
        store.download(bucket, "liar.docx", gen, dest, max_bytes=2**20, size=10)
    read = bytes_read_by_this_process() - before
    assert err.value.reason is Reason.TOO_LARGE and not err.value.retryable
    assert "the event said 10" in err.value.message
    assert not dest.exists()
    assert read < big // 2, f"read {read} bytes of an {big}-byte object capped at 1 MiB"


def test_create_is_create_only(store: Store, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "out.pdf"
    src.write_bytes(b"%PDF-1.4 first")
    first = store.create(bucket, "out/a.pdf", src, content_type="application/pdf", metadata={"n": "1"})
    assert first is not None and first.size == src.stat().st_size

    assert (
        store.create(bucket, "out/a.pdf", b"%PDF-1.4 second", content_type="application/pdf", metadata={})
        is None
    )
    live = store.get_output(bucket, "out/a.pdf")
    assert live == first


def test_replace_is_conditional(store: Store, bucket: str) -> None:
    first = store.create(
        bucket, "a.pdf", b"one", content_type="application/pdf", metadata={"source-generation": "1"}
    )
    assert first is not None
    wrong = store.replace(
        bucket,
        "a.pdf",
        b"two",
        content_type="application/pdf",
        metadata={},
        if_generation_match=first.generation + 1,
    )
    assert wrong is None
    right = store.replace(
        bucket,
        "a.pdf",
        b"three",
        content_type="application/pdf",
        metadata={"source-generation": "2"},
        if_generation_match=first.generation,
    )
    assert right is not None
    assert right.generation != first.generation
    assert right.metadata == {"source-generation": "2"}
    assert store.get_output(bucket, "a.pdf") == right


def test_metadata_round_trip(store: Store, bucket: str) -> None:
    meta = {
        "source-bucket": "in-bucket",
        "source-object": "incoming/Résumé final.docx",
        "source-generation": "1795867266026254",
        "empty": "",
    }
    created = store.create(bucket, "out/r.pdf", b"%PDF", content_type="application/pdf", metadata=meta)
    assert created is not None and created.metadata == meta
    live = store.get_output(bucket, "out/r.pdf")
    assert live is not None and live.metadata == meta and live.content_type == "application/pdf"


def test_get_outputs_answers_each_name_in_order(store: Store, bucket: str) -> None:
    a = store.create(bucket, "out/a.pdf", b"%PDF a", content_type="application/pdf", metadata={"n": "a"})
    c = store.create(bucket, "out/c.pdf", b"%PDF c", content_type="application/pdf", metadata={"n": "c"})
    names = ["out/c.pdf", "out/missing.pdf", "out/a.pdf", "out/a.pdf.error.json"]
    assert store.get_outputs(bucket, names) == [c, None, a, None]
    assert store.get_outputs(bucket, []) == []


@pytest.mark.parametrize(
    "name",
    ["incoming/Résumé final (v2).docx", "incoming/日本語 ファイル.docx", "incoming/a+b & c%20d #1?.docx"],
)
def test_unicode_and_space_names(store: Store, bucket: str, tmp_path: Path, name: str) -> None:
    gen = put(store, bucket, name, b"content of " + name.encode())
    info = store.stat(bucket, name, gen)
    assert info.name == name
    dest = tmp_path / "x.docx"
    store.download(bucket, name, gen, dest, max_bytes=1000)
    assert dest.read_bytes() == b"content of " + name.encode()
    assert store.get_output(bucket, name) == info


def test_missing_bucket_on_upload_is_unavailable(store: Store) -> None:
    with pytest.raises(WorkerError) as err:
        store.create("no-such-bucket-xyz", "a.pdf", b"x", content_type="application/pdf", metadata={})
    assert err.value.reason is Reason.STORAGE_UNAVAILABLE


def test_server_down_is_unavailable_quickly(tmp_path: Path) -> None:
    dead = emulator_client(f"http://127.0.0.1:{emulators.free_port()}")
    store = Store(dead, timeout_s=0.5, retry_deadline_s=1.5)
    calls: list[Callable[[], object]] = [
        lambda: store.stat("b", "a.docx", 1),
        lambda: store.download("b", "a.docx", 1, tmp_path / "a", max_bytes=10),
        lambda: store.get_output("b", "a.pdf"),
        lambda: store.get_outputs("b", ["a.pdf", "a.docx.pdf", "a.docx.error.json"]),
        lambda: store.create("b", "a.pdf", b"x", content_type="application/pdf", metadata={}),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(WorkerError) as err:
            call()
        assert err.value.reason is Reason.STORAGE_UNAVAILABLE
        assert err.value.retryable
        # a hang guard, not a speed figure: our 1.5 s deadline applied, not the library's default of 120 s
        assert time.monotonic() - started < 60


class Lying(BaseHTTPRequestHandler):
    """Answers every request the way `mode` says: a status code, or a download whose checksum is wrong."""

    mode = "403"
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        if self.mode == "corrupt":
            if "alt=media" in self.path:
                body = b"hello world"
                self.send_response(200)
                self.send_header("x-goog-hash", "crc32c=AAAAAA==")
                self.send_header("x-goog-generation", "7")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self._json(200, {"bucket": "b", "name": "a.docx", "generation": "7", "size": "11"})
            return
        self._json(int(self.mode), {"error": {"code": int(self.mode), "message": "nope"}})

    do_POST = do_GET

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def lying_server() -> Iterator[tuple[str, type[Lying]]]:
    handler = type("LyingHandler", (Lying,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_forbidden_names_the_permission_problem(lying_server: tuple[str, type[Lying]]) -> None:
    url, handler = lying_server
    handler.mode = "403"
    store = Store(emulator_client(url), timeout_s=2, retry_deadline_s=2)
    with pytest.raises(WorkerError) as err:
        store.stat("b", "a.docx", 7)
    assert err.value.reason is Reason.STORAGE_UNAVAILABLE
    assert "permission" in err.value.message
    assert handler.hits <= 2  # not retried (after a 403 the client itself reads the bucket once)


def test_503_is_retried_then_unavailable(lying_server: tuple[str, type[Lying]]) -> None:
    url, handler = lying_server
    handler.mode = "503"
    store = Store(emulator_client(url), timeout_s=2, retry_deadline_s=2)
    with pytest.raises(WorkerError) as err:
        store.get_output("b", "a.pdf")
    assert err.value.reason is Reason.STORAGE_UNAVAILABLE
    assert handler.hits >= 2


def test_checksum_mismatch_is_retryable(lying_server: tuple[str, type[Lying]], tmp_path: Path) -> None:
    url, handler = lying_server
    handler.mode = "corrupt"
    store = Store(emulator_client(url), timeout_s=2, retry_deadline_s=2)
    dest = tmp_path / "a.docx"
    with pytest.raises(WorkerError) as err:
        store.download("b", "a.docx", 7, dest, max_bytes=100)
    assert err.value.reason is Reason.STORAGE_UNAVAILABLE
    assert "checksum" in err.value.message
    assert not dest.exists()  # the client deletes the partial file


def test_default_client_honours_storage_emulator_host(
    monkeypatch: pytest.MonkeyPatch, fake_gcs: emulators.Proc, bucket: str
) -> None:
    """The worker builds Store() with no client; STORAGE_EMULATOR_HOST alone must point it at the emulator."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    store = Store()
    created = store.create(bucket, "env.pdf", b"%PDF", content_type="application/pdf", metadata={})
    assert created is not None
    assert store.get_output(bucket, "env.pdf") == created
