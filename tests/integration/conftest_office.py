"""Helpers for tests that run real LibreOffice: pools that always stop, process scans, a request-counting server."""

from __future__ import annotations

import glob
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msoffcrypto
from pypdf import PdfReader

from tests.corpora import CORPUS  # noqa: F401  (re-exported: corpus tests import it from here)
from tests.harness.processes import paths_in_use
from tests.hostile_docs import paragraph, write_docx
from worker.config import OfficeSettings
from worker.errors import Reason
from worker.office import OfficePool
from worker.office.profile import INIT_MARKER, build_template

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLE_EXTS = ("docx", "doc", "odt", "rtf", "xlsx", "xls", "ods", "pptx", "ppt")
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f01f0005"
    "0001ff2a58d7ab0000000049454e44ae426082"
)

_template_lock = threading.Lock()
_templates: dict[Path, Path] = {}


def initialised_template(base: Path) -> Path:
    """An initialised copy of uno/profile under `base`, built once per process: every pool start skips exit 81."""
    with _template_lock:
        if base in _templates:
            return _templates[base]
        target = build_template(OfficeSettings(work_dir=base), base / "profile-template")
        assert (target / INIT_MARKER).exists()
        _templates[base] = target
        return target


def office_settings(work_dir: Path, template: Path, **overrides: Any) -> OfficeSettings:
    """Settings for a test pool: its own work_dir, the shared initialised profile, generous start timeout."""
    base = OfficeSettings(work_dir=work_dir, profile_template=template, pool_size=1, conversion_timeout_s=60.0)
    return replace(base, **overrides)


@contextmanager
def running_pool(settings: OfficeSettings) -> Iterator[OfficePool]:
    """A started pool that is stopped even when the test fails half-way."""
    pool = OfficePool(settings)
    try:
        pool.start()
        yield pool
    finally:
        pool.stop()


def tmp_leftovers() -> set[str]:
    """LibreOffice's droppings in the shared /tmp: lock/temp files and the single-instance IPC pipes."""
    return set(glob.glob("/tmp/lu*.tmp")) | set(glob.glob("/tmp/OSL_PIPE_*"))


def make_bad_inputs(tmp_path: Path) -> dict[str, Path]:
    """Empty, random, truncated and encrypted documents, each named .docx like a real upload."""
    empty = tmp_path / "empty.docx"
    empty.write_bytes(b"")
    noise = tmp_path / "random.docx"
    noise.write_bytes(random.Random(2).randbytes(50 * 1024))
    truncated = tmp_path / "truncated.docx"
    whole = (DATA / "sample.docx").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    encrypted = tmp_path / "encrypted.docx"
    with (DATA / "sample.docx").open("rb") as source, encrypted.open("wb") as target:
        msoffcrypto.OfficeFile(source).encrypt("s3cret", target)
    return {"empty": empty, "random": noise, "truncated": truncated, "encrypted": encrypted}


BAD_INPUT_REASONS = {
    "empty": Reason.EMPTY,
    "random": Reason.UNSUPPORTED_TYPE,
    "truncated": Reason.CORRUPT,
    "encrypted": Reason.PASSWORD_REQUIRED,
}


def make_long_docx(path: Path, pages: int) -> Path:
    """A .docx of `pages` full pages: 500 take ~2 s warm, while sample-100pages.docx takes only ~0.2 s here."""
    text = "docworker long document " * 40
    page_break = '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'
    write_docx(path, "".join(paragraph(f"page {i} {text}") + page_break for i in range(pages)))
    return path


def stale_tmp_leftovers(before: set[str]) -> list[str]:
    """New /tmp droppings that no live process still binds or holds open (other pools may share this machine)."""
    live = paths_in_use()
    return sorted(p for p in tmp_leftovers() - before if p not in live)


def pdf_pages(path: Path) -> int:
    """Page count only: extracting text from a 300-page PDF costs pypdf longer than LibreOffice took to write it."""
    return len(PdfReader(path).pages)


def pdf_text(path: Path) -> tuple[int, str]:
    """Page count and whitespace-normalised text of a PDF (pypdf raises if it is not one)."""
    reader = PdfReader(path)
    text = " ".join(page.extract_text() or "" for page in reader.pages)
    return len(reader.pages), " ".join(text.split())


class CountingServer:
    """A loopback HTTP server that answers every method with a tiny PNG and records each request line."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                requests.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG_1X1)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(PNG_1X1)

            do_GET = do_HEAD = do_OPTIONS = do_POST = do_PROPFIND = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/canary.png") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
