"""Decide what an upload really is from its bytes, so LibreOffice only loads known formats by named filters.

Only headers, the zip central directory and bounded heads of small parts are read: the decision stays cheap
even for a hostile 1 GB file, and nothing here runs LibreOffice or touches the network.
"""

from __future__ import annotations

import codecs
import io
import itertools
import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote
from xml.etree import ElementTree

import msoffcrypto
import olefile

from worker import xml_guard
from worker.errors import Reason, WorkerError
from worker.formats import FORMATS, Family, unsupported

__all__ = ["Family", "Sniffed", "sniff"]

_HEAD_BYTES = 64 * 2**10  # what we read from the start of every file
_XML_PROLOG_BYTES = 8 * 2**10  # an index part's root element must start within this many bytes
_SMALL_PART_BYTES = 4 * 2**20  # [Content_Types].xml, .rels and manifest.xml are read whole up to this size
_MAX_CENTRAL_DIRECTORY_BYTES = 64 * 2**20
_WHITESPACE_SCAN_BYTES = 64 * 2**20  # how far we look for content in a file that starts with whitespace
_BOMB_RATIO = 250  # deflate tops out near 1032:1; real office parts stay far below 100:1
_BOMB_RATIO_MIN_BYTES = 16 * 2**20  # small parts may compress absurdly well without harming anyone
_DEFAULT_PASSWORD = "VelvetSweatshop"  # Excel's built-in password; Excel and LibreOffice open such files silently
_MAX_SPIN_COUNT = 100_000  # Office's own value; a larger, attacker-chosen count would make the password check slow
_MAX_DECRYPT_BYTES = 64 * 2**20

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_TEXT_KINDS = ("txt", "csv")  # loaded by the text filters: LibreOffice never parses them as markup
_XML_PART_SUFFIXES = (".xml", ".rels", ".vml", ".svg")


@dataclass(frozen=True)
class Sniffed:
    """What a file really is and how LibreOffice must load it."""

    kind: str
    family: Family
    import_filter: str
    extension: str
    encrypted: bool = False  # passed only because a password was given; the office's load decides the rest


_OOXML_MAIN_TYPES: dict[str, str] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.ms-word.document.macroenabled.main+xml": "docm",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": "dotx",
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": "dotm",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": "xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": "xlsm",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": "xltx",
    "application/vnd.ms-excel.template.macroenabled.main+xml": "xltm",
    "application/vnd.ms-excel.sheet.binary.macroenabled.main": "xlsb",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": "pptm",
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": "ppsx",
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": "ppsm",
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml": "potx",
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": "potm",
    "application/vnd.ms-visio.drawing.main+xml": "vsdx",
    "application/vnd.ms-visio.drawing.macroenabled.main+xml": "vsdm",
}

_ODF_MIMETYPES: dict[str, str] = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.text-template": "ott",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ots",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.presentation-template": "otp",
    "application/vnd.oasis.opendocument.graphics": "odg",
    "application/vnd.oasis.opendocument.graphics-template": "otg",
    "application/vnd.sun.xml.writer": "sxw",
    "application/vnd.sun.xml.calc": "sxc",
    "application/vnd.sun.xml.impress": "sxi",
    "application/vnd.sun.xml.draw": "sxd",
}

_FLAT_ODF_MIMETYPES: dict[str, str] = {
    "application/vnd.oasis.opendocument.text": "fodt",
    "application/vnd.oasis.opendocument.spreadsheet": "fods",
    "application/vnd.oasis.opendocument.presentation": "fodp",
    "application/vnd.oasis.opendocument.graphics": "fodg",
}

# Visio's package relationship names its main part with its own type instead of officeDocument.
_OFFICE_DOCUMENT_REL = re.compile(r"(/relationships/officeDocument|/visio/2010/relationships/document)$")

_MSG_ENCRYPTED = "the file is an encrypted Office document; remove the password and upload again"
_MSG_PASSWORD_REQUIRED = ("the file is password-protected; name the secret holding its password with the "
                          "docworker-password-secret metadata key (docs/options.md), or remove the password and "
                          "upload again")
_MSG_PASSWORD_WRONG = ("the password named by docworker-password-secret does not open the file; check the secret's "
                       "value")
_ADVICE_RESAVE = "save it again from the application that made it and upload again"
_ADVICE_BOMB = "office applications never write files like this; upload the document as its application saved it"
_MSG_DAMAGED = "the file is damaged and cannot be read; " + _ADVICE_RESAVE


class Encrypted(WorkerError):
    """An encrypted input. `kind` is set when LibreOffice opens it given its password (reason password_required);
    "ooxml" stands for an encrypted OOXML package, whose real kind only its decrypted content tells.
    """

    def __init__(self, kind: str | None, message: str = _MSG_ENCRYPTED) -> None:
        if kind is None:
            super().__init__(Reason.ENCRYPTED, message)
        else:
            super().__init__(Reason.PASSWORD_REQUIRED, _MSG_PASSWORD_REQUIRED)
        self.kind = kind


def sniff(
    path: Path,
    name_hint: str = "",
    *,
    max_uncompressed_bytes: int = 512 * 2**20,
    max_entries: int = 10_000,
    password: str | None = None,
) -> Sniffed:
    """Identify `path` from its content, or raise WorkerError saying why LibreOffice must never see it.

    With `password`, an encrypted input LibreOffice can open passes: an OOXML package is decrypted here (so a
    wrong password is `password_wrong` before any office, and its content is vetted like any other), an ODF or
    legacy binary file passes as it is and the office's load decides.
    """
    try:
        return _sniff_plain(path, name_hint, max_uncompressed_bytes, max_entries)
    except Encrypted as exc:
        if password is None or exc.kind is None:
            raise
        if exc.kind != "ooxml":
            return replace(_sniffed(exc.kind), encrypted=True)
        with path.open("rb") as fp:
            package = _decrypt_ooxml(fp, password)
        size = package.seek(0, io.SEEK_END)
        package.seek(0)
        return replace(_sniff_zip(package, size, max_uncompressed_bytes, max_entries), encrypted=True)


def _sniff_plain(path: Path, name_hint: str, max_uncompressed_bytes: int, max_entries: int) -> Sniffed:
    try:
        with path.open("rb") as fp:
            size = fp.seek(0, io.SEEK_END)
            fp.seek(0)
            head = fp.read(_HEAD_BYTES)
            if size == 0:
                raise WorkerError(
                    Reason.EMPTY,
                    "the file is empty; upload the document again (the upload may have been cut short)",
                )
            _refuse_if_blank(fp, head, size)
            if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
                return _sniff_zip(fp, size, max_uncompressed_bytes, max_entries)
            if head.startswith(_OLE_MAGIC):
                return _sniff_ole(fp, max_uncompressed_bytes, max_entries)
        sniffed = _sniff_head(head, size, name_hint)
        _refuse_hostile_stream(path, sniffed, head)
    except OSError as exc:
        # Only a file system error reaches here; parsers translate their own OSErrors into CORRUPT.
        raise WorkerError(Reason.CORRUPT, "the file could not be read; upload it again") from exc
    return sniffed


def _refuse_if_blank(fp: BinaryIO, head: bytes, size: int) -> None:
    """Refuse a file holding nothing but whitespace, scanning past the head only while it stays blank."""
    if head.removeprefix(codecs.BOM_UTF8).strip():
        return
    seen = len(head)
    while seen < size:
        if seen >= _WHITESPACE_SCAN_BYTES:
            raise WorkerError(
                Reason.UNSUPPORTED_TYPE,
                "the file starts with a huge run of blank space; " + _ADVICE_RESAVE,
            )
        chunk = fp.read(2**20)
        if not chunk or chunk.strip():
            return
        seen += len(chunk)
    raise WorkerError(Reason.EMPTY, "the file contains only blank space; upload the document with its content")


def _sniff_head(head: bytes, size: int, name_hint: str) -> Sniffed:
    """Recognise single-stream formats (RTF, legacy binaries, flat XML, plain text) and name non-documents."""
    body = head.removeprefix(codecs.BOM_UTF8)
    if body.startswith(b"{\\rtf"):
        return _sniffed("rtf")
    binary = _sniff_binary_head(head)
    if binary is not None:
        return binary
    if b"%PDF-" in head[:1024]:
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is already a PDF; it needs no conversion: use it as it is")
    text = _decode_text(head, complete=size <= len(head))
    if text is not None and text.lstrip().startswith("<"):
        sniffed = _sniff_flat_xml(text, complete=size <= len(head))
        if sniffed is not None:
            return sniffed
    suffix = Path(name_hint).suffix.lower()
    if text is None:
        for magics, description in _NON_DOCUMENTS:
            if head.startswith(magics):
                raise unsupported(description, _ADVICE_NON_DOCUMENT)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            raise unsupported("an image (WebP), not an office document", _ADVICE_NON_DOCUMENT)
        if _looks_like_wordperfect_42(head, complete=size <= len(head)):
            return _sniffed("wpd")
        raise WorkerError(
            Reason.UNSUPPORTED_TYPE,
            "the file is not a document type we can convert; " + _ADVICE_UNKNOWN,
        )
    if _DIF_HEADER.match(text):
        return _sniffed("dif")
    if suffix in _TEXT_NAMES:
        return _sniffed(_TEXT_NAMES[suffix])
    raise WorkerError(
        Reason.UNSUPPORTED_TYPE,
        "the file is plain text; plain text is only converted when its name ends in .txt or .csv:"
        " rename it and upload again",
    )


def _sniff_binary_head(head: bytes) -> Sniffed | None:
    """Recognise the legacy single-stream binaries LibreOffice imports by their fixed headers."""
    if head.startswith(b"\xffWPC") and len(head) >= 16:
        # WordPerfect 5-X prefix: product 1 (WordPerfect), file type 10 (document); bytes 12-13 an encryption key.
        if head[9] != 10:
            raise unsupported("a WordPerfect file that is not a document (a graphic, macro or printer file)")
        if head[12:14] != b"\x00\x00":
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
        return _sniffed("wpd")
    if head.startswith(b"\x00\x00\x02\x00") and head[4:6] in (b"\x04\x04", b"\x05\x04", b"\x06\x04"):
        return _sniffed("wk1")  # BOF record, Lotus 1-2-3 release 1-2 (WKS/WK1)
    if head.startswith(b"\x00\x00\x1a\x00") and head[5:6] == b"\x10":
        # BOF record of 1-2-3 release 3 and later: the file version picks WK3, WK4 or 1-2-3 97 (.123).
        return _sniffed({0: "wk3", 1: "wk4", 2: "wk4"}.get(head[4], "123"))
    # BOF record of a BIFF2, BIFF3 or BIFF4 file (Excel 2.x to 4.0, outside any compound file) whose document
    # type is a worksheet (0x10) or a BIFF4 workbook (0x100).
    if (
        head[:2] in (b"\x09\x00", b"\x09\x02", b"\x09\x04")
        and head[2:4] in (b"\x04\x00", b"\x06\x00")
        and head[6:8] in (b"\x10\x00", b"\x00\x01")
    ):
        return _sniffed("xls4")
    if head[:2] in (b"\x31\xbe", b"\x32\xbe") and head[2:6] == b"\x00\x00\x00\xab":
        return _sniffed("wri")  # Windows Write (wIdent, wTool 0xAB00)
    return None


def _looks_like_wordperfect_42(head: bytes, *, complete: bool) -> bool:
    """WordPerfect 4.2 has no header: accept only bytes whose function groups are all closed as the format says.

    Codes 0xC0-0xFE open a group that the same byte closes, at a fixed distance or (variable groups) later;
    0xFF never appears. Random binary data breaks these rules within a few hundred bytes.
    """
    groups = 0
    at = 0
    end = len(head)
    while at < end:
        code = head[at]
        at += 1
        if code < 0xC0:
            continue
        if code == 0xFF:
            return False
        size = _WP42_GROUP_SIZES[code - 0xC0]
        if size < 0:
            close = head.find(bytes([code]), at)
            if close < 0:
                return not complete and groups > 0
            at = close + 1
        else:
            if at + size - 2 >= end:
                return not complete and groups > 0
            if head[at + size - 2] != code:
                return False
            at += size - 1
        groups += 1
    return groups > 0


# Length of each WordPerfect 4.2 function group 0xC0-0xFE, codes included; -1 where the length varies.
_WP42_GROUP_SIZES = (
    6, 4, 3, 5, 5, 6, 4, 6, 8, 42, 3, 6, 4, 3, 4, 3,
    6, -1, -1, 4, 4, 4, 6, -1, 4, 4, 4, 4, -1, 24, 4, -1,
    4, 3, -1, 150, 6, 23, 11, 3, 3, -1, -1, -1, 4, -1, 44, 18,
    6, 106, -1, 100, 4, -1, 5, -1, -1, -1, -1, -1, -1, -1, -1,
)
# Data Interchange Format: a TABLE header item, then its vector/value line "0,1".
_DIF_HEADER = re.compile(r'\ATABLE\r?\n0,1\r?\n"')
# Plain text converts when its name says it is text. NASA's Directory Interchange Format (.dif) is text too:
# stock LibreOffice prints it as plain text, and so do we.
_TEXT_NAMES = {".txt": "txt", ".csv": "csv", ".dif": "txt"}
_NON_DOCUMENTS: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"\x89PNG\r\n\x1a\n",), "an image (PNG), not an office document"),
    ((b"\xff\xd8\xff",), "an image (JPEG), not an office document"),
    ((b"GIF87a", b"GIF89a"), "an image (GIF), not an office document"),
    ((b"II*\x00", b"MM\x00*"), "an image (TIFF), not an office document"),
    ((b"\x1f\x8b",), "a gzip archive, not an office document"),
    ((b"7z\xbc\xaf\x27\x1c",), "a 7-Zip archive, not an office document"),
    ((b"Rar!\x1a\x07",), "a RAR archive, not an office document"),
    ((b"MZ",), "a Windows program, not an office document"),
    ((b"\x7fELF",), "a program, not an office document"),
)
_ADVICE_NON_DOCUMENT = "upload the office document itself (.docx, .xlsx, .pptx, .odt, ...)"
_ADVICE_ARCHIVE = "unpack it and upload the documents inside one by one"
_ADVICE_UNKNOWN = "save it as .docx, .xlsx, .pptx or OpenDocument in the application that made it, and upload again"


def _decode_text(head: bytes, *, complete: bool) -> str | None:
    """Decode the head as text (UTF-8/16 with BOM, UTF-8, or an 8-bit code page), or None if it is binary."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head[len(bom) :], final=complete)
            except UnicodeDecodeError:
                return None
            return None if "\x00" in text else text
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        pass
    # Legacy 8-bit text (cp1252, latin-1, ...): accept only if no control characters besides layout ones.
    if re.search(rb"[\x01-\x08\x0e-\x19\x1b-\x1f\x7f]", head):
        return None
    return head.decode("latin-1")


def _sniff_flat_xml(text: str, *, complete: bool) -> Sniffed | None:
    """Recognise flat ODF and Word 2003 XML by their root element; None for any other XML."""
    root = _xml_root(text, complete=complete, what="the file")
    if root is None:
        return None
    namespaces = set(root.attributes.values())
    if root.local_name == "document" and "urn:oasis:names:tc:opendocument:xmlns:office:1.0" in namespaces:
        mime = next((v for k, v in root.attributes.items() if k.rpartition(":")[2] == "mimetype"), "")
        kind = _FLAT_ODF_MIMETYPES.get(mime.strip())
        if kind is None:
            raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is a flat OpenDocument type we cannot convert")
        return _sniffed(kind)
    if root.local_name == "wordDocument" and "http://schemas.microsoft.com/office/word/2003/wordml" in namespaces:
        return _sniffed("word2003xml")
    if root.local_name == "package" and "http://schemas.microsoft.com/office/2006/xmlPackage" in namespaces:
        raise WorkerError(
            Reason.UNSUPPORTED_TYPE,
            "the file is a Flat OPC XML package, which cannot be converted; save it as .docx",
        )
    return None


def _xml_root(text: str | bytes, *, complete: bool, what: str) -> xml_guard.XmlRoot | None:
    """The root element of a head (decoded text, or raw bytes in any encoding) that may be XML, vetting its
    prolog (None if it is not XML at all).

    OOXML and ODF never need a DTD: one that defines entities is the billion-laughs family, and one that
    points at a URL would make a parser reach the network, so both are refused as hostile.
    """
    try:
        return xml_guard.read_root(text, what, complete=complete)
    except WorkerError as exc:
        if exc.reason is Reason.HOSTILE:
            raise
        return None  # not well-formed: not XML, so not a flat document (it may still be plain text)


def _refuse_hostile_stream(path: Path, sniffed: Sniffed, head: bytes) -> None:
    """Parse a whole single-stream document the way LibreOffice will (flat XML), or scan its nesting (RTF)."""
    if sniffed.kind in _TEXT_KINDS:
        return  # loaded by the text filter: LibreOffice never parses it as markup
    if sniffed.kind == "rtf":
        with path.open("rb") as fp:
            xml_guard.check_rtf(iter(lambda: fp.read(2**20), b""), "the file")
    elif xml_guard.looks_like_xml(head):
        with path.open("rb") as fp:
            xml_guard.check_xml(fp.read, "the file")


# --- zip containers (OOXML, ODF) ----------------------------------------------------------------------------


def _sniff_zip(fp: BinaryIO, size: int, max_uncompressed_bytes: int, max_entries: int) -> Sniffed:
    """Identify an OOXML or ODF package from its central directory and a few small parts."""
    entry_count, directory_size = _zip_directory_size(fp, size)
    if entry_count > max_entries:
        raise WorkerError(
            Reason.ZIP_BOMB,
            f"the file holds {entry_count} parts, more than the {max_entries} allowed; " + _ADVICE_BOMB,
        )
    if directory_size > _MAX_CENTRAL_DIRECTORY_BYTES:
        raise WorkerError(Reason.ZIP_BOMB, "the file's table of contents is abnormally large; " + _ADVICE_BOMB)
    archive, infos = _open_package(fp, size, max_uncompressed_bytes, max_entries)
    with archive:
        if any(info.flag_bits & 0x1 for info in infos):
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
        names = {info.filename for info in infos}
        if "[Content_Types].xml" in names:
            _refuse_hostile_parts(archive, infos)
            return _sniff_ooxml(archive, names)
        if "mimetype" in names or "META-INF/manifest.xml" in names:
            return _sniff_odf(archive, infos, names)
        if any(name.startswith(("word/", "xl/", "ppt/", "_rels/")) for name in names):
            raise WorkerError(
                Reason.CORRUPT,
                "the file looks like an Office document but lacks [Content_Types].xml;"
                " save it again from the application that made it and upload again",
            )
        iwork = _sniff_iwork(archive, names, (max_uncompressed_bytes, max_entries))
        if iwork is not None:
            return iwork
        raise unsupported("a plain zip archive, not an office document", _ADVICE_ARCHIVE)


# iWork '09 keeps its document in one XML part; the root element names the application.
_IWORK_INDEX_PARTS = ("index.xml", "index.xml.gz", "index.apxl", "index.apxl.gz")
_IWORK_ROOTS = {
    ("document", "http://developer.apple.com/namespaces/sl"): "pages",
    ("document", "http://developer.apple.com/namespaces/ls"): "numbers",
    ("presentation", "http://developer.apple.com/namespaces/keynote2"): "key",
}


def _sniff_iwork(archive: zipfile.ZipFile, names: set[str], limits: tuple[int, int] | None) -> Sniffed | None:
    """Identify an Apple Pages, Numbers or Keynote package by its index part; None for any other zip.

    `limits` (the bomb limits) allow one level of nesting: a zipped bundle whose Index.zip is the package.
    """
    if "Index/Document.iwa" in names:
        # iWork 2013 and later: the first archived message says Pages (10000) or Keynote/Numbers (1); only
        # Keynote has slides. Pages files have a calculation engine too, so part names alone cannot tell.
        head = _read_part(archive, archive.getinfo("Index/Document.iwa"), 256)
        message_type = _iwa_first_message_type(head)
        if message_type == _IWA_PAGES_DOCUMENT:
            return _sniffed("pages")
        if message_type == _IWA_KEYNOTE_OR_NUMBERS_DOCUMENT:
            slides = any(name.startswith(("Index/Slide", "Index/MasterSlide")) for name in names)
            return _sniffed("key" if slides else "numbers")
        raise WorkerError(
            Reason.CORRUPT,
            "the file looks like an Apple iWork document but its Index/Document.iwa is not one;"
            " export it again from Pages, Numbers or Keynote (as .docx, .xlsx or .pptx) and upload again",
        )
    index = next((name for name in _IWORK_INDEX_PARTS if name in names), None)
    if index is None:
        bundle = next((name for name in names if _IWORK_BUNDLE_INDEX.match(name)), None)
        return None if bundle is None or limits is None else _sniff_iwork_bundle(archive, bundle, limits)
    if archive.getinfo(index).compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # iWork '09 writes a password-protected document's index with its own (encrypting) method.
        raise WorkerError(Reason.ENCRYPTED, "the file is a password-protected Apple iWork document; " + _NO_PASSWORD)
    _refuse_hostile_parts(archive, archive.infolist())
    if index.endswith(".gz"):
        head = _gunzip_head(archive, archive.getinfo(index), limits[0] if limits else _MAX_IWORK_INDEX_BYTES)
    else:
        head = _read_part(archive, archive.getinfo(index), _XML_PROLOG_BYTES)
    root = _xml_root(head, complete=len(head) < _XML_PROLOG_BYTES, what=f"the part {index}")
    if root is not None:
        for (local_name, namespace), kind in _IWORK_ROOTS.items():
            if root.local_name == local_name and namespace in root.attributes.values():
                return _sniffed(kind)
    raise WorkerError(
        Reason.CORRUPT,
        f"the file looks like an Apple iWork document but its {index} is not one;"
        " export it again from Pages, Numbers or Keynote (as .docx, .xlsx or .pptx) and upload again",
    )


def _gunzip_head(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_uncompressed_bytes: int) -> bytes:
    """The head of a gzipped part, after streaming through all of it: the zip's own checks only saw the gzip
    stream, and the office would inflate it whole, so a gzip bomb inside is refused here like a zip bomb."""
    inflate = zlib.decompressobj(wbits=31)
    head = b""
    total = 0
    limit = min(max_uncompressed_bytes, max(_BOMB_RATIO * info.compress_size, _BOMB_RATIO_MIN_BYTES))
    try:
        with archive.open(info) as part:
            while chunk := part.read(2**20):
                while chunk:
                    data = inflate.decompress(chunk, 2**20)
                    chunk = inflate.unconsumed_tail
                    total += len(data)
                    if len(head) < _XML_PROLOG_BYTES:
                        head += data[: _XML_PROLOG_BYTES - len(head)]
                    if total > limit:
                        raise WorkerError(
                            Reason.ZIP_BOMB,
                            f"the file's {info.filename} expands at an impossible ratio (a gzip bomb); " + _ADVICE_BOMB,
                        )
                if inflate.eof:
                    break
    except WorkerError:
        raise
    except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError...
        raise WorkerError(
            Reason.CORRUPT, f"the file is damaged and cannot be read (part {info.filename}); " + _ADVICE_RESAVE
        ) from exc
    return head


# A bundle zipped as a whole (Keynote 2018 and later "Presentation.key/Index.zip"): the package is the inner zip.
_IWORK_BUNDLE_INDEX = re.compile(r"[^/]+\.(?:key|pages|numbers)/Index\.zip")
_MAX_IWORK_INDEX_BYTES = 64 * 2**20  # Index.zip holds the document's protobuf parts only, never its media
_NO_PASSWORD = "remove the password and upload again"


def _sniff_iwork_bundle(archive: zipfile.ZipFile, name: str, limits: tuple[int, int]) -> Sniffed:
    """Identify the zip inside a zipped iWork bundle, with the same bomb checks as any upload."""
    info = archive.getinfo(name)
    if info.file_size > _MAX_IWORK_INDEX_BYTES:
        raise WorkerError(Reason.ZIP_BOMB, f"the file's {name} is abnormally large; " + _ADVICE_BOMB)
    inner = io.BytesIO(_read_part(archive, info, _MAX_IWORK_INDEX_BYTES))
    size = inner.seek(0, io.SEEK_END)
    inner.seek(0)
    entry_count, _ = _zip_directory_size(inner, size)
    max_uncompressed_bytes, max_entries = limits
    if entry_count > max_entries:
        raise WorkerError(Reason.ZIP_BOMB, f"the file's {name} holds more than {max_entries} parts; " + _ADVICE_BOMB)
    package, infos = _open_package(inner, size, max_uncompressed_bytes, max_entries)
    with package:
        found = _sniff_iwork(package, {i.filename for i in infos}, None)
    if found is None:
        raise WorkerError(
            Reason.CORRUPT,
            f"the file looks like an Apple iWork document but its {name} is not one;"
            " export it again from Pages, Numbers or Keynote (as .docx, .xlsx or .pptx) and upload again",
        )
    return found


_IWA_PAGES_DOCUMENT = 10000  # TP.DocumentArchive
_IWA_KEYNOTE_OR_NUMBERS_DOCUMENT = 1  # KN.DocumentArchive, TN.DocumentArchive


def _iwa_first_message_type(head: bytes) -> int | None:
    """The type of the first message in an .iwa part, from the literal that opens its first Snappy chunk.

    An .iwa part is chunks (a zero byte, a 3-byte length, raw Snappy data); the data starts with an ArchiveInfo
    (varint length, then protobuf: field 2 is a MessageInfo whose field 1 is the type). Writers begin the chunk
    with a literal run long enough to hold it; anything else is not a part we recognise (None).
    """
    try:
        if head[0] != 0:
            return None
        _, at = _varint(head, 4)  # the uncompressed length
        tag = head[at]
        at += 1
        if tag & 0x3:
            return None
        length = (tag >> 2) + 1
        if length > 60:  # the length itself follows in 1-4 bytes
            width = length - 60
            length = int.from_bytes(head[at : at + width], "little") + 1
            at += width
        literal = head[at : at + length]
        info_length, at = _varint(literal, 0)
        info = literal[at : at + info_length]
        at = 0
        while at < len(info):
            key, at = _varint(info, at)
            if key & 0x7 == 0:
                _, at = _varint(info, at)
            elif key & 0x7 == 2:
                size, at = _varint(info, at)
                if key >> 3 == 2:
                    message_key, inner = _varint(info, at)
                    return _varint(info, inner)[0] if message_key == 0x08 else None
                at += size
            else:
                return None
    except IndexError:
        return None
    return None


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A protobuf/Snappy base-128 varint at `at`, and the position after it (IndexError if it is cut off)."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 56:
            return value, at
        shift += 7


def _open_package(
    fp: BinaryIO, size: int, max_uncompressed_bytes: int, max_entries: int
) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open a zip whose end record was vetted and refuse it as a bomb before any part is read (closed if refused)."""
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, struct.error) as exc:
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc
    infos = archive.infolist()
    try:
        _refuse_bomb(infos, size, max_uncompressed_bytes, max_entries)
    except WorkerError:
        archive.close()
        raise
    return archive, infos


def _zip_directory_size(fp: BinaryIO, size: int) -> tuple[int, int]:
    """Read the entry count and directory size from the end record, before anything parses the directory."""
    tail_size = min(size, 22 + 0xFFFF)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(_EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < 22:
        raise WorkerError(
            Reason.CORRUPT,
            "the file is truncated or damaged (its zip directory is missing); upload it again",
        )
    entries, directory_size, directory_offset = struct.unpack("<10xHLL", tail[at : at + 20])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF or directory_offset == 0xFFFFFFFF:
        locator = tail[at - 20 : at] if at >= 20 else b""
        if not locator.startswith(b"PK\x06\x07"):
            raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED)
        (record_offset,) = struct.unpack("<8xQ4x", locator)
        fp.seek(record_offset)
        record = fp.read(56)
        if len(record) < 56 or not record.startswith(b"PK\x06\x06"):
            raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED)
        entries, directory_size = struct.unpack("<32xQQ8x", record)
    return int(entries), int(directory_size)


def _refuse_bomb(infos: list[zipfile.ZipInfo], size: int, max_uncompressed_bytes: int, max_entries: int) -> None:
    """Refuse archives whose declared sizes, ratios or overlapping entries mark them as zip bombs."""
    if len(infos) > max_entries:
        raise WorkerError(
            Reason.ZIP_BOMB,
            f"the file holds {len(infos)} parts, more than the {max_entries} allowed; " + _ADVICE_BOMB,
        )
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed_bytes:
        raise WorkerError(
            Reason.ZIP_BOMB,
            f"the file would expand to {total // 2**20} MiB,"
            f" more than the {max_uncompressed_bytes // 2**20} MiB allowed",
        )
    for info in infos:
        if info.file_size > _BOMB_RATIO_MIN_BYTES and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
            raise WorkerError(
                Reason.ZIP_BOMB,
                "the file is compressed at an impossible ratio (a zip bomb); " + _ADVICE_BOMB,
            )
        if info.header_offset + info.compress_size > size:
            raise WorkerError(
                Reason.CORRUPT,
                "the file is truncated or damaged (a part runs past its end); upload it again",
            )
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for before, after in itertools.pairwise(ordered):
        if after.header_offset < before.header_offset + 30 + before.compress_size:
            raise WorkerError(Reason.ZIP_BOMB, "the file's parts overlap each other (a zip bomb); " + _ADVICE_BOMB)


def _refuse_hostile_parts(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Parse every XML part, whatever its name or encoding, through the guard (see worker/xml_guard.py).

    A part is XML when the package says so ([Content_Types].xml for OOXML, the manifest for ODF), when its name
    says so, or when its first bytes do (a part LibreOffice reaches by a relationship is parsed whatever it is
    called); gzip-compressed parts (.svgz) are inflated first, since LibreOffice's graphic filter does the same.
    """
    declared = _declared_xml_parts(archive)
    for info in infos:
        if info.is_dir() or (info.filename in _VETTED_METADATA and archive.getinfo(info.filename) is info):
            continue  # a duplicate entry of the same name is still parsed: zip readers disagree on which wins
        what = f"the part {info.filename}"
        name = info.filename.lower()
        try:
            with archive.open(info) as part:
                head = part.read(64)
                said_xml = name in declared or name.endswith(_XML_PART_SUFFIXES)
                if said_xml or xml_guard.looks_like_xml(head):
                    xml_guard.check_xml(part.read, what, first=head, declared=said_xml)
                elif head.startswith(xml_guard.GZIP_MAGIC):
                    xml_guard.check_gzipped(part.read, what, first=head)
        except WorkerError:
            raise
        except Exception as exc:  # BadZipFile (bad CRC), zlib.error, EOFError, NotImplementedError...
            raise WorkerError(Reason.CORRUPT, f"the file is damaged and cannot be read (part {info.filename})") from exc


_VETTED_METADATA = ("[Content_Types].xml", "META-INF/manifest.xml")  # parsed by _declared_xml_parts already


def _declared_xml_parts(archive: zipfile.ZipFile) -> set[str]:
    """Lower-cased names of the parts the package's own metadata calls XML (vetted before being parsed)."""
    declared: set[str] = set()
    content_types = _read_small_part(archive, "[Content_Types].xml")
    if content_types is not None:
        xml_guard.check_xml(io.BytesIO(content_types).read, "the part [Content_Types].xml")
        xml_extensions = set()
        for element in _parse_xml(content_types, "[Content_Types].xml"):
            tag = element.tag.rsplit("}", 1)[-1]
            if not _is_xml_media_type(element.get("ContentType", "")):
                continue
            if tag == "Default":
                xml_extensions.add(element.get("Extension", "").lower())
            elif tag == "Override":
                declared.add(unquote(element.get("PartName", "")).lstrip("/").lower())
        declared.update(
            name.lower() for name in archive.namelist() if posixpath.splitext(name)[1][1:].lower() in xml_extensions
        )
    manifest = _read_small_part(archive, "META-INF/manifest.xml")
    if manifest is not None:
        xml_guard.check_xml(io.BytesIO(manifest).read, "the manifest")
        for element in _parse_xml(manifest, "META-INF/manifest.xml").iter():
            attributes = {key.rsplit("}", 1)[-1]: value for key, value in element.attrib.items()}
            if _is_xml_media_type(attributes.get("media-type", "")):
                declared.add(attributes.get("full-path", "").lower())
    return declared


def _is_xml_media_type(media_type: str) -> bool:
    """text/xml, application/xml, anything+xml (relationships, SVG, every OOXML part type)."""
    media_type = media_type.split(";", 1)[0].strip().lower()
    return media_type.endswith(("+xml", "/xml"))


def _read_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read at most `limit` bytes of a part; a bad CRC shows when the part is read to its end."""
    try:
        with archive.open(info) as part:
            return part.read(limit)
    except Exception as exc:  # BadZipFile (bad CRC), zlib.error, EOFError, NotImplementedError (odd compression)...
        raise WorkerError(
            Reason.CORRUPT,
            f"the file is damaged and cannot be read (part {info.filename}); " + _ADVICE_RESAVE,
        ) from exc


def _read_small_part(archive: zipfile.ZipFile, name: str) -> bytes | None:
    """Read a whole metadata part, or None if it is missing; one larger than any real one is damage."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    data = _read_part(archive, info, _SMALL_PART_BYTES + 1)
    if len(data) > _SMALL_PART_BYTES:
        raise WorkerError(Reason.CORRUPT, f"the file's {name} part is abnormally large; " + _ADVICE_RESAVE)
    return data


def _parse_xml(data: bytes, name: str) -> ElementTree.Element:
    """Parse a small metadata part that xml_guard has already vetted."""
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise WorkerError(Reason.CORRUPT, f"the file's {name} part is not well-formed XML; " + _ADVICE_RESAVE) from exc


def _sniff_ooxml(archive: zipfile.ZipFile, names: set[str]) -> Sniffed:
    """Identify an OOXML package by the content type of the main part its package relationship names."""
    content_types = _read_small_part(archive, "[Content_Types].xml") or b""
    defaults: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for element in _parse_xml(content_types, "[Content_Types].xml"):
        tag = element.tag.rsplit("}", 1)[-1]
        content_type = element.get("ContentType", "").strip().lower()
        if tag == "Default":
            defaults[element.get("Extension", "").lower()] = content_type
        elif tag == "Override":
            overrides[unquote(element.get("PartName", "")).lower()] = content_type
    rels = _read_small_part(archive, "_rels/.rels")
    if rels is None:
        raise WorkerError(
            Reason.CORRUPT,
            "the file is an incomplete Office document (no package relationships); " + _ADVICE_RESAVE,
        )
    main_part = None
    for element in _parse_xml(rels, "_rels/.rels"):
        if (
            _OFFICE_DOCUMENT_REL.search(element.get("Type", "").strip())
            and element.get("TargetMode", "Internal") != "External"
        ):
            target = unquote(element.get("Target", "").strip())
            main_part = posixpath.normpath(posixpath.join("/", target))
            break
    if main_part is None:
        raise WorkerError(Reason.CORRUPT, "the file is an incomplete Office document (no main part); " + _ADVICE_RESAVE)
    zip_names = {name.lower(): name for name in names}
    if main_part[1:].lower() not in zip_names:
        raise WorkerError(
            Reason.CORRUPT,
            f"the file is an incomplete Office document ({main_part} is missing); " + _ADVICE_RESAVE,
        )
    content_type = overrides.get(main_part.lower()) or defaults.get(posixpath.splitext(main_part)[1][1:].lower(), "")
    kind = _OOXML_MAIN_TYPES.get(content_type)
    if kind is None:
        raise unsupported("an Office Open XML package that is not a document (an add-in, a theme, ...)")
    return _sniffed(kind)


def _sniff_odf(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], names: set[str]) -> Sniffed:
    """Identify an ODF package by its mimetype entry (or manifest) and refuse encrypted ones."""
    manifest = _read_small_part(archive, "META-INF/manifest.xml")
    if manifest is not None and b"encryption-data" in manifest:  # a byte search: nothing is parsed yet
        # the mimetype entry is never encrypted, so the kind LibreOffice would open with the password is known
        mimetype_entry = (_read_small_part(archive, "mimetype") or b"").decode("ascii", "replace").strip()
        raise Encrypted(_ODF_MIMETYPES.get(mimetype_entry))
    # Encrypted parts are not XML, so the parse comes only after the encryption check; it vets the manifest too.
    _refuse_hostile_parts(archive, infos)
    mimetype = (_read_small_part(archive, "mimetype") or b"").decode("ascii", "replace").strip()
    if not mimetype and manifest is not None:
        for element in _parse_xml(manifest, "META-INF/manifest.xml").iter():
            attributes = {key.rsplit("}", 1)[-1]: value for key, value in element.attrib.items()}
            if attributes.get("full-path") == "/":
                mimetype = attributes.get("media-type", "").strip()
                break
    kind = _ODF_MIMETYPES.get(mimetype)
    if kind is None:
        raise unsupported(f"a zip package of another kind ({mimetype or 'without a media type'})")
    if "content.xml" not in names:
        raise WorkerError(
            Reason.CORRUPT,
            "the file is an incomplete OpenDocument file (content.xml is missing); " + _ADVICE_RESAVE,
        )
    return _sniffed(kind)


# --- OLE2 compound files (legacy Office, encrypted OOXML) ---------------------------------------------------


def _sniff_ole(fp: BinaryIO, max_uncompressed_bytes: int, max_entries: int) -> Sniffed:
    """Identify a compound file by its main stream and refuse the password-protected ones."""
    try:
        ole = olefile.OleFileIO(fp)
        streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=False)}
    except Exception as exc:  # olefile signals malformed input with many exception types
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc
    # olefile only logs sectors past the end of the file; they are the mark of a truncated upload. Other
    # defects it tolerates (a stream referenced twice, ...) come from real writers, msoffcrypto's among them.
    if any(marker in str(issue) for _, issue in ole.parsing_issues for marker in _TRUNCATION_ISSUES):
        raise WorkerError(Reason.CORRUPT, "the file is truncated or damaged; upload it again")
    if {"EncryptionInfo", "EncryptedPackage"} <= streams:
        return _sniff_encrypted_ooxml(fp, max_uncompressed_bytes, max_entries)
    kind = _ole_kind(ole, streams)
    if kind in ("doc", "xls", "ppt"):
        if _legacy_is_encrypted(fp, kind):
            raise Encrypted(kind)
    elif kind in ("doc95", "xls95") and _pre97_is_encrypted(ole, kind):
        raise Encrypted(None)
    return _sniffed(kind)


def _ole_kind(ole: olefile.OleFileIO, streams: set[str]) -> str:
    """Name the document a compound file holds from its stream names (and, for Word, the FIB's version)."""
    if "WordDocument" in streams:
        # nFib: 101 is Word 6.0, 104 Word 95, 193 and above Word 97 to 365.
        fib = _read_stream(ole, "WordDocument", 4)
        return "doc95" if len(fib) == 4 and struct.unpack("<H", fib[2:4])[0] < 193 else "doc"
    if "Workbook" in streams:
        return "xls"
    if "Book" in streams:
        return "xls95"
    if "PowerPoint Document" in streams:
        return "ppt"
    for stream, kind in _OLE_MAIN_STREAMS:
        if stream in streams:
            return kind
    if "StarDrawDocument3" in streams:
        # StarImpress and StarDraw 5 share the stream; the class name in CompObj says which application wrote it.
        return "sdd" if b"StarImpress" in _read_stream(ole, "\x01CompObj", 4096) else "sda"
    if "MN0" in streams or _read_stream(ole, "CONTENTS", 8) in (b"CHNKWKS ", b"CHNKINK "):
        return "wps"  # Works 3-4 keep the text in MN0, Works 4.5-2000 in chunked CONTENTS
    if _read_stream(ole, "FileHeader", 17) == b"HWP Document File":
        raise unsupported(
            "a Hangul Word Processor (HWP 5) document",
            "open it in Hangul (or Hancom Office), save it as .docx, and upload again",
        )
    if streams & {"1Table", "0Table", "Current User", "Pictures"}:
        raise WorkerError(
            Reason.CORRUPT,
            "the file is a damaged Word, Excel or PowerPoint file (its main part is missing);"
            " save it again from the application that made it and upload again",
        )
    if any(stream.startswith("__substg1.0_") for stream in streams):
        raise unsupported("an Outlook message", "save its attachments or its text as a document and upload those")
    raise unsupported("a compound file (OLE2) holding none of the document formats we convert")


_TRUNCATION_ISSUES = ("out of range", "incomplete")
# A stream that alone names the document inside (checked after Word, Excel and PowerPoint).
_OLE_MAIN_STREAMS = (
    ("StarWriterDocument", "sdw"),
    ("StarCalcDocument", "sdc"),
    ("VisioDocument", "vsd"),
    ("Quill/QuillSub/CONTENTS", "pub"),
)


def _read_stream(ole: olefile.OleFileIO, name: str, limit: int) -> bytes:
    """The first `limit` bytes of a stream, or b"" if it is missing; a stream olefile cannot read is damage."""
    if not ole.exists(name):
        return b""
    try:
        with ole.openstream(name) as stream:
            return bytes(stream.read(limit))
    except Exception as exc:  # olefile raises OSError, struct.error, IndexError... on broken sector chains
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc


def _pre97_is_encrypted(ole: olefile.OleFileIO, kind: str) -> bool:
    """Word 6/95 sets fEncrypted in its FIB; an Excel 5/95 workbook with a password has a FILEPASS record."""
    if kind == "doc95":
        fib = _read_stream(ole, "WordDocument", 12)
        return len(fib) == 12 and bool(fib[11] & 0x01)
    book = _read_stream(ole, "Book", _HEAD_BYTES)
    at = 0
    while at + 4 <= len(book):
        record, length = struct.unpack_from("<HH", book, at)
        if record == 0x002F:  # FILEPASS
            return True
        if record == 0x000A:  # EOF of the workbook globals: FILEPASS can only come before it
            return False
        at += 4 + length
    return False


def _legacy_is_encrypted(fp: BinaryIO, kind: str) -> bool:
    """Ask msoffcrypto whether a .doc/.xls/.ppt needs a password other than Excel's built-in one."""
    try:
        office_file = msoffcrypto.OfficeFile(fp)
        if not office_file.is_encrypted():
            return False
    except Exception as exc:  # msoffcrypto parses the FIB / BIFF records / CurrentUser atom and fails many ways
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc
    if kind != "xls":
        return True
    try:
        office_file.load_key(password=_DEFAULT_PASSWORD)
        office_file.decrypt(io.BytesIO())
    except Exception:  # a wrong key, XOR obfuscation or an unsupported cipher: all mean a real password
        return True
    return False


def _sniff_encrypted_ooxml(fp: BinaryIO, max_uncompressed_bytes: int, max_entries: int) -> Sniffed:
    """Refuse encrypted OOXML unless it only has Excel's built-in password, which LibreOffice also knows."""
    try:
        office_file = msoffcrypto.OfficeFile(fp)
        spin_count = int(getattr(office_file, "info", {}).get("spinValue", 0) or 0)
        if office_file.type not in ("agile", "standard") or spin_count > _MAX_SPIN_COUNT:
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
        # msoffcrypto's agile verifier rejects real VelvetSweatshop files (SHA-1, 128 bits), so we decrypt
        # instead: decrypt() raises unless the plaintext is a zip.
        office_file.load_key(password=_DEFAULT_PASSWORD)
        if office_file.file.get_size("EncryptedPackage") > _MAX_DECRYPT_BYTES:
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
        package = io.BytesIO()
        office_file.decrypt(package)
    except WorkerError:
        raise
    except Exception as exc:  # a wrong default password, or EncryptionInfo we cannot parse: a real password
        raise Encrypted("ooxml") from exc
    size = package.seek(0, io.SEEK_END)
    package.seek(0)
    return _sniff_zip(package, size, max_uncompressed_bytes, max_entries)


def _decrypt_ooxml(fp: BinaryIO, password: str) -> io.BytesIO:
    """Decrypt an encrypted OOXML package with the uploader's password (only agile/standard, bounded work)."""
    try:
        office_file = msoffcrypto.OfficeFile(fp)
        office_file.load_key(password=password)
        package = io.BytesIO()
        office_file.decrypt(package)
    except Exception as exc:  # msoffcrypto raises InvalidKeyError and others for a wrong password
        raise WorkerError(Reason.PASSWORD_WRONG, _MSG_PASSWORD_WRONG) from exc
    return package


def decrypt_legacy(src: Path, password: str, dst: Path) -> None:
    """Write the decrypted copy of an encrypted .doc/.xls/.ppt to dst; a wrong password is `password_wrong`.

    For PowerPoint 97-2003: LibreOffice 7.4 refuses an RC4 CryptoAPI .ppt even with its right password (measured on
    msoffcrypto-tool/rc4cryptoapi_password.ppt, which msoffcrypto decrypts with it), so the office gets the
    decrypted file instead.
    """
    try:
        with src.open("rb") as fp, dst.open("wb") as out:
            office_file = msoffcrypto.OfficeFile(fp)
            office_file.load_key(password=password)
            office_file.decrypt(out)
    except Exception as exc:  # msoffcrypto raises InvalidKeyError, DecryptionError and others for a wrong password
        dst.unlink(missing_ok=True)
        raise WorkerError(Reason.PASSWORD_WRONG, _MSG_PASSWORD_WRONG) from exc


def _sniffed(kind: str) -> Sniffed:
    """Build the result for a kind from the format catalogue."""
    known = FORMATS[kind]
    return Sniffed(kind, known.family, known.import_filter, known.extension)
