"""Builders of the files the sniff tests feed worker.sniff: OOXML and ODF packages, patched zip and OLE streams,
and `refused`."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import olefile
import pytest

from worker.errors import WorkerError
from worker.sniff import sniff

REPO = Path(__file__).parents[2]
DATA = REPO / "tests" / "data"

CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
OFFICE_DOCUMENT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
STRICT_OFFICE_DOCUMENT = "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument"
WORD_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    ' <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    ' <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n]>\n'
)
DOCUMENT_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    "<w:body><w:p><w:r><w:t>hello</w:t></w:r></w:p></w:body></w:document>"
)


# --- builders -----------------------------------------------------------------------------------------------


def content_types(main_part: str, content_type: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="{CT_NS}">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="{main_part}" ContentType="{content_type}"/></Types>'
    )


def package_rels(target: str, rel_type: str = OFFICE_DOCUMENT) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{rel_type}" Target="{target}"/></Relationships>'
    )


def write_zip(path: Path, parts: dict[str, str | bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in parts.items():
            if name == "mimetype":
                archive.writestr(zipfile.ZipInfo(name), data)  # stored, as ODF requires
            else:
                archive.writestr(name, data)
    return path


def ooxml_parts(
    content_type: str = WORD_MAIN,
    main_part: str = "/word/document.xml",
    rel_type: str = OFFICE_DOCUMENT,
    main_xml: str = DOCUMENT_XML,
) -> dict[str, str | bytes]:
    return {
        "[Content_Types].xml": content_types(main_part, content_type),
        "_rels/.rels": package_rels(main_part.lstrip("/"), rel_type),
        main_part.lstrip("/"): main_xml,
    }


def make_docx(path: Path, **kwargs: str) -> Path:
    return write_zip(path, ooxml_parts(**kwargs))


def odf_parts(mimetype: str, *, manifest_extra: str = "", with_mimetype: bool = True) -> dict[str, str | bytes]:
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.3">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        f"{manifest_extra}"
        "</manifest:file-entry></manifest:manifest>"
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' office:version="1.3"><office:body/></office:document-content>'
    )
    parts: dict[str, str | bytes] = {"mimetype": mimetype} if with_mimetype else {}
    parts.update({"content.xml": content, "META-INF/manifest.xml": manifest})
    return parts


def flat_odf(mimetype: str, prolog: str = '<?xml version="1.0" encoding="UTF-8"?>\n') -> str:
    return (
        f'{prolog}<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        f' office:version="1.3" office:mimetype="{mimetype}"><office:body/></office:document>\n'
    )


def patch_central_directory(
    path: Path,
    entry: str,
    *,
    file_size: int | None = None,
    offset: int | None = None,
    flags: int | None = None,
) -> None:
    """Rewrite one central-directory record: its flags, declared uncompressed size or local header offset."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == entry.encode():
            if file_size is not None:
                struct.pack_into("<L", data, at + 24, file_size)
            if offset is not None:
                struct.pack_into("<L", data, at + 42, offset)
            if flags is not None:
                struct.pack_into("<H", data, at + 8, flags)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{entry} not in the central directory")


def refused(path: Path, name_hint: str = "", **kwargs: int) -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        sniff(path, name_hint, **kwargs)
    error = caught.value
    assert error.message and "\n" not in error.message
    return error


def legacy_with_word_stream(tmp_path: Path, mutate: Callable[[bytearray], None]) -> Path:
    """sample.doc with its WordDocument stream changed in place by `mutate`."""
    path = tmp_path / "legacy.doc"
    path.write_bytes((DATA / "sample.doc").read_bytes())
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        stream = bytearray(ole.openstream("WordDocument").read())
        mutate(stream)
        ole.write_stream("WordDocument", bytes(stream))
    return path
