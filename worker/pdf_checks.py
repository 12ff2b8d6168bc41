"""Verified, not trusted: after export, check that the PDF carries what the options asked for.

This is a STRUCTURAL check, not a full PDF/A or PDF/UA validator (veraPDF is one): it proves the markers and
the properties each option promises are present (XMP pdfaid part and conformance, an output intent, embedded
fonts, no encryption; a structure tree and the pdfuaid mark; the page count; the passwords and permission
bits; the watermark text; image resolution, compression and JPEG quality), read with pikepdf (qpdf) and pypdf's text
extraction, never by hand. It returns named failures from a closed set; conversion.convert_file turns a failing
PDF into VerificationFailed (a permanent failure record naming what failed), never a silently non-compliant file.
Only what was asked is checked: a push without options costs nothing here.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pikepdf
from PIL import Image
from pypdf import PdfReader

from worker.options import DEFAULT, Passwords, PdfOptions

PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"
PDFUAID = "{http://www.aiim.org/pdfua/ns/id/}"
# Level A (accessible) includes every level B requirement; LibreOffice 7.4 marks its PDF/A-1 output "1A"
# because it forces tagging there (measured), so an asked "1b" is met by "A" too.
SATISFIES = {"b": ("b", "a")}
DPI_TOLERANCE = 1.02  # rounding of pixel counts and placement sizes


class Failure(StrEnum):
    """Why a PDF does not match its options; the value is the metric label and the failure record's detail."""

    UNREADABLE = "pdf_unreadable"
    PDFA_METADATA_MISSING = "pdfa_metadata_missing"
    PDFA_LEVEL_MISMATCH = "pdfa_level_mismatch"
    PDFA_OUTPUT_INTENT_MISSING = "pdfa_output_intent_missing"
    PDFA_ENCRYPTED = "pdfa_encrypted"
    FONT_NOT_EMBEDDED = "font_not_embedded"
    PDFUA_STRUCTURE_MISSING = "pdfua_structure_missing"
    PDFUA_NOT_MARKED = "pdfua_not_marked"
    PDFUA_METADATA_MISSING = "pdfua_metadata_missing"
    PAGE_COUNT_MISMATCH = "page_count_mismatch"
    ENCRYPTION_MISSING = "encryption_missing"
    OPENS_WITHOUT_PASSWORD = "opens_without_password"
    PASSWORD_REJECTED = "password_rejected"
    OWNER_PASSWORD_REJECTED = "owner_password_rejected"
    PERMISSIONS_MISMATCH = "permissions_mismatch"
    WATERMARK_MISSING = "watermark_missing"
    BOOKMARKS_PRESENT = "bookmarks_present"
    FORM_FIELDS_PRESENT = "form_fields_present"
    LOSSY_IMAGE = "lossy_image"
    IMAGE_RESOLUTION_EXCEEDED = "image_resolution_exceeded"
    IMAGE_QUALITY_MISMATCH = "image_quality_mismatch"


@dataclass(frozen=True)
class CheckFailure:
    reason: Failure
    detail: str


# pikepdf Permissions fields expected for each LibreOffice "Changes" level, measured on LibreOffice 7.4.
CHANGES_GRANT = {
    "none": frozenset[str](),
    "assemble": frozenset({"modify_assembly"}),
    "forms": frozenset({"modify_form"}),
    "comments": frozenset({"modify_annotation"}),
    "any": frozenset({"modify_annotation", "modify_form", "modify_other"}),
}
PRINT_GRANT = {"none": frozenset[str](), "lowres": frozenset({"print_lowres"}),
               "full": frozenset({"print_lowres", "print_highres"})}
# The JPEG standard's luminance quantization table (ITU T.81 Annex K); libjpeg, which LibreOffice uses, scales it
# by quality. The sum of the scaled table identifies the quality without caring about the table's scan order.
JPEG_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                  14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_PERMISSION_FIELDS = ("print_lowres", "print_highres", "modify_assembly", "modify_form", "modify_annotation",
                      "modify_other", "extract")


def expected_permissions(options: PdfOptions) -> dict[str, bool]:
    """The permission bits an owner-password PDF must carry for these options."""
    granted = PRINT_GRANT[options.printing] | CHANGES_GRANT[options.changes]
    if options.copying:
        granted |= {"extract"}
    return {name: name in granted for name in _PERMISSION_FIELDS}


def check_pdf(
    path: Path, options: PdfOptions, passwords: Passwords | None = None, *, expected_pages: int | None = None
) -> list[CheckFailure]:
    """Every way `path` fails to match `options`; [] when it matches. `expected_pages`, when the caller knows it
    (pages selected from a known source count, or the sheet count with single-page-sheets), makes the page
    check exact; otherwise a page range only bounds the count from above.
    """
    passwords = passwords or Passwords()
    failures: list[CheckFailure] = []
    if passwords.open_password or passwords.owner_password:
        failures += _check_encryption(path, options, passwords)
    opened = _open(path, passwords)
    if isinstance(opened, CheckFailure):
        return [*failures, opened]
    pdf, key = opened
    with pdf:
        if options.pdfa:
            failures += _check_pdfa(pdf, options.pdfa)
        if options.pdfua:
            failures += _check_pdfua(pdf)
        if options.pdfa or options.pdfua:  # both standards require every font program embedded
            failures += [CheckFailure(Failure.FONT_NOT_EMBEDDED, name) for name in sorted(_unembedded_fonts(pdf))]
        failures += _check_page_count(pdf, options, expected_pages)
        if not options.bookmarks and "/Outlines" in pdf.Root and "/First" in pdf.Root.Outlines:
            failures.append(CheckFailure(Failure.BOOKMARKS_PRESENT, "the PDF has an outline"))
        if not options.form_fields and "/AcroForm" in pdf.Root and len(pdf.Root.AcroForm.get("/Fields", [])):
            failures.append(CheckFailure(Failure.FORM_FIELDS_PRESENT, "the PDF has AcroForm fields"))
        if options.lossless or options.max_dpi or options.quality != DEFAULT.quality:
            failures += _check_images(pdf, options)
    if options.watermark:
        failures += _check_watermark(path, options.watermark, key)
    return failures


def _open(path: Path, passwords: Passwords) -> tuple[pikepdf.Pdf, str] | CheckFailure:
    """The PDF opened with the first password that works (none, owner, open), for the structural checks."""
    why = "no password opens it"
    for key in dict.fromkeys(("", passwords.owner_password or "", passwords.open_password or "")):
        try:
            return pikepdf.open(path, password=key), key
        except pikepdf.PasswordError:
            continue
        except (pikepdf.PdfError, OSError) as exc:
            why = str(exc)[:200]
            break
    return CheckFailure(Failure.UNREADABLE, why)


def _check_encryption(path: Path, options: PdfOptions, passwords: Passwords) -> list[CheckFailure]:
    failures: list[CheckFailure] = []
    try:
        with pikepdf.open(path) as plain:  # no password: must fail when an open password was asked
            if not plain.is_encrypted:
                return [CheckFailure(Failure.ENCRYPTION_MISSING, "the PDF is not encrypted")]
            if passwords.open_password:
                failures.append(CheckFailure(Failure.OPENS_WITHOUT_PASSWORD, "opens with no password"))
            user_allow = plain.allow
    except pikepdf.PasswordError:
        user_allow = None
    if passwords.open_password:
        try:
            with pikepdf.open(path, password=passwords.open_password) as pdf:
                user_allow = pdf.allow
        except pikepdf.PasswordError:
            failures.append(CheckFailure(Failure.PASSWORD_REJECTED, "the open password does not open it"))
    if passwords.owner_password:
        try:
            with pikepdf.open(path, password=passwords.owner_password) as pdf:
                if not pdf.owner_password_matched:
                    failures.append(CheckFailure(Failure.OWNER_PASSWORD_REJECTED, "opens, but not as owner"))
        except pikepdf.PasswordError:
            failures.append(CheckFailure(Failure.OWNER_PASSWORD_REJECTED, "the owner password does not open it"))
        if user_allow is not None:
            want = expected_permissions(options)
            have = {name: bool(getattr(user_allow, name)) for name in want}
            wrong = sorted(name for name in want if want[name] != have[name])
            if wrong:
                detail = ", ".join(f"{n}={have[n]} (asked {want[n]})" for n in wrong)
                failures.append(CheckFailure(Failure.PERMISSIONS_MISMATCH, detail))
    return failures


def _check_pdfa(pdf: pikepdf.Pdf, level: str) -> list[CheckFailure]:
    failures: list[CheckFailure] = []
    meta = pdf.open_metadata()
    part, conformance = meta.get(PDFAID + "part"), meta.get(PDFAID + "conformance")
    if part is None or conformance is None:
        failures.append(CheckFailure(Failure.PDFA_METADATA_MISSING, "no XMP pdfaid:part and conformance"))
    elif str(part) != level[0] or str(conformance).lower() not in SATISFIES[level[1]]:
        failures.append(CheckFailure(Failure.PDFA_LEVEL_MISMATCH, f"PDF/A-{part}{conformance}, asked {level}"))
    intents = pdf.Root.get("/OutputIntents")
    if not intents or not any(i.get("/S") == pikepdf.Name.GTS_PDFA1 for i in intents):
        failures.append(CheckFailure(Failure.PDFA_OUTPUT_INTENT_MISSING, "no GTS_PDFA1 output intent"))
    if pdf.is_encrypted:
        failures.append(CheckFailure(Failure.PDFA_ENCRYPTED, "PDF/A must not be encrypted"))
    return failures


def _check_pdfua(pdf: pikepdf.Pdf) -> list[CheckFailure]:
    failures: list[CheckFailure] = []
    if "/StructTreeRoot" not in pdf.Root:
        failures.append(CheckFailure(Failure.PDFUA_STRUCTURE_MISSING, "no StructTreeRoot"))
    mark = pdf.Root.get("/MarkInfo")
    if mark is None or not bool(mark.get("/Marked", False)):
        failures.append(CheckFailure(Failure.PDFUA_NOT_MARKED, "MarkInfo/Marked is not true"))
    if pdf.open_metadata().get(PDFUAID + "part") is None:
        failures.append(CheckFailure(Failure.PDFUA_METADATA_MISSING, "no XMP pdfuaid:part"))
    return failures


def _check_page_count(pdf: pikepdf.Pdf, options: PdfOptions, expected: int | None) -> list[CheckFailure]:
    count = len(pdf.pages)
    selected = options.page_set
    if expected is not None and (selected is not None or options.single_page_sheets) and count != expected:
        return [CheckFailure(Failure.PAGE_COUNT_MISMATCH, f"{count} pages, expected {expected}")]
    if selected is not None and not 0 < count <= len(selected):
        return [CheckFailure(Failure.PAGE_COUNT_MISMATCH, f"{count} pages for range {options.pages}")]
    return []


def _unembedded_fonts(pdf: pikepdf.Pdf) -> set[str]:
    """Base names of fonts used on any page (or in its form XObjects) without an embedded font program."""
    missing: set[str] = set()
    for font in _fonts(pdf):
        if font.get("/Subtype") == pikepdf.Name.Type3:
            continue  # glyphs are content streams inside the font: embedded by construction
        target = font.DescendantFonts[0] if font.get("/Subtype") == pikepdf.Name.Type0 else font
        descriptor = target.get("/FontDescriptor")
        if descriptor is None or not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
            missing.add(str(font.get("/BaseFont", "?")))
    return missing


def _fonts(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Object]:
    seen: set[tuple[int, int]] = set()
    stack = [page.obj.get("/Resources") for page in pdf.pages]
    while stack:
        resources = stack.pop()
        if not isinstance(resources, pikepdf.Dictionary):
            continue
        for font in resources.get("/Font", pikepdf.Dictionary()).values():
            if font.objgen not in seen or font.objgen == (0, 0):
                seen.add(font.objgen)
                yield font
        for xobject in resources.get("/XObject", pikepdf.Dictionary()).values():
            if xobject.get("/Subtype") == pikepdf.Name.Form and xobject.objgen not in seen:
                seen.add(xobject.objgen)
                stack.append(xobject.get("/Resources"))


def _check_images(pdf: pikepdf.Pdf, options: PdfOptions) -> list[CheckFailure]:
    failures: list[CheckFailure] = []
    for number, page in enumerate(pdf.pages, 1):
        for image, width_pt, height_pt in _placed_images(page.obj, pikepdf.Matrix()):
            filters = image.get("/Filter")
            names = [filters] if isinstance(filters, pikepdf.Name) else list(filters or [])
            if options.lossless and pikepdf.Name.DCTDecode in names:
                failures.append(CheckFailure(Failure.LOSSY_IMAGE, f"page {number}: a JPEG image"))
            if options.quality != DEFAULT.quality and names == [pikepdf.Name.DCTDecode]:
                found = _jpeg_quality(image.read_raw_bytes())
                if found is not None and found != options.quality:
                    failures.append(CheckFailure(Failure.IMAGE_QUALITY_MISMATCH,
                                                 f"page {number}: JPEG quality {found}, asked {options.quality}"))
            if options.max_dpi and width_pt > 0 and height_pt > 0:
                dpi = max(int(image.Width) * 72 / width_pt, int(image.Height) * 72 / height_pt)
                if dpi > options.max_dpi * DPI_TOLERANCE:
                    failures.append(CheckFailure(Failure.IMAGE_RESOLUTION_EXCEEDED,
                                                 f"page {number}: {dpi:.0f} dpi, asked at most {options.max_dpi}"))
    return failures


def jpeg_table_sum(quality: int) -> int:
    """Sum of libjpeg's luminance table at `quality` (jpeg_quality_scaling; entries kept 1-32767, not baseline)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(max((v * scale + 50) // 100, 1), 32767) for v in JPEG_LUMINANCE)


_QUALITY_BY_SUM = {jpeg_table_sum(q): q for q in range(1, 101)}  # 100 distinct sums (tested)


def _jpeg_quality(data: bytes) -> int | None:
    """The libjpeg quality a JPEG was written with, or None if its table is not a scaled standard table."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            tables = getattr(im, "quantization", None)
    except (OSError, ValueError):
        return None
    if not tables or 0 not in tables:
        return None
    return _QUALITY_BY_SUM.get(sum(tables[0]))


def _placed_images(
    owner: pikepdf.Object, ctm: pikepdf.Matrix, depth: int = 0
) -> Iterator[tuple[pikepdf.Object, float, float]]:
    """(image, placed width pt, placed height pt) for every image drawn by `owner`'s content, forms included."""
    xobjects = owner.get("/Resources", pikepdf.Dictionary()).get("/XObject", pikepdf.Dictionary())
    stack: list[pikepdf.Matrix] = []
    for instruction in pikepdf.parse_content_stream(owner):
        if not isinstance(instruction, pikepdf.ContentStreamInstruction):
            continue  # an inline image: tiny by definition, never resampled by the export
        operands, op = instruction.operands, str(instruction.operator)
        if op == "q":
            stack.append(ctm)
        elif op == "Q" and stack:
            ctm = stack.pop()
        elif op == "cm":
            ctm = pikepdf.Matrix(*[float(x) for x in operands]) @ ctm
        elif op == "Do":
            xobject = xobjects.get(str(operands[0]))
            if xobject is None:
                continue
            if xobject.get("/Subtype") == pikepdf.Name.Image:
                yield xobject, math.hypot(ctm.a, ctm.b), math.hypot(ctm.c, ctm.d)
            elif xobject.get("/Subtype") == pikepdf.Name.Form and depth < 8:
                matrix = pikepdf.Matrix(xobject.get("/Matrix", pikepdf.Array([1, 0, 0, 1, 0, 0])))
                yield from _placed_images(xobject, matrix @ ctm, depth + 1)


def _check_watermark(path: Path, text: str, password: str) -> list[CheckFailure]:
    reader = PdfReader(path)
    if reader.is_encrypted:
        reader.decrypt(password)
    wanted = " ".join(text.split())
    missing = [n for n, page in enumerate(reader.pages, 1) if wanted not in " ".join(page.extract_text().split())]
    if missing:
        return [CheckFailure(Failure.WATERMARK_MISSING, f"not on page(s) {', '.join(map(str, missing[:10]))}")]
    return []
