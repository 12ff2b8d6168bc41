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
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote
from xml.etree import ElementTree

import msoffcrypto
import olefile

from worker import xml_guard
from worker.errors import Reason, WorkerError

__all__ = ["Family", "Sniffed", "sniff"]

_HEAD_BYTES = 64 * 2**10  # what we read from the start of every file
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
_IMAGE_MAGICS = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
)
_TEXT_NAMES = (".txt", ".csv")
_TEXT_KINDS = ("txt", "csv")
_XML_PART_SUFFIXES = (".xml", ".rels", ".vml", ".svg")


class Family(StrEnum):
    """The LibreOffice application that loads a document, which decides the PDF export filter."""

    TEXT = "text"
    SPREADSHEET = "spreadsheet"
    PRESENTATION = "presentation"
    DRAWING = "drawing"


@dataclass(frozen=True)
class Sniffed:
    """What a file really is and how LibreOffice must load it."""

    kind: str
    family: Family
    import_filter: str
    extension: str


_T, _S, _P, _D = Family.TEXT, Family.SPREADSHEET, Family.PRESENTATION, Family.DRAWING

# kind -> (family, LibreOffice 7.4 import filter); every name was loaded with `soffice --infilter=...`.
_FORMATS: dict[str, tuple[Family, str]] = {
    "docx": (_T, "MS Word 2007 XML"),
    "docm": (_T, "MS Word 2007 XML VBA"),
    "dotx": (_T, "MS Word 2007 XML Template"),
    "dotm": (_T, "MS Word 2007 XML Template"),
    "xlsx": (_S, "Calc MS Excel 2007 XML"),
    "xlsm": (_S, "Calc MS Excel 2007 VBA XML"),
    "xltx": (_S, "Calc MS Excel 2007 XML Template"),
    "xltm": (_S, "Calc MS Excel 2007 XML Template"),
    "xlsb": (_S, "Calc MS Excel 2007 Binary"),
    "pptx": (_P, "Impress MS PowerPoint 2007 XML"),
    "pptm": (_P, "Impress MS PowerPoint 2007 XML VBA"),
    # Slide shows load with the ordinary filter: the AutoPlay one would try to start the show.
    "ppsx": (_P, "Impress MS PowerPoint 2007 XML"),
    "ppsm": (_P, "Impress MS PowerPoint 2007 XML VBA"),
    "potx": (_P, "Impress MS PowerPoint 2007 XML Template"),
    "potm": (_P, "Impress MS PowerPoint 2007 XML Template"),
    "odt": (_T, "writer8"),
    "ott": (_T, "writer8_template"),
    "ods": (_S, "calc8"),
    "ots": (_S, "calc8_template"),
    "odp": (_P, "impress8"),
    "otp": (_P, "impress8_template"),
    "odg": (_D, "draw8"),
    "otg": (_D, "draw8_template"),
    "fodt": (_T, "OpenDocument Text Flat XML"),
    "fods": (_S, "OpenDocument Spreadsheet Flat XML"),
    "fodp": (_P, "OpenDocument Presentation Flat XML"),
    "fodg": (_D, "OpenDocument Drawing Flat XML"),
    "doc": (_T, "MS Word 97"),
    "xls": (_S, "MS Excel 97"),
    "ppt": (_P, "MS PowerPoint 97"),
    "rtf": (_T, "Rich Text Format"),
    "txt": (_T, "Text (encoded)"),
    "csv": (_S, "Text - txt - csv (StarCalc)"),
    "word2003xml": (_T, "MS Word 2003 XML"),
}

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
}

_FLAT_ODF_MIMETYPES: dict[str, str] = {
    "application/vnd.oasis.opendocument.text": "fodt",
    "application/vnd.oasis.opendocument.spreadsheet": "fods",
    "application/vnd.oasis.opendocument.presentation": "fodp",
    "application/vnd.oasis.opendocument.graphics": "fodg",
}

_OFFICE_DOCUMENT_REL = re.compile(r"/relationships/officeDocument$")

_MSG_ENCRYPTED = "the file is an encrypted Office document; remove the password and upload again"
_MSG_DAMAGED = "the file is damaged and cannot be read; save it again from the application that made it"


def sniff(
    path: Path,
    name_hint: str = "",
    *,
    max_uncompressed_bytes: int = 512 * 2**20,
    max_entries: int = 10_000,
) -> Sniffed:
    """Identify `path` from its content, or raise WorkerError saying why LibreOffice must never see it."""
    try:
        with path.open("rb") as fp:
            size = fp.seek(0, io.SEEK_END)
            fp.seek(0)
            head = fp.read(_HEAD_BYTES)
            if size == 0:
                raise WorkerError(Reason.EMPTY, "the file is empty")
            _refuse_if_blank(fp, head, size)
            if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
                return _sniff_zip(fp, size, max_uncompressed_bytes, max_entries)
            if head.startswith(_OLE_MAGIC):
                return _sniff_ole(fp, max_uncompressed_bytes, max_entries)
        sniffed = _sniff_head(head, size, name_hint)
        _refuse_hostile_stream(path, sniffed, head)
    except OSError as exc:
        # Only a file system error reaches here; parsers translate their own OSErrors into CORRUPT.
        raise WorkerError(Reason.CORRUPT, "the file could not be read") from exc
    return sniffed


def _refuse_if_blank(fp: BinaryIO, head: bytes, size: int) -> None:
    """Refuse a file holding nothing but whitespace, scanning past the head only while it stays blank."""
    if head.removeprefix(codecs.BOM_UTF8).strip():
        return
    seen = len(head)
    while seen < size:
        if seen >= _WHITESPACE_SCAN_BYTES:
            raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file starts with a huge run of blank space")
        chunk = fp.read(2**20)
        if not chunk or chunk.strip():
            return
        seen += len(chunk)
    raise WorkerError(Reason.EMPTY, "the file contains only blank space")


def _sniff_head(head: bytes, size: int, name_hint: str) -> Sniffed:
    """Recognise single-stream formats (RTF, flat XML, plain text) and refuse well-known non-documents."""
    body = head.removeprefix(codecs.BOM_UTF8)
    if body.startswith(b"{\\rtf"):
        return _sniffed("rtf")
    if b"%PDF-" in head[:1024]:
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is already a PDF")
    if head.startswith(_IMAGE_MAGICS) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is an image, not an office document")
    text = _decode_text(head, complete=size <= len(head))
    if text is not None and text.lstrip().startswith("<"):
        sniffed = _sniff_flat_xml(text, complete=size <= len(head))
        if sniffed is not None:
            return sniffed
    if text is None:
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is not a document type we can convert")
    suffix = Path(name_hint).suffix.lower()
    if suffix in _TEXT_NAMES:
        return _sniffed(suffix[1:])
    raise WorkerError(
        Reason.UNSUPPORTED_TYPE,
        "the file is plain text; plain text is only converted when its name ends in .txt or .csv",
    )


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


def _xml_root(text: str, *, complete: bool, what: str) -> xml_guard.XmlRoot | None:
    """The root element of a head that may be XML, vetting its prolog (None if it is not XML at all).

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
        raise WorkerError(Reason.ZIP_BOMB, f"the file holds {entry_count} parts, more than the {max_entries} allowed")
    if directory_size > _MAX_CENTRAL_DIRECTORY_BYTES:
        raise WorkerError(Reason.ZIP_BOMB, "the file's table of contents is abnormally large")
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, struct.error) as exc:
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc
    with archive:
        infos = archive.infolist()
        _refuse_bomb(infos, size, max_uncompressed_bytes, max_entries)
        if any(info.flag_bits & 0x1 for info in infos):
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
        names = {info.filename for info in infos}
        if "[Content_Types].xml" in names:
            _refuse_hostile_parts(archive, infos)
            return _sniff_ooxml(archive, names)
        if "mimetype" in names or "META-INF/manifest.xml" in names:
            return _sniff_odf(archive, infos, names)
        if any(name.startswith(("word/", "xl/", "ppt/", "_rels/")) for name in names):
            raise WorkerError(Reason.CORRUPT, "the file looks like an Office document but lacks [Content_Types].xml")
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is a zip archive, not an office document")


def _zip_directory_size(fp: BinaryIO, size: int) -> tuple[int, int]:
    """Read the entry count and directory size from the end record, before anything parses the directory."""
    tail_size = min(size, 22 + 0xFFFF)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(_EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < 22:
        raise WorkerError(Reason.CORRUPT, "the file is truncated or damaged (its zip directory is missing)")
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
        raise WorkerError(Reason.ZIP_BOMB, f"the file holds {len(infos)} parts, more than the {max_entries} allowed")
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed_bytes:
        raise WorkerError(
            Reason.ZIP_BOMB,
            f"the file would expand to {total // 2**20} MiB,"
            f" more than the {max_uncompressed_bytes // 2**20} MiB allowed",
        )
    for info in infos:
        if info.file_size > _BOMB_RATIO_MIN_BYTES and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
            raise WorkerError(Reason.ZIP_BOMB, "the file is compressed at an impossible ratio (a zip bomb)")
        if info.header_offset + info.compress_size > size:
            raise WorkerError(Reason.CORRUPT, "the file is truncated or damaged (a part runs past its end)")
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for before, after in itertools.pairwise(ordered):
        if after.header_offset < before.header_offset + 30 + before.compress_size:
            raise WorkerError(Reason.ZIP_BOMB, "the file's parts overlap each other (a zip bomb)")


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
        raise WorkerError(Reason.CORRUPT, f"the file is damaged and cannot be read (part {info.filename})") from exc


def _read_small_part(archive: zipfile.ZipFile, name: str) -> bytes | None:
    """Read a whole metadata part, or None if it is missing; one larger than any real one is damage."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    data = _read_part(archive, info, _SMALL_PART_BYTES + 1)
    if len(data) > _SMALL_PART_BYTES:
        raise WorkerError(Reason.CORRUPT, f"the file's {name} part is abnormally large")
    return data


def _parse_xml(data: bytes, name: str) -> ElementTree.Element:
    """Parse a small metadata part that xml_guard has already vetted."""
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise WorkerError(Reason.CORRUPT, f"the file's {name} part is not well-formed XML") from exc


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
        raise WorkerError(Reason.CORRUPT, "the file is an incomplete Office document (no package relationships)")
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
        raise WorkerError(Reason.CORRUPT, "the file is an incomplete Office document (no main part)")
    zip_names = {name.lower(): name for name in names}
    if main_part[1:].lower() not in zip_names:
        raise WorkerError(Reason.CORRUPT, f"the file is an incomplete Office document ({main_part} is missing)")
    content_type = overrides.get(main_part.lower()) or defaults.get(posixpath.splitext(main_part)[1][1:].lower(), "")
    kind = _OOXML_MAIN_TYPES.get(content_type)
    if kind is None:
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is an Office Open XML type we cannot convert")
    return _sniffed(kind)


def _sniff_odf(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], names: set[str]) -> Sniffed:
    """Identify an ODF package by its mimetype entry (or manifest) and refuse encrypted ones."""
    manifest = _read_small_part(archive, "META-INF/manifest.xml")
    if manifest is not None:
        xml_guard.check_xml(io.BytesIO(manifest).read, "the manifest")
        if b"encryption-data" in manifest:
            raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
    # Encrypted parts are not XML, so the prolog scan comes only after the encryption check.
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
        raise WorkerError(Reason.UNSUPPORTED_TYPE, "the file is a packaged document type we cannot convert")
    if "content.xml" not in names:
        raise WorkerError(Reason.CORRUPT, "the file is an incomplete OpenDocument file (content.xml is missing)")
    return _sniffed(kind)


# --- OLE2 compound files (legacy Office, encrypted OOXML) ---------------------------------------------------


def _sniff_ole(fp: BinaryIO, max_uncompressed_bytes: int, max_entries: int) -> Sniffed:
    """Identify a compound file by its main stream and refuse the password-protected ones."""
    try:
        ole = olefile.OleFileIO(fp)
        has = {name: bool(ole.exists(name)) for name in _OLE_STREAMS}
    except Exception as exc:  # olefile signals malformed input with many exception types
        raise WorkerError(Reason.CORRUPT, _MSG_DAMAGED) from exc
    # olefile only logs sectors past the end of the file; they are the mark of a truncated upload. Other
    # defects it tolerates (a stream referenced twice, ...) come from real writers, msoffcrypto's among them.
    if any(marker in str(issue) for _, issue in ole.parsing_issues for marker in _TRUNCATION_ISSUES):
        raise WorkerError(Reason.CORRUPT, "the file is truncated or damaged; upload it again")
    if has["EncryptionInfo"] and has["EncryptedPackage"]:
        return _sniff_encrypted_ooxml(fp, max_uncompressed_bytes, max_entries)
    if has["WordDocument"]:
        kind = "doc"
    elif has["Workbook"]:
        kind = "xls"
    elif has["PowerPoint Document"]:
        kind = "ppt"
    elif has["Book"]:
        # Excel 5.0/95 (BIFF5): msoffcrypto cannot check it; a password shows as a LibreOffice load failure.
        return Sniffed("xls", Family.SPREADSHEET, "MS Excel 95", ".xls")
    else:
        raise WorkerError(Reason.CORRUPT, "the file is an OLE2 container without a Word, Excel or PowerPoint document")
    if _legacy_is_encrypted(fp, kind):
        raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED)
    return _sniffed(kind)


_TRUNCATION_ISSUES = ("out of range", "incomplete")
_OLE_STREAMS = (
    "EncryptionInfo",
    "EncryptedPackage",
    "WordDocument",
    "Workbook",
    "Book",
    "PowerPoint Document",
)


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
        raise WorkerError(Reason.ENCRYPTED, _MSG_ENCRYPTED) from exc
    size = package.seek(0, io.SEEK_END)
    package.seek(0)
    return _sniff_zip(package, size, max_uncompressed_bytes, max_entries)


def _sniffed(kind: str) -> Sniffed:
    """Build the result for a kind from the format table."""
    family, import_filter = _FORMATS[kind]
    extension = ".xml" if kind == "word2003xml" else f".{kind}"
    return Sniffed(kind, family, import_filter, extension)
