"""Every PDF option changes a real LibreOffice export as asked, and its check fails on a stock export.

The exports go the way a push's do: convert_file on a running office pool (the launcher passes the FilterData
`PdfOptions.to_filter_data()` builds to storeToURL and verifies the PDF), so every test here also proves the
wiring. The checks are then shown failing on the pool's stock export (no FilterData at all).
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest
from pypdf import PdfReader

from tests.integration.conftest_office import CORPUS, DATA, initialised_template, office_settings, running_pool
from worker.conversion import VerificationFailed, convert_file
from worker.errors import Reason, WorkerError
from worker.office import Export, OfficePool
from worker.options import Passwords, PdfOptions, from_metadata
from worker.pdf_checks import Failure, check_pdf
from worker.sniff import sniff

pytestmark = pytest.mark.office

FORMS_DOCX = CORPUS / "docx4j" / "LegacyForms.docx"  # three legacy form fields (Apache-2.0, docx4j tests)
COMMENT = "Reviewer comment zebra"
_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" office:version="1.3"'
)


def noise_png(size: int, seed: int = 14) -> bytes:
    """An RGB noise image: photo-like for the JPEG encoder, so quality and resolution change its stream."""
    rnd = random.Random(seed)
    rows = b"".join(b"\0" + rnd.randbytes(size * 3) for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def features_fodt(path: Path) -> None:
    """A heading (bookmark), a comment (note) and a 300 px image placed 2 inches wide (150 dpi)."""
    image = base64.b64encode(noise_png(300)).decode()
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {_NS} '
        'office:mimetype="application/vnd.oasis.opendocument.text"><office:body><office:text>'
        '<text:h text:outline-level="1">Options heading</text:h>'
        f"<text:p>Body text.<office:annotation><dc:creator>Rev</dc:creator><text:p>{COMMENT}</text:p>"
        "</office:annotation> More text.</text:p>"
        '<text:p><draw:frame draw:name="pic" svg:width="2in" svg:height="2in" text:anchor-type="as-char">'
        f"<draw:image><office:binary-data>{image}</office:binary-data></draw:image></draw:frame></text:p>"
        "</office:text></office:body></office:document>\n"
    )


def tall_fods(path: Path, sheets: int = 2, rows: int = 300) -> None:
    """Sheets long enough to span several pages each in a stock export."""
    body = "".join(
        f'<table:table-row><table:table-cell office:value-type="float" office:value="{i}"><text:p>{i}</text:p>'
        "</table:table-cell></table:table-row>"
        for i in range(rows)
    )
    tables = "".join(f'<table:table table:name="S{n}"><table:table-column/>{body}</table:table>' for n in range(sheets))
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {_NS} '
        'office:mimetype="application/vnd.oasis.opendocument.spreadsheet"><office:body><office:spreadsheet>'
        f"{tables}</office:spreadsheet></office:body></office:document>\n"
    )


class Exporter:
    """A running pool and a place for its PDFs; every export is one conversion on a warm office."""

    def __init__(self, work: Path, pool: OfficePool) -> None:
        self.work = work
        self.pool = pool
        self.count = 0

    def _next(self, source: Path) -> Path:
        self.count += 1
        return self.work / f"{self.count}-{source.stem}.pdf"

    def export_raw(self, source: Path, export: Export) -> Path:
        """Straight to the pool with this Export (no verification): for the stock export and raw FilterData."""
        out = self._next(source)
        self.pool.convert(source, out, sniff(source, source.name).import_filter, export)
        return out

    def export_one(self, source: Path, options: PdfOptions, passwords: Passwords | None = None,
                   calc: bool = False) -> Path:
        """The push path's conversion: convert_file exports with the options and raises if its checks fail."""
        out = self._next(source)
        convert_file(self.pool, source, out, source.name, self.work, options=options,
                     passwords=passwords or Passwords())
        return out


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    work = tmp_path_factory.mktemp("pdf-options")
    with running_pool(office_settings(work / "pool", initialised_template(work))) as pool:
        yield Exporter(work, pool)


@pytest.fixture(scope="module")
def sources(exporter: Exporter) -> dict[str, Path]:
    features, tall = exporter.work / "features.fodt", exporter.work / "tall.fods"
    features_fodt(features)
    tall_fods(tall)
    assert FORMS_DOCX.is_file(), f"the corpus document {FORMS_DOCX} is missing"
    return {"docx": DATA / "sample.docx", "10pages": DATA / "sample-10pages.docx", "features": features,
            "tall": tall, "forms": FORMS_DOCX}


@pytest.fixture(scope="module")
def stock(exporter: Exporter, sources: dict[str, Path]) -> dict[str, Path]:
    """The stock export (no FilterData at all) of every source."""
    return {name: exporter.export_raw(path, Export()) for name, path in sources.items()}


def reasons(pdf: Path, options: PdfOptions, passwords: Passwords | None = None, **kw: int) -> set[Failure]:
    return {f.reason for f in check_pdf(pdf, options, passwords, **kw)}


def opts(**metadata: str) -> PdfOptions:
    return from_metadata({f"docworker-{k.replace('_', '-')}": v for k, v in metadata.items()})


def images(pdf: Path) -> list[tuple[int, int, str, int]]:
    with pikepdf.open(pdf) as doc:
        return [(int(im.Width), int(im.Height), str(im.get("/Filter")), len(im.read_raw_bytes()))
                for page in doc.pages for im in page.get_images().values()]


def annotations(pdf: Path) -> list[tuple[str, str]]:
    with pikepdf.open(pdf) as doc:
        return [(str(a.Subtype), str(a.get("/Contents", ""))) for page in doc.pages for a in page.get("/Annots", [])]


# --- the defaults are the stock export ---------------------------------------------------------------------


def test_default_filter_data_reproduces_the_stock_export(exporter: Exporter, sources: dict[str, Path],
                                                          stock: dict[str, Path]) -> None:
    """Any FilterData switches LibreOffice to its filter's built-in defaults (notes on, quality 80): ours must not."""
    pdf = exporter.export_raw(sources["features"], Export(filter_data=PdfOptions().to_filter_data()))
    assert images(pdf) == images(stock["features"])  # same JPEG quality, same resolution
    assert annotations(pdf) == annotations(stock["features"]) == []
    with pikepdf.open(pdf) as a, pikepdf.open(stock["features"]) as b:
        assert len(a.pages) == len(b.pages) and ("/Outlines" in a.Root) == ("/Outlines" in b.Root)
    assert check_pdf(pdf, PdfOptions()) == []


# --- one test per option: changed as asked, and the check fails on the stock export ----------------------


def test_pdfa_2b(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path], tmp_path: Path) -> None:
    options = opts(pdfa="2b")
    pdf = exporter.export_one(sources["docx"], options)
    assert check_pdf(pdf, options) == []
    assert {Failure.PDFA_METADATA_MISSING, Failure.PDFA_OUTPUT_INTENT_MISSING} <= reasons(stock["docx"], options)
    assert Failure.PDFA_LEVEL_MISMATCH in reasons(pdf, opts(pdfa="3b"))
    # The font and encryption checks fail on the same real PDF/A file once it is altered the way they guard against.
    stripped = tmp_path / "no-font-file.pdf"
    with pikepdf.open(pdf) as doc:
        removed = 0
        for page in doc.pages:
            for font in page.Resources.Font.values():
                target = font.DescendantFonts[0] if font.Subtype == pikepdf.Name.Type0 else font
                for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                    if key in target.FontDescriptor:
                        del target.FontDescriptor[key]
                        removed += 1
        assert removed, "LibreOffice embedded no font program at all"
        doc.save(stripped)
    assert Failure.FONT_NOT_EMBEDDED in reasons(stripped, options)
    encrypted = tmp_path / "encrypted.pdf"
    with pikepdf.open(pdf) as doc:
        doc.save(encrypted, encryption=pikepdf.Encryption(user="", owner="o"))
    assert Failure.PDFA_ENCRYPTED in reasons(encrypted, options)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["1b", "3b"])
def test_pdfa_other_levels(exporter: Exporter, sources: dict[str, Path], level: str) -> None:
    options = opts(pdfa=level)
    pdf = exporter.export_one(sources["docx"], options)
    assert check_pdf(pdf, options) == []
    assert Failure.PDFA_LEVEL_MISMATCH in reasons(pdf, opts(pdfa="2b"))


def test_pdfua(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(pdfua="true")
    pdf = exporter.export_one(sources["features"], options)
    assert check_pdf(pdf, options) == []
    assert {Failure.PDFUA_STRUCTURE_MISSING, Failure.PDFUA_NOT_MARKED, Failure.PDFUA_METADATA_MISSING} <= reasons(
        stock["features"], options)


def test_page_ranges(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(pages="2-4, 7")
    pdf = exporter.export_one(sources["10pages"], options)
    assert len(PdfReader(pdf).pages) == 4
    assert check_pdf(pdf, options) == [] and check_pdf(pdf, options, expected_pages=4) == []
    assert Failure.PAGE_COUNT_MISMATCH in reasons(stock["10pages"], options)
    texts = [" ".join(page.extract_text().split()) for page in PdfReader(pdf).pages]
    assert [n for n in range(1, 11) for text in texts if f"sample page {n} of 10" in text] == [2, 3, 4, 7]


def test_single_page_sheets(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(single_page_sheets="true")
    pdf = exporter.export_one(sources["tall"], options, calc=True)
    assert len(PdfReader(stock["tall"]).pages) > 2
    assert check_pdf(pdf, options, expected_pages=2) == []
    assert Failure.PAGE_COUNT_MISMATCH in reasons(stock["tall"], options, expected_pages=2)


def test_notes(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    """Not structurally checkable in general (a document may have no comment): proven here on one that has."""
    pdf = exporter.export_one(sources["features"], opts(notes="true"))
    assert ("/Text", COMMENT) in annotations(pdf)
    assert annotations(stock["features"]) == []


def test_bookmarks_off(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(bookmarks="false")
    pdf = exporter.export_one(sources["features"], options)
    assert check_pdf(pdf, options) == []
    assert reasons(stock["features"], options) == {Failure.BOOKMARKS_PRESENT}


def test_quality(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(quality="10")
    pdf = exporter.export_one(sources["features"], options)
    [(w, h, kind, size)] = images(pdf)
    [(w0, h0, kind0, size0)] = images(stock["features"])
    assert (w, h, kind) == (w0, h0, kind0) == (300, 300, "/DCTDecode")
    assert size < size0 / 2
    assert check_pdf(pdf, options) == []
    assert reasons(stock["features"], options) == {Failure.IMAGE_QUALITY_MISMATCH}  # the stock export is quality 90
    assert reasons(pdf, opts(quality="11")) == {Failure.IMAGE_QUALITY_MISMATCH}


def test_max_dpi(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(max_dpi="75")
    pdf = exporter.export_one(sources["features"], options)
    assert [im[:2] for im in images(pdf)] == [(150, 150)]  # 2 inches at 75 dpi
    assert check_pdf(pdf, options) == []
    assert reasons(stock["features"], options) == {Failure.IMAGE_RESOLUTION_EXCEEDED}


def test_lossless(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(lossless="true")
    pdf = exporter.export_one(sources["features"], options)
    assert [im[2] for im in images(pdf)] == ["/FlateDecode"]
    assert check_pdf(pdf, options) == []
    assert reasons(stock["features"], options) == {Failure.LOSSY_IMAGE}


def test_form_fields_off(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(form_fields="false")
    pdf = exporter.export_one(sources["forms"], options)
    assert check_pdf(pdf, options) == []
    assert reasons(stock["forms"], options) == {Failure.FORM_FIELDS_PRESENT}


def test_watermark(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(watermark="CONFIDENTIAL 14")
    pdf = exporter.export_one(sources["docx"], options)
    assert check_pdf(pdf, options) == []
    assert reasons(stock["docx"], options) == {Failure.WATERMARK_MISSING}


def test_open_and_owner_passwords(exporter: Exporter, sources: dict[str, Path], stock: dict[str, Path]) -> None:
    options = opts(open_password_secret="doc-open", owner_password_secret="doc-owner", print="lowres",
                   changes="forms", copy="false")
    passwords = Passwords(open_password="open sesame", owner_password="owner-14")
    pdf = exporter.export_one(sources["docx"], options, passwords)
    assert check_pdf(pdf, options, passwords) == []
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(pdf)
    assert reasons(stock["docx"], options, passwords) >= {Failure.ENCRYPTION_MISSING}
    assert Failure.PASSWORD_REJECTED in reasons(pdf, options, Passwords("wrong", "owner-14"))
    assert Failure.OWNER_PASSWORD_REJECTED in reasons(pdf, options, Passwords("open sesame", "wrong"))
    other = opts(open_password_secret="doc-open", owner_password_secret="doc-owner", print="full")
    assert reasons(pdf, other, passwords) == {Failure.PERMISSIONS_MISMATCH}


@pytest.mark.parametrize("changes", ["none", *(pytest.param(c, marks=pytest.mark.slow)
                                                for c in ("assemble", "comments", "any"))])
def test_owner_only_permission_levels(exporter: Exporter, sources: dict[str, Path], changes: str) -> None:
    """An owner password alone: the PDF opens without a password and carries exactly the asked permissions."""
    options = opts(owner_password_secret="doc-owner", changes=changes, print="none")
    passwords = Passwords(owner_password="owner-14")
    pdf = exporter.export_one(sources["docx"], options, passwords)
    with pikepdf.open(pdf) as doc:
        assert doc.is_encrypted
    assert check_pdf(pdf, options, passwords) == []
    other = "forms" if changes != "forms" else "none"
    assert Failure.PERMISSIONS_MISMATCH in reasons(pdf, opts(owner_password_secret="x", changes=other), passwords)
    asked_open = opts(open_password_secret="o", owner_password_secret="x", changes=changes, print="none")
    assert Failure.OPENS_WITHOUT_PASSWORD in reasons(pdf, asked_open, Passwords("open", "owner-14"))


def test_a_file_that_is_no_pdf_is_unreadable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"this is not a PDF at all\n" * 10)
    assert reasons(junk, opts(pdfa="2b")) == {Failure.UNREADABLE}


# --- the whole conversion: verification failures, encrypted inputs -----------------------------------------


def test_a_pdf_that_misses_its_check_is_a_verification_failure(exporter: Exporter, sources: dict[str, Path]) -> None:
    """convert_file refuses to hand back a PDF whose check fails (here: the caller knew 3 pages were due)."""
    out = exporter.work / "never.pdf"
    with pytest.raises(VerificationFailed) as caught:
        convert_file(exporter.pool, sources["10pages"], out, "10pages.docx", exporter.work,
                     options=opts(pages="2-4,7"), expected_pages=3)
    assert caught.value.reason is Reason.VERIFICATION_FAILED
    assert [f.reason for f in caught.value.failures] == [Failure.PAGE_COUNT_MISMATCH]
    assert not out.exists()


# The corpus's encrypted documents whose password its manifest gives (../shared/corpus/MANIFEST.tsv).
PASSWORDS = {
    "msoffcrypto-tool/example_password.docx": "Password1234_",
    "msoffcrypto-tool/example_password.xlsx": "Password1234_",
    "msoffcrypto-tool/ecma376standard_password.docx": "Password1234_",
    "msoffcrypto-tool/rc4cryptoapi_password.doc": "Password1234_",
    "msoffcrypto-tool/rc4cryptoapi_password.xls": "Password1234_",
    "msoffcrypto-tool/rc4cryptoapi_password.ppt": "Password1234_",
    "msoffcrypto-tool/xor_password_123456789012345.xls": "123456789012345",
    "jodconverter/test_password.odt": "test",
}


@pytest.mark.parametrize("relative", sorted(PASSWORDS))
def test_an_encrypted_input_converts_with_its_password_and_names_a_wrong_or_missing_one(
        exporter: Exporter, relative: str) -> None:
    source = CORPUS / relative
    assert source.is_file(), f"the corpus document {source} is missing"
    named = opts(password_secret="input")
    pdf = exporter.export_one(source, named, Passwords(input_password=PASSWORDS[relative]))
    assert len(PdfReader(pdf).pages) >= 1
    for passwords, reason in ((Passwords(input_password="not the password"), Reason.PASSWORD_WRONG),
                              (Passwords(), Reason.PASSWORD_REQUIRED)):
        with pytest.raises(WorkerError) as caught:
            exporter.export_one(source, named if passwords.input_password else PdfOptions(), passwords)
        assert caught.value.reason is reason, caught.value
    assert exporter.pool.ready()  # a wrong password never costs an office
