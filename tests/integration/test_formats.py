"""Every legacy document stock LibreOffice converts becomes the same PDF here; the one it cannot is named.

The corpus is ../shared/corpus-formats (Apache Tika's test files). What stock `soffice --convert-to pdf` makes of
each file is committed in tests/data/corpus-formats-stock.tsv; rewrite it with
`.venv/bin/python -m tests.integration.test_formats` and check it live with
`.venv/bin/python -m pytest -p no:cacheprovider -m slow tests/integration/test_formats.py`.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import corpora
from tests.integration.conftest_office import REPO, initialised_template, office_settings, running_pool
from worker.conversion import convert_file
from worker.errors import Reason, WorkerError
from worker.formats import FORMATS
from worker.office import OfficePool
from worker.sniff import sniff

pytestmark = pytest.mark.office

FORMATS_CORPUS = corpora.FORMATS
REFERENCE = REPO / "tests" / "data" / "corpus-formats-stock.tsv"
SNIPPET_WORDS = 8
# The only file stock LibreOffice does not convert, and what we must call it instead.
REFUSED = {"tika/testHWP-v5b.hwp": (Reason.UNSUPPORTED_TYPE, "Hangul Word Processor")}


def manifest_rows() -> list[str]:
    manifest = FORMATS_CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as f:
        return [row["relative_path"] for row in csv.DictReader(f, delimiter="\t")]


def reference() -> dict[str, tuple[int, str]]:
    """relative_path -> (stock page count, first words of stock's text); 0 pages where stock made no PDF."""
    with REFERENCE.open(newline="") as f:
        return {row["relative_path"]: (int(row["stock_pages"]), row["stock_text_start"])
                for row in csv.DictReader(f, delimiter="\t")}


def pdftotext(pdf: Path) -> str:
    """Whitespace-normalised text as poppler extracts it (the parity check's measure, not pypdf's)."""
    result = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                            check=True, timeout=60)
    return " ".join(result.stdout.split())


def pdf_page_count(pdf: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(pdf).pages)


def stock_convert(src: Path, out_dir: Path) -> Path | None:
    """A plain cold `soffice --headless --convert-to pdf` on a throwaway profile, as a new user runs it."""
    profile = out_dir / "profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless", "--convert-to", "pdf",
         "--outdir", str(out_dir), str(src)],
        capture_output=True, timeout=180, check=False,
    )
    pdf = out_dir / (src.stem + ".pdf")
    return pdf if pdf.is_file() else None


def stock_row(relative: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="stock-") as tmp:
        pdf = stock_convert(FORMATS_CORPUS / relative, Path(tmp))
        if pdf is None:
            return 0, ""
        return pdf_page_count(pdf), " ".join(pdftotext(pdf).split()[:SNIPPET_WORDS])


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficePool]:
    template = initialised_template(tmp_path_factory.getbasetemp() / "office-template")
    settings = office_settings(tmp_path_factory.mktemp("formats-work"), template)
    with running_pool(settings) as started:
        yield started


ROWS = manifest_rows()


def test_the_formats_corpus_matches_the_stock_reference() -> None:
    """Without the corpus every test below is an empty set: say so loudly instead of passing quietly."""
    corpora.need_corpus(FORMATS_CORPUS)
    assert sorted(ROWS) == sorted(reference()), "the manifest and tests/data/corpus-formats-stock.tsv disagree"


@pytest.mark.parametrize("relative", ROWS)
def test_converts_like_stock_libreoffice(relative: str, pool: OfficePool, tmp_path: Path) -> None:
    src = FORMATS_CORPUS / relative
    stock_pages, stock_text = reference()[relative]
    out = tmp_path / "out.pdf"
    if relative in REFUSED:
        reason, words = REFUSED[relative]
        assert stock_pages == 0
        with pytest.raises(WorkerError) as caught:
            convert_file(pool, src, out, src.name, tmp_path)
        assert caught.value.reason is reason and words in caught.value.message
        assert "upload again" in caught.value.message
        return
    converted = convert_file(pool, src, out, src.name, tmp_path)
    # The load named a filter from our catalogue: LibreOffice never chose one by itself.
    assert converted.sniffed.import_filter == FORMATS[converted.sniffed.kind].import_filter
    assert pdf_page_count(out) == stock_pages
    assert stock_text in pdftotext(out)


def test_word_6_document_is_not_loaded_as_word_97() -> None:
    """The issue's field report: Word 6.0/95 files failed because the load named "MS Word 97"."""
    src = corpora.need_corpus(FORMATS_CORPUS) / "tika" / "testWORD6.doc"
    sniffed = sniff(src)
    assert (sniffed.kind, sniffed.import_filter) == ("doc95", "MS Word 95")


def test_excel_4_worksheet_converts_like_stock(pool: OfficePool, tmp_path: Path) -> None:
    """From ../shared/corpus: stock makes one page showing ID and TOTAL; it was refused before issue 12."""
    src = corpora.need_corpus(corpora.CORPUS) / "xlrd" / "biff4_no_format_no_window2.xls"
    out = tmp_path / "out.pdf"
    assert convert_file(pool, src, out, src.name, tmp_path).sniffed.import_filter == "MS Excel 4.0"
    assert pdf_page_count(out) == 1
    assert "ID" in pdftotext(out) and "TOTAL" in pdftotext(out)


@pytest.mark.slow
@pytest.mark.parametrize("relative", ROWS)
def test_reference_table_matches_stock_libreoffice_now(relative: str) -> None:
    """The committed table is what the installed LibreOffice really does (minutes: one cold start per file)."""
    assert shutil.which("soffice"), "stock soffice is not on PATH"
    assert stock_row(relative) == reference()[relative]


def write_reference() -> None:
    rows = manifest_rows()
    if not rows:
        sys.exit(f"{FORMATS_CORPUS}/MANIFEST.tsv is missing")
    with REFERENCE.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["relative_path", "stock_pages", "stock_text_start"])
        for relative in rows:
            pages, text = stock_row(relative)
            writer.writerow([relative, pages, text])
            print(relative, pages, text, flush=True)


if __name__ == "__main__":
    write_reference()
