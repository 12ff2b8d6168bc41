"""Tests for worker.sniff: every input LibreOffice must never see is refused with the right reason."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import zipfile
from pathlib import Path

import msoffcrypto
import olefile
import pytest

from tests.corpora import CORPUS, missing_reason, need_corpus
from tests.harness.processes import bytes_read_by_this_process
from worker.errors import Reason, WorkerError
from worker.formats import FORMATS
from worker.sniff import Family, Sniffed, sniff

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


# --- what files are -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind", "family", "import_filter"),
    [
        (WORD_MAIN, "docx", Family.TEXT, "MS Word 2007 XML"),
        (
            "application/vnd.ms-word.document.macroEnabled.main+xml",
            "docm",
            Family.TEXT,
            "MS Word 2007 XML VBA",
        ),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
            "dotx",
            Family.TEXT,
            "MS Word 2007 XML Template",
        ),
        (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            "xlsx",
            Family.SPREADSHEET,
            "Calc MS Excel 2007 XML",
        ),
        (
            "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
            "xlsm",
            Family.SPREADSHEET,
            "Calc MS Excel 2007 VBA XML",
        ),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
            "pptx",
            Family.PRESENTATION,
            "Impress MS PowerPoint 2007 XML",
        ),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
            "ppsx",
            Family.PRESENTATION,
            "Impress MS PowerPoint 2007 XML",
        ),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
            "potx",
            Family.PRESENTATION,
            "Impress MS PowerPoint 2007 XML Template",
        ),
    ],
)
def test_ooxml_kind_comes_from_the_main_part_content_type(tmp_path, content_type, kind, family, import_filter):
    # Named .bin on purpose: the bytes decide, not the name.
    result = sniff(make_docx(tmp_path / "upload.bin", content_type=content_type), "upload.bin")
    assert result == Sniffed(kind, family, import_filter, f".{kind}")


def test_strict_ooxml_relationship_namespace_is_recognised(tmp_path):
    path = make_docx(tmp_path / "strict.docx", rel_type=STRICT_OFFICE_DOCUMENT)
    assert sniff(path).kind == "docx"


def test_main_part_at_a_non_standard_path_is_found_through_the_relationship(tmp_path):
    path = make_docx(tmp_path / "odd.docx", main_part="/custom/main.xml")
    assert sniff(path).kind == "docx"


def test_content_types_with_utf8_bom_are_read(tmp_path):
    parts = ooxml_parts()
    parts["[Content_Types].xml"] = b"\xef\xbb\xbf" + str(parts["[Content_Types].xml"]).encode()
    assert sniff(write_zip(tmp_path / "bom.docx", parts)).kind == "docx"


def test_powerpoint_add_in_is_unsupported(tmp_path):
    path = make_docx(tmp_path / "a.ppam", content_type="application/vnd.ms-powerpoint.addin.macroEnabled.main+xml")
    assert refused(path).reason is Reason.UNSUPPORTED_TYPE


@pytest.mark.parametrize(
    ("mimetype", "kind", "import_filter"),
    [
        ("application/vnd.oasis.opendocument.text", "odt", "writer8"),
        ("application/vnd.oasis.opendocument.spreadsheet", "ods", "calc8"),
        ("application/vnd.oasis.opendocument.presentation", "odp", "impress8"),
        ("application/vnd.oasis.opendocument.graphics", "odg", "draw8"),
        ("application/vnd.oasis.opendocument.text-template", "ott", "writer8_template"),
    ],
)
def test_odf_kind_comes_from_the_mimetype_entry(tmp_path, mimetype, kind, import_filter):
    result = sniff(write_zip(tmp_path / "upload.zip", odf_parts(mimetype)))
    assert (result.kind, result.import_filter, result.extension) == (kind, import_filter, f".{kind}")


def test_odf_without_mimetype_entry_falls_back_to_the_manifest(tmp_path):
    parts = odf_parts("application/vnd.oasis.opendocument.spreadsheet", with_mimetype=False)
    assert sniff(write_zip(tmp_path / "x.ods", parts)).kind == "ods"


def test_epub_is_not_mistaken_for_odf(tmp_path):
    parts = odf_parts("application/epub+zip")
    assert refused(write_zip(tmp_path / "book.epub", parts)).reason is Reason.UNSUPPORTED_TYPE


@pytest.mark.parametrize(
    ("mimetype", "kind", "family"),
    [
        ("application/vnd.oasis.opendocument.text", "fodt", Family.TEXT),
        ("application/vnd.oasis.opendocument.spreadsheet", "fods", Family.SPREADSHEET),
        ("application/vnd.oasis.opendocument.presentation", "fodp", Family.PRESENTATION),
    ],
)
def test_flat_odf_is_recognised_by_its_root_element(tmp_path, mimetype, kind, family):
    path = tmp_path / "flat.xml"
    path.write_text(flat_odf(mimetype), encoding="utf-8")
    result = sniff(path)
    assert (result.kind, result.family, result.extension) == (kind, family, f".{kind}")


def test_word_2003_xml_is_recognised(tmp_path):
    path = tmp_path / "w.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<?mso-application progid="Word.Document"?>\n'
        '<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml"><w:body/></w:wordDocument>',
        encoding="utf-8",
    )
    assert sniff(path) == Sniffed("word2003xml", Family.TEXT, "MS Word 2003 XML", ".xml")


def test_flat_opc_is_unsupported(tmp_path):
    path = tmp_path / "opc.xml"
    path.write_text(
        '<?xml version="1.0"?><pkg:package xmlns:pkg="http://schemas.microsoft.com/office/2006/xmlPackage"/>',
        encoding="utf-8",
    )
    assert refused(path).reason is Reason.UNSUPPORTED_TYPE


def test_rtf_is_recognised_even_with_a_wrong_name(tmp_path):
    path = tmp_path / "letter.docx"
    path.write_bytes(b"{\\rtf1\\ansi hello}")
    assert sniff(path, "letter.docx") == Sniffed("rtf", Family.TEXT, "Rich Text Format", ".rtf")


@pytest.mark.parametrize(
    ("data", "hint", "kind", "family"),
    [
        (b"hello world\r\nsecond line\n", "notes.txt", "txt", Family.TEXT),
        ("caf\u00e9, cr\u00e8me\n".encode("cp1252"), "NOTES.TXT", "txt", Family.TEXT),
        ("\ufeffunicode text\n".encode("utf-16"), "u.txt", "txt", Family.TEXT),
        (b"a,b,c\n1,2,3\n", "table.csv", "csv", Family.SPREADSHEET),
    ],
)
def test_plain_text_is_accepted_only_with_a_text_name(tmp_path, data, hint, kind, family):
    path = tmp_path / "upload"
    path.write_bytes(data)
    result = sniff(path, hint)
    assert (result.kind, result.family, result.extension) == (kind, family, f".{kind}")


def test_plain_text_without_a_text_name_is_unsupported(tmp_path):
    path = tmp_path / "readme.docx"
    path.write_bytes(b"just some words\n")
    assert refused(path, "readme.docx").reason is Reason.UNSUPPORTED_TYPE


@pytest.mark.parametrize(
    ("name", "kind", "import_filter"),
    [
        ("sample.doc", "doc", "MS Word 97"),
        ("sample.xls", "xls", "MS Excel 97"),
        ("sample.ppt", "ppt", "MS PowerPoint 97"),
        ("sample.docx", "docx", "MS Word 2007 XML"),
        ("sample.xlsx", "xlsx", "Calc MS Excel 2007 XML"),
        ("sample.pptx", "pptx", "Impress MS PowerPoint 2007 XML"),
        ("sample.odt", "odt", "writer8"),
        ("sample.ods", "ods", "calc8"),
        ("sample.rtf", "rtf", "Rich Text Format"),
        ("sample-100pages.docx", "docx", "MS Word 2007 XML"),
    ],
)
def test_committed_samples_are_recognised(name, kind, import_filter):
    result = sniff(DATA / name, name)
    assert (result.kind, result.import_filter) == (kind, import_filter)


# --- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \r\n\t  \n", b"\xef\xbb\xbf  \n"])
def test_empty_and_blank_files_are_empty(tmp_path, data):
    path = tmp_path / "blank.docx"
    path.write_bytes(data)
    assert refused(path, "blank.txt").reason is Reason.EMPTY


def test_random_bytes_are_unsupported(tmp_path):
    path = tmp_path / "noise.docx"
    path.write_bytes(random.Random(1234).randbytes(50_000))
    assert refused(path, "noise.docx").reason is Reason.UNSUPPORTED_TYPE
    assert refused(path, "noise.txt").reason is Reason.UNSUPPORTED_TYPE


def test_png_renamed_docx_is_unsupported(tmp_path):
    path = tmp_path / "photo.docx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64))
    error = refused(path, "photo.docx")
    assert error.reason is Reason.UNSUPPORTED_TYPE
    assert "image" in error.message


def test_pdf_is_refused_as_already_a_pdf(tmp_path):
    path = tmp_path / "report.docx"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n")
    error = refused(path, "report.docx")
    assert error.reason is Reason.UNSUPPORTED_TYPE
    assert "already a PDF" in error.message


def test_encrypted_docx_is_encrypted(tmp_path):
    plain = make_docx(tmp_path / "plain.docx")
    encrypted = tmp_path / "secret.docx"
    with plain.open("rb") as source, encrypted.open("wb") as target:
        msoffcrypto.OfficeFile(source).encrypt("s3cret", target)
    error = refused(encrypted)
    assert error.reason is Reason.ENCRYPTED
    assert "password" in error.message


def test_docx_encrypted_only_with_excels_default_password_is_convertible(tmp_path):
    # Excel writes "VelvetSweatshop" silently and LibreOffice knows it: such files open without a prompt.
    parts = ooxml_parts(content_type="application/vnd.ms-excel.sheet.macroEnabled.main+xml")
    # msoffcrypto 6.1 mangles packages of a few hundred bytes in encrypt/decrypt; real ones are bigger.
    parts["xl/media/padding.bin"] = random.Random(5).randbytes(8192)
    plain = write_zip(tmp_path / "plain.xlsm", parts)
    encrypted = tmp_path / "velvet.xlsm"
    with plain.open("rb") as source, encrypted.open("wb") as target:
        msoffcrypto.OfficeFile(source).encrypt("VelvetSweatshop", target)
    assert sniff(encrypted).kind == "xlsm"


def test_encrypted_odt_is_encrypted(tmp_path):
    extra = (
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="AAAA">'
        '<manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="AAAA"/>'
        "</manifest:encryption-data>"
    )
    parts = odf_parts("application/vnd.oasis.opendocument.text", manifest_extra=extra)
    parts["content.xml"] = random.Random(7).randbytes(300)  # encrypted parts are not XML
    assert refused(write_zip(tmp_path / "secret.odt", parts)).reason is Reason.ENCRYPTED


def test_zip_level_encryption_is_encrypted(tmp_path):
    path = make_docx(tmp_path / "zipcrypto.docx")
    patch_central_directory(path, "word/document.xml", flags=0x1)  # zipfile will not write the bit itself
    assert refused(path).reason is Reason.ENCRYPTED


def legacy_with_word_stream(tmp_path: Path, mutate) -> Path:
    path = tmp_path / "legacy.doc"
    path.write_bytes((DATA / "sample.doc").read_bytes())
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        stream = bytearray(ole.openstream("WordDocument").read())
        mutate(stream)
        ole.write_stream("WordDocument", bytes(stream))
    return path


def test_password_protected_legacy_doc_is_encrypted(tmp_path):
    def set_f_encrypted(stream: bytearray) -> None:
        stream[0x0B] |= 0x01  # FIB base: fEncrypted

    assert refused(legacy_with_word_stream(tmp_path, set_f_encrypted)).reason is Reason.ENCRYPTED


def test_ole_without_a_known_main_stream_is_corrupt(tmp_path):
    path = tmp_path / "renamed.doc"
    data = (DATA / "sample.doc").read_bytes()
    path.write_bytes(data.replace("WordDocument".encode("utf-16-le"), "WordDocumenX".encode("utf-16-le")))
    assert refused(path).reason is Reason.CORRUPT


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_ole_is_corrupt(tmp_path, fraction):
    data = (DATA / "sample.xls").read_bytes()
    path = tmp_path / "cut.xls"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert refused(path).reason is Reason.CORRUPT


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_zip_is_corrupt(tmp_path, fraction):
    data = (DATA / "sample.docx").read_bytes()
    path = tmp_path / "cut.docx"
    path.write_bytes(data[: int(len(data) * fraction)])
    error = refused(path)
    assert error.reason is Reason.CORRUPT
    assert error.__cause__ is not None or "truncated" in error.message


def test_zip_without_the_main_part_is_corrupt(tmp_path):
    parts = ooxml_parts()
    del parts["word/document.xml"]
    assert refused(write_zip(tmp_path / "hollow.docx", parts)).reason is Reason.CORRUPT


def test_zip_without_content_types_is_corrupt(tmp_path):
    parts = ooxml_parts()
    del parts["[Content_Types].xml"]
    assert refused(write_zip(tmp_path / "nocts.docx", parts)).reason is Reason.CORRUPT


def test_ordinary_zip_is_unsupported(tmp_path):
    path = write_zip(tmp_path / "photos.docx", {"a.jpg": b"\xff\xd8\xff" + bytes(10), "notes.txt": "x"})
    assert refused(path).reason is Reason.UNSUPPORTED_TYPE


def test_bad_crc_in_a_part_we_read_is_corrupt(tmp_path):
    path = write_zip(tmp_path / "crc.docx", ooxml_parts(), compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.find(b"<Types")
    data[at + 1] = ord("X")
    path.write_bytes(bytes(data))
    assert refused(path).reason is Reason.CORRUPT


def test_zip_bomb_by_declared_size(tmp_path):
    path = make_docx(tmp_path / "liar.docx")
    patch_central_directory(path, "word/document.xml", file_size=0xFFFF_FF00)
    error = refused(path)
    assert error.reason is Reason.ZIP_BOMB


def test_zip_bomb_by_total_size_against_the_limit(tmp_path):
    parts = ooxml_parts()
    parts["word/media/big.bin"] = random.Random(3).randbytes(2 * 2**20)
    path = write_zip(tmp_path / "big.docx", parts)
    assert sniff(path).kind == "docx"
    assert refused(path, max_uncompressed_bytes=2**20).reason is Reason.ZIP_BOMB


def test_zip_bomb_by_compression_ratio(tmp_path):
    parts = ooxml_parts()
    parts["word/media/zeros.bin"] = bytes(64 * 2**20)  # about 64 KiB compressed: a ratio near 1000:1
    error = refused(write_zip(tmp_path / "ratio.docx", parts))
    assert error.reason is Reason.ZIP_BOMB


def test_zip_bomb_by_entry_count(tmp_path):
    parts = ooxml_parts()
    parts.update({f"word/media/{i}.bin": b"x" for i in range(50)})
    path = write_zip(tmp_path / "many.docx", parts)
    assert sniff(path).kind == "docx"
    assert refused(path, max_entries=20).reason is Reason.ZIP_BOMB


def test_zip_bomb_by_overlapping_entries(tmp_path):
    parts = ooxml_parts()
    parts["word/media/a.bin"] = b"a" * 1000
    parts["word/media/b.bin"] = b"b" * 1000
    path = write_zip(tmp_path / "overlap.docx", parts, compression=zipfile.ZIP_STORED)
    first = zipfile.ZipFile(path).getinfo("word/media/a.bin").header_offset
    patch_central_directory(path, "word/media/b.bin", offset=first)
    assert refused(path).reason is Reason.ZIP_BOMB


def test_billion_laughs_in_the_main_part_is_hostile(tmp_path):
    main_xml = BILLION_LAUGHS + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>'
    error = refused(make_docx(tmp_path / "lol.docx", main_xml=main_xml))
    assert error.reason is Reason.HOSTILE


def test_billion_laughs_in_content_types_is_hostile(tmp_path):
    parts = ooxml_parts()
    parts["[Content_Types].xml"] = BILLION_LAUGHS + str(parts["[Content_Types].xml"]).split("\n", 1)[1]
    assert refused(write_zip(tmp_path / "lol.docx", parts)).reason is Reason.HOSTILE


def test_billion_laughs_in_any_xml_part_of_an_odt_is_hostile(tmp_path):
    parts = odf_parts("application/vnd.oasis.opendocument.text")
    parts["styles.xml"] = BILLION_LAUGHS + "<office:document-styles/>"
    assert refused(write_zip(tmp_path / "lol.odt", parts)).reason is Reason.HOSTILE


def test_billion_laughs_in_flat_odf_is_hostile(tmp_path):
    path = tmp_path / "lol.fodt"
    path.write_text(flat_odf("application/vnd.oasis.opendocument.text", prolog=BILLION_LAUGHS), encoding="utf-8")
    assert refused(path).reason is Reason.HOSTILE


def test_external_dtd_url_is_hostile(tmp_path):
    main_xml = (
        '<?xml version="1.0"?>\n<!DOCTYPE w SYSTEM "http://127.0.0.1:9/x.dtd">\n' + DOCUMENT_XML.split("\n", 1)[1]
    )
    assert refused(make_docx(tmp_path / "xxe.docx", main_xml=main_xml)).reason is Reason.HOSTILE


def test_entities_hidden_behind_a_long_prolog_are_hostile(tmp_path):
    main_xml = '<?xml version="1.0"?>\n<!--' + "pad " * 50_000 + "-->\n" + BILLION_LAUGHS.split("\n", 1)[1] + "<w/>"
    assert refused(make_docx(tmp_path / "padded.docx", main_xml=main_xml)).reason is Reason.HOSTILE


def test_relative_doctype_without_entities_is_allowed(tmp_path):
    # OpenOffice.org wrote this DOCTYPE into manifests and LibreOffice still writes it into Basic libraries.
    parts = odf_parts("application/vnd.oasis.opendocument.text")
    parts["Basic/script-lc.xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE library:libraries PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN"'
        ' "libraries.dtd">\n'
        '<library:libraries xmlns:library="http://openoffice.org/2000/library"/>'
    )
    assert sniff(write_zip(tmp_path / "basic.odt", parts)).kind == "odt"


# --- bounded reads on hostile sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"{\\rtx", b"<?xml "])
def test_sparse_1gb_file_is_refused_after_reading_a_bounded_prefix(tmp_path, prefix):
    path = tmp_path / "huge.docx"
    path.write_bytes(prefix)
    subprocess.run(["truncate", "-s", "1G", str(path)], check=True)
    before = bytes_read_by_this_process()
    with pytest.raises(WorkerError):
        sniff(path, "huge.docx")
    assert bytes_read_by_this_process() - before < 1024 * 1024  # of 1 GiB: the file was never read through


def test_many_small_xml_parts_are_scanned_in_one_pass(tmp_path):
    parts = ooxml_parts()
    parts.update({f"customXml/item{i}.xml": "<a/>" for i in range(9_990)})
    path = write_zip(tmp_path / "wide.docx", parts)
    before = bytes_read_by_this_process()
    assert sniff(path).kind == "docx"
    assert bytes_read_by_this_process() - before < 2 * path.stat().st_size  # no re-reading per part


def test_result_is_immutable():
    result = sniff(DATA / "sample.docx")
    with pytest.raises(AttributeError):
        result.kind = "pdf"  # type: ignore[misc]


# --- the real-world corpus ----------------------------------------------------------------------------------


def corpus_rows() -> list[tuple[str, str]]:
    """One row per corpus file; without the corpus one placeholder row, so the test reports it (skip or fail)."""
    if missing_reason(CORPUS) is not None:
        return [("(corpus missing)", "")]
    manifest = CORPUS / "MANIFEST.tsv"
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
        columns = line.split("\t")
        rows.append((columns[0], columns[7] if len(columns) > 7 else ""))
    return rows


@pytest.mark.parametrize(("relative_path", "notes"), corpus_rows(), ids=[row[0] for row in corpus_rows()])
def test_corpus_file_is_sniffed_or_refused_cleanly(relative_path, notes):
    path = need_corpus(CORPUS) / relative_path
    before = bytes_read_by_this_process()
    try:
        result: Sniffed | WorkerError = sniff(path, path.name)
    except WorkerError as error:
        result = error
    assert bytes_read_by_this_process() - before < 2 * path.stat().st_size + 1024 * 1024
    if "encrypt" in notes.lower():
        if "VelvetSweatshop" in notes:
            # Excel's built-in password: Excel and LibreOffice both open the file without asking.
            assert isinstance(result, Sniffed)
        else:
            assert isinstance(result, WorkerError) and result.reason is Reason.ENCRYPTED, result
    if isinstance(result, Sniffed):
        assert result.extension.startswith(".") and result.import_filter


def test_io_error_is_a_worker_error(tmp_path):
    with pytest.raises(WorkerError) as caught:
        sniff(tmp_path / "missing.docx")
    assert caught.value.reason is Reason.CORRUPT
    assert isinstance(caught.value.__cause__, OSError)


def test_sniff_reads_bytes_not_names(tmp_path):
    path = tmp_path / "upload"
    path.write_bytes(io.BytesIO((DATA / "sample.xlsx").read_bytes()).getvalue())
    assert sniff(path, "totally.pdf").kind == "xlsx"


# --- legacy and other formats stock LibreOffice converts (issue 12) --------------------------------------------

FORMATS_CORPUS = Path(os.environ.get("DOCWORKER_CORPUS_DIR", REPO.parent / "shared")) / "corpus-formats"


def shared_file(path: Path) -> Path:
    """A file of the shared corpora; without them the test says loudly that it did not run."""
    if not path.is_file():
        pytest.skip(f"shared corpus file missing: {path} (set DOCWORKER_CORPUS_DIR)")
    return path

FORMATS_CORPUS_KINDS = {
    "tika/testWORD6.doc": ("doc95", "MS Word 95"),
    "tika/testMSWriteFile.wri": ("wri", "MS_Write"),
    "tika/testWORKS.wps": ("wps", "MS_Works"),
    "tika/testWORKS2000.wps": ("wps", "MS_Works"),
    "tika/testWORKSWordProcessor3.0.wps": ("wps", "MS_Works"),
    "tika/testWORKSWordProcessor4.0.wps": ("wps", "MS_Works"),
    "tika/testWordPerfect.wpd": ("wpd", "WordPerfect"),
    "tika/testWordPerfect_42.doc": ("wpd", "WordPerfect"),
    "tika/testStarOffice-5.2-calc.sdc": ("sdc", "StarOffice_Spreadsheet"),
    "tika/testStarOffice-5.2-impress.sdd": ("sdd", "StarOffice_Presentation"),
    "tika/testStarOffice-5.2-writer.sdw": ("sdw", "StarOffice_Writer"),
    "tika/testStarOffice-6.0-calc.sxc": ("sxc", "StarOffice XML (Calc)"),
    "tika/testStarOffice-6.0-draw.sxd": ("sxd", "StarOffice XML (Draw)"),
    "tika/testStarOffice-6.0-draw.sxi": ("sxi", "StarOffice XML (Impress)"),
    "tika/testStarOffice-6.0-writer.sxw": ("sxw", "StarOffice XML (Writer)"),
    "tika/testLotus123.wk1": ("wk1", "WPS_Lotus_Calc"),
    "tika/testLotus123.wk3": ("wk3", "WPS_Lotus_Calc"),
    "tika/testLotus123-lotusftp.wk4": ("wk4", "WPS_Lotus_Calc"),
    "tika/testLotus123-lotusftp.123": ("123", "WPS_Lotus_Calc"),
    "tika/testEXCEL_95.xls": ("xls95", "MS Excel 95"),
    "tika/testEXCEL.xlsb": ("xlsb", "Calc MS Excel 2007 Binary"),
    "tika/testEXCEL_various.xlsb": ("xlsb", "Calc MS Excel 2007 Binary"),
    "tika/test-columnar.xlsb": ("xlsb", "Calc MS Excel 2007 Binary"),
    "tika/testVISIO.vsd": ("vsd", "Visio Document"),
    "tika/testVISIO.vsdx": ("vsdx", "Visio Document"),
    "tika/testPUBLISHER.pub": ("pub", "Publisher Document"),
    "tika/testPages.pages": ("pages", "Apple Pages"),
    "tika/testNumbers.numbers": ("numbers", "Apple Numbers"),
    "tika/testKeynote.key": ("key", "Apple Keynote"),
    "tika/testOptionalHyphen.ppt": ("ppt", "MS PowerPoint 97"),
}


@pytest.mark.parametrize(("relative", "expected"), sorted(FORMATS_CORPUS_KINDS.items()))
def test_formats_corpus_file_is_identified_by_its_bytes(relative, expected):
    # Named .bin: the content decides, never the name.
    result = sniff(shared_file(FORMATS_CORPUS / relative), "upload.bin")
    assert (result.kind, result.import_filter) == expected
    assert result.family is FORMATS[result.kind].family


def test_hangul_document_is_unsupported_and_named():
    error = refused(shared_file(FORMATS_CORPUS / "tika" / "testHWP-v5b.hwp"), "report.hwp")
    assert error.reason is Reason.UNSUPPORTED_TYPE
    assert "a Hangul Word Processor" in error.message and ".docx" in error.message
    assert "upload again" in error.message


def test_nasa_dif_record_is_plain_text_as_stock_prints_it():
    """Zamora2010.dif is NASA's Directory Interchange Format, XML text: stock LibreOffice prints it as text."""
    result = sniff(shared_file(FORMATS_CORPUS / "tika" / "Zamora2010.dif"), "Zamora2010.dif")
    assert (result.kind, result.import_filter) == ("txt", "Text (encoded)")


def test_data_interchange_format_table_loads_in_calc(tmp_path):
    path = tmp_path / "upload"
    path.write_bytes(b'TABLE\r\n0,1\r\n"EXCEL"\r\nVECTORS\r\n0,2\r\n""\r\nTUPLES\r\n0,1\r\n""\r\nDATA\r\n0,0\r\n""\r\n'
                     b'-1,0\r\nBOT\r\n1,"name"\r\n0,42\r\nV\r\n-1,0\r\nEOD\r\n')
    result = sniff(path, "anything.bin")
    assert (result.kind, result.family, result.import_filter) == ("dif", Family.SPREADSHEET, "DIF")


def test_word_95_fib_version_picks_the_word_95_filter_and_its_password_bit_is_seen(tmp_path):
    def as_word95(stream: bytearray) -> None:
        struct.pack_into("<H", stream, 2, 104)  # nFib of Word 95

    path = legacy_with_word_stream(tmp_path, as_word95)
    assert (sniff(path).kind, sniff(path).import_filter) == ("doc95", "MS Word 95")

    def as_encrypted_word95(stream: bytearray) -> None:
        as_word95(stream)
        stream[0x0B] |= 0x01  # fEncrypted

    assert refused(legacy_with_word_stream(tmp_path, as_encrypted_word95)).reason is Reason.ENCRYPTED


def test_excel_95_with_a_filepass_record_is_encrypted(tmp_path):
    path = tmp_path / "secret95.xls"
    path.write_bytes(shared_file(FORMATS_CORPUS / "tika" / "testEXCEL_95.xls").read_bytes())
    with olefile.OleFileIO(str(path), write_mode=True) as ole:
        book = bytearray(ole.openstream("Book").read())
        bof_length = struct.unpack_from("<H", book, 2)[0]
        struct.pack_into("<H", book, 4 + bof_length, 0x002F)  # the record after BOF becomes FILEPASS
        ole.write_stream("Book", bytes(book))
    assert refused(path).reason is Reason.ENCRYPTED


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x02\x00\x06\x04\x06\x00", "wk1"),
        (b"\x00\x00\x1a\x00\x00\x10\x04\x00", "wk3"),
        (b"\x00\x00\x1a\x00\x02\x10\x04\x00", "wk4"),
        (b"\x00\x00\x1a\x00\x03\x10\x04\x00", "123"),
        (b"\x31\xbe\x00\x00\x00\xab\x00\x00", "wri"),
        (b"\x09\x00\x04\x00\x02\x00\x10\x00", "xls4"),  # BIFF2 worksheet
        (b"\x09\x04\x06\x00\x00\x00\x10\x00", "xls4"),  # BIFF4 worksheet
        (b"\xffWPC\x10\x00\x00\x00\x01\x0a\x02\x01\x00\x00\x00\x02", "wpd"),
    ],
)
def test_legacy_binary_headers_are_recognised(tmp_path, head, kind):
    path = tmp_path / "upload"
    path.write_bytes(head + bytes(200))
    assert sniff(path, "upload.bin").kind == kind


def test_wordperfect_with_a_password_is_encrypted_and_a_graphic_is_unsupported(tmp_path):
    path = tmp_path / "wp"
    path.write_bytes(b"\xffWPC\x10\x00\x00\x00\x01\x0a\x02\x01\x12\x34\x00\x02" + bytes(100))
    assert refused(path).reason is Reason.ENCRYPTED
    path.write_bytes(b"\xffWPC\x10\x00\x00\x00\x01\x16\x02\x01\x00\x00\x00\x02" + bytes(100))
    error = refused(path)
    assert error.reason is Reason.UNSUPPORTED_TYPE and "WordPerfect" in error.message


def test_wordperfect_42_is_recognised_by_its_closed_function_groups(tmp_path):
    path = tmp_path / "old.doc"
    path.write_bytes(b"\xc0\x01\x4a\x09\x4a\xc0Dear sir,\r\n\xd1\x00text\xd1 yours\x0d\x0a")
    assert sniff(path, "old.doc").kind == "wpd"
    path.write_bytes(b"\xc0\x01\x4a\x09\x4a\xc1Dear sir,\r\n\x01")  # the group is not closed where it must be
    assert refused(path, "old.doc").reason is Reason.UNSUPPORTED_TYPE


@pytest.mark.parametrize(
    ("mimetype", "kind", "family"),
    [
        ("application/vnd.sun.xml.writer", "sxw", Family.TEXT),
        ("application/vnd.sun.xml.calc", "sxc", Family.SPREADSHEET),
        ("application/vnd.sun.xml.impress", "sxi", Family.PRESENTATION),
        ("application/vnd.sun.xml.draw", "sxd", Family.DRAWING),
    ],
)
def test_openoffice_1_packages_are_recognised_by_mimetype(tmp_path, mimetype, kind, family):
    result = sniff(write_zip(tmp_path / "up.zip", odf_parts(mimetype)))
    assert (result.kind, result.family) == (kind, family)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def iwa_part(message_type: int) -> bytes:
    """The head of an Index/Document.iwa as iWork writes it: a chunk of Snappy data opening with a literal."""
    message_info = b"\x08" + varint(message_type) + b"\x12\x03\x01\x00\x05\x18\x9f\x01"
    archive_info = b"\x08\x01\x12" + varint(len(message_info)) + message_info
    literal = varint(len(archive_info)) + archive_info + bytes(8)
    snappy = varint(len(literal)) + bytes([(len(literal) - 1) << 2]) + literal
    return b"\x00" + len(snappy).to_bytes(3, "little") + snappy


@pytest.mark.parametrize(
    ("message_type", "names", "kind"),
    [
        (10000, ["Index/CalculationEngine.iwa", "Index/Tables/DataList.iwa"], "pages"),  # Pages has these too
        (1, ["Index/Slide-1.iwa", "Index/MasterSlide-2.iwa", "Index/CalculationEngine.iwa"], "key"),
        (1, ["Index/CalculationEngine.iwa", "Index/Tables/Tile.iwa"], "numbers"),
    ],
)
def test_iwork_2013_kind_comes_from_the_first_archived_message(tmp_path, message_type, names, kind):
    parts: dict[str, str | bytes] = {name: b"\x00\x01\x02" for name in names}
    parts["Index/Document.iwa"] = iwa_part(message_type)
    parts["Metadata/DocumentIdentifier"] = "A1B2"
    assert sniff(write_zip(tmp_path / "doc.zip", parts)).kind == kind


def test_iwork_document_iwa_of_an_unknown_kind_is_corrupt(tmp_path):
    parts: dict[str, str | bytes] = {"Index/Document.iwa": iwa_part(7), "Index/Slide-1.iwa": b"x"}
    assert refused(write_zip(tmp_path / "odd.key", parts)).reason is Reason.CORRUPT
    parts["Index/Document.iwa"] = random.Random(4).randbytes(300)
    assert refused(write_zip(tmp_path / "noise.key", parts)).reason is Reason.CORRUPT


def test_zipped_keynote_bundle_is_identified_through_its_inner_index_and_bomb_checked(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Index/Document.iwa", iwa_part(1))
        archive.writestr("Index/Slide-3.iwa", b"x")
    outer = {"Presentation.key/Index.zip": inner.getvalue(), "Presentation.key/Metadata/DocumentIdentifier": "A"}
    assert sniff(write_zip(tmp_path / "talk.key", outer)).kind == "key"
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Index/Document.iwa", iwa_part(1))
        archive.writestr("Data/zeros.bin", bytes(64 * 2**20))
    outer["Presentation.key/Index.zip"] = bomb.getvalue()
    assert refused(write_zip(tmp_path / "bomb.key", outer)).reason is Reason.ZIP_BOMB


def test_password_protected_iwork_09_is_encrypted(tmp_path):
    path = write_zip(tmp_path / "secret.pages", {"index.xml": "<x/>" * 100, "buildVersionHistory.plist": "p"})
    data = bytearray(path.read_bytes())
    for signature, method_at in ((b"PK\x01\x02", 10), (b"PK\x03\x04", 8)):
        at = data.find(signature)
        while at >= 0:
            struct.pack_into("<H", data, at + method_at, 25452)  # Apple's encrypting method
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    error = refused(path)
    assert error.reason is Reason.ENCRYPTED and "password" in error.message


def test_iwork_09_gzipped_index_is_read_and_vetted(tmp_path):
    import gzip

    index = shared_file(FORMATS_CORPUS / "tika" / "testPages.pages")
    with zipfile.ZipFile(index) as archive:
        xml = archive.read("index.xml")
    path = write_zip(tmp_path / "p.zip", {"index.xml.gz": gzip.compress(xml)})
    assert sniff(path).kind == "pages"
    hostile = BILLION_LAUGHS + '<key:presentation xmlns:key="http://developer.apple.com/namespaces/keynote2"/>'
    path = write_zip(tmp_path / "k.zip", {"index.apxl.gz": gzip.compress(hostile.encode())})
    assert refused(path).reason is Reason.HOSTILE


def test_gzip_bomb_inside_an_iwork_09_package_is_a_zip_bomb(tmp_path):
    import gzip

    xml = b'<?xml version="1.0"?>\n<sl:document xmlns:sl="http://developer.apple.com/namespaces/sl">'
    path = write_zip(tmp_path / "bomb.pages", {"index.xml.gz": gzip.compress(xml + b" " * 64 * 2**20)})
    assert refused(path).reason is Reason.ZIP_BOMB


def test_ole_of_an_unknown_kind_is_unsupported_not_corrupt(tmp_path):
    path = tmp_path / "thing.bin"
    data = shared_file(FORMATS_CORPUS / "tika" / "testVISIO.vsd").read_bytes()
    path.write_bytes(data.replace("VisioDocument".encode("utf-16-le"), "OtherDocument".encode("utf-16-le")))
    error = refused(path)
    assert error.reason is Reason.UNSUPPORTED_TYPE and "compound file" in error.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "use it as it is"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "upload the office document"),
        (b"\x1f\x8b\x08\x00" + bytes(64), "upload the office document"),
        (b"MZ\x90\x00\x03\x00" + bytes(64), "upload the office document"),
        (random.Random(9).randbytes(4096), "upload again"),
        (b"just words\n", "rename it and upload again"),
    ],
)
def test_every_refusal_says_what_to_do_next(tmp_path, data, words):
    path = tmp_path / "upload.docx"
    path.write_bytes(data)
    error = refused(path, "upload.docx")
    assert error.reason is Reason.UNSUPPORTED_TYPE and words in error.message


def test_a_plain_zip_is_named_and_the_advice_is_to_unpack_it(tmp_path):
    error = refused(write_zip(tmp_path / "photos.docx", {"a.jpg": b"\xff\xd8\xff" + bytes(10)}))
    assert error.reason is Reason.UNSUPPORTED_TYPE and "zip archive" in error.message and "unpack" in error.message


def test_excel_4_worksheet_from_the_corpus_is_identified():
    """xlrd's BIFF4 sample was refused as "not a document type"; stock LibreOffice converts it with MS Excel 4.0."""
    result = sniff(shared_file(CORPUS / "xlrd" / "biff4_no_format_no_window2.xls"))
    assert (result.kind, result.import_filter) == ("xls4", "MS Excel 4.0")


def test_a_load_failure_in_the_office_says_what_to_do_next():
    import xmlrpc.client

    from worker.office.faults import fault_message

    fault = xmlrpc.client.Fault(1, "<class 'RuntimeError'>:Could not load document /x/in.doc using a filter.")
    message = fault_message(fault)
    assert "could not load" in message and "upload again" in message
