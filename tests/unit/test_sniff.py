"""Tests for worker.sniff: every input LibreOffice must never see is refused with the right reason.

The real-world corpus and the legacy formats are in test_sniff_corpus.py; the builders in sniff_builders.py.
"""

from __future__ import annotations

import random
import subprocess
import zipfile
from pathlib import Path

import msoffcrypto
import pytest

from tests.harness.processes import bytes_read_by_this_process
from tests.unit.sniff_builders import (
    BILLION_LAUGHS,
    DATA,
    DOCUMENT_XML,
    STRICT_OFFICE_DOCUMENT,
    WORD_MAIN,
    flat_odf,
    legacy_with_word_stream,
    make_docx,
    odf_parts,
    ooxml_parts,
    patch_central_directory,
    refused,
    write_zip,
)
from worker.errors import Reason, WorkerError
from worker.sniff import Family, Sniffed, sniff

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


def encrypt_ooxml(plain: Path, encrypted: Path, password: str) -> Path:
    """msoffcrypto-tool 6.1 cannot decrypt its own output of a package under a few KiB: pad it like real files."""
    with zipfile.ZipFile(plain, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("docProps/padding.bin", random.Random(3).randbytes(8192))
    with plain.open("rb") as source, encrypted.open("wb") as target:
        msoffcrypto.OfficeFile(source).encrypt(password, target)
    return encrypted


def test_encrypted_docx_is_encrypted(tmp_path):
    encrypted = encrypt_ooxml(make_docx(tmp_path / "plain.docx"), tmp_path / "secret.docx", "s3cret")
    error = refused(encrypted)
    assert error.reason is Reason.PASSWORD_REQUIRED
    assert "docworker-password-secret" in error.message
    opened = sniff(encrypted, password="s3cret")
    assert (opened.kind, opened.encrypted) == ("docx", True)
    with pytest.raises(WorkerError) as wrong:
        sniff(encrypted, password="not it")
    assert wrong.value.reason is Reason.PASSWORD_WRONG


def test_an_encrypted_package_is_vetted_once_decrypted(tmp_path):
    """The password opens the package to the sniffer too: a bomb inside the encryption is still refused."""
    main_xml = BILLION_LAUGHS + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>'
    encrypted = encrypt_ooxml(make_docx(tmp_path / "lol.docx", main_xml=main_xml), tmp_path / "lol-e.docx", "s3cret")
    assert refused(encrypted).reason is Reason.PASSWORD_REQUIRED
    with pytest.raises(WorkerError) as caught:
        sniff(encrypted, password="s3cret")
    assert caught.value.reason is Reason.HOSTILE


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
    path = write_zip(tmp_path / "secret.odt", parts)
    assert refused(path).reason is Reason.PASSWORD_REQUIRED
    opened = sniff(path, password="anything")  # ODF is not decrypted here: the office's load decides
    assert (opened.kind, opened.encrypted) == ("odt", True)


def test_zip_level_encryption_is_encrypted(tmp_path):
    path = make_docx(tmp_path / "zipcrypto.docx")
    patch_central_directory(path, "word/document.xml", flags=0x1)  # zipfile will not write the bit itself
    assert refused(path).reason is Reason.ENCRYPTED


def test_password_protected_legacy_doc_is_encrypted(tmp_path):
    def set_f_encrypted(stream: bytearray) -> None:
        stream[0x0B] |= 0x01  # FIB base: fEncrypted

    assert refused(legacy_with_word_stream(tmp_path, set_f_encrypted)).reason is Reason.PASSWORD_REQUIRED


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
