"""worker.sniff against real documents: the shared corpus, and the legacy and other formats stock LibreOffice
converts (issue 12).
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
from pathlib import Path

import olefile
import pytest

from tests.corpora import CORPUS, missing_reason, need_corpus
from tests.corpora import FORMATS as FORMATS_DIR
from tests.harness.processes import bytes_read_by_this_process
from tests.unit.sniff_builders import (
    BILLION_LAUGHS,
    DATA,
    legacy_with_word_stream,
    odf_parts,
    refused,
    write_zip,
)
from worker.errors import Reason, WorkerError
from worker.formats import FORMATS
from worker.sniff import Family, Sniffed, sniff

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
            # every encrypted corpus file is one LibreOffice opens given its password
            assert isinstance(result, WorkerError) and result.reason is Reason.PASSWORD_REQUIRED, result
            given = re.search(r"password '([^']+)'", notes)
            if given:  # the manifest gives the password: it passes, and an OOXML package is vetted decrypted
                opened = sniff(path, path.name, password=given.group(1))
                assert opened.encrypted and opened.import_filter
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

FORMATS_CORPUS = FORMATS_DIR


def shared_file(path: Path) -> Path:
    """A file of the shared corpora; without them the test says loudly that it did not run (and fails in CI)."""
    need_corpus(CORPUS if CORPUS in path.parents else FORMATS_CORPUS)
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
