"""Layer 4 of issue 11: the sniffer parses every XML part (worker/xml_guard.py) instead of scanning prologs.

Each bypass of the old prolog scan named in the issue, each entity and nesting bomb, and the real-world DTD uses
that must keep converting. Everything goes through sniff(), the way an upload does.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zipfile
from pathlib import Path

import pytest

from tests import hostile_docs
from tests.unit.sniff_builders import (
    BILLION_LAUGHS,
    DATA,
    DOCUMENT_XML,
    WORD_MAIN,
    flat_odf,
    odf_parts,
    ooxml_parts,
    refused,
    write_zip,
)
from worker import xml_guard
from worker.errors import Reason
from worker.sniff import sniff

ODT = "application/vnd.oasis.opendocument.text"
BODY = DOCUMENT_XML.split("\n", 1)[1]  # the main part without its XML declaration
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol2;</text></svg>'
SVG_TYPE = '<Default Extension="svg" ContentType="image/svg+xml"/>'


def docx_with(tmp_path: Path, extra: dict[str, str | bytes], *, content_types_extra: str = "") -> Path:
    parts = ooxml_parts()
    if content_types_extra:
        parts["[Content_Types].xml"] = str(parts["[Content_Types].xml"]).replace("</Types>",
                                                                                 content_types_extra + "</Types>")
    parts.update(extra)
    return write_zip(tmp_path / "doc.docx", parts)


def hostile(path: Path, *fragments: str) -> str:
    error = refused(path)
    assert error.reason is Reason.HOSTILE, error
    for fragment in fragments:
        assert fragment in error.message, error.message
    return error.message


# -- the four bypasses of the old scan (issue 11) -------------------------------------------------------------


def test_doctype_whose_internal_subset_starts_with_a_comment_holding_a_bracket_is_hostile(tmp_path: Path) -> None:
    subset = BILLION_LAUGHS.replace("<!DOCTYPE lolz [\n", "<!DOCTYPE lolz [\n<!-- ] > -->\n")
    assert "<!-- ] > -->" in subset
    main_xml = subset + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>'
    path = write_zip(tmp_path / "comment.docx", ooxml_parts(main_xml=main_xml))
    hostile(path, "word/document.xml", "lol1")


def test_main_part_named_dat_through_a_content_type_override_is_parsed(tmp_path: Path) -> None:
    main_xml = BILLION_LAUGHS + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>'
    path = write_zip(tmp_path / "dat.docx", ooxml_parts(main_part="/word/document.dat", main_xml=main_xml))
    hostile(path, "the part word/document.dat")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_part_without_bom_is_parsed(tmp_path: Path, encoding: str) -> None:
    main_xml = (BILLION_LAUGHS.replace('"1.0"', '"1.0" encoding="UTF-16"')
                + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>').encode(encoding)
    assert main_xml[:2] in (b"<\x00", b"\x00<")  # no byte order mark
    hostile(write_zip(tmp_path / "u16.docx", ooxml_parts(main_xml=main_xml)), "word/document.xml")  # type: ignore[arg-type]


def test_billion_laughs_in_an_embedded_svg_picture_is_hostile(tmp_path: Path) -> None:
    path = docx_with(tmp_path, {"word/media/image1.svg": BILLION_LAUGHS + SVG}, content_types_extra=SVG_TYPE)
    message = hostile(path, "the part word/media/image1.svg")
    assert "billion-laughs" in message


def test_svg_picture_under_a_name_that_hides_it_is_still_parsed(tmp_path: Path) -> None:
    # LibreOffice's graphic filter recognises SVG by its bytes, whatever the part is called.
    path = docx_with(tmp_path, {"word/media/image1.png": BILLION_LAUGHS + SVG})
    hostile(path, "word/media/image1.png")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_svg_bomb_behind_a_long_run_of_blank_space_is_still_parsed(tmp_path: Path, compress: bool) -> None:
    # XML allows any amount of blank space before a DOCTYPE when there is no XML declaration.
    svg = (" \n" * 300_000 + BILLION_LAUGHS.split("\n", 1)[1] + SVG).encode()
    data = gzip.compress(svg) if compress else svg
    hostile(docx_with(tmp_path, {"word/media/image1.png": data}), "word/media/image1.png")


def test_blank_space_then_binary_in_a_picture_is_not_xml(tmp_path: Path) -> None:
    data = b" " * 1000 + b"\x89PNG not really" + bytes(100)
    assert sniff(docx_with(tmp_path, {"word/media/image1.png": data})).kind == "docx"


def test_gzipped_svg_picture_is_inflated_and_parsed(tmp_path: Path) -> None:
    svgz = gzip.compress((BILLION_LAUGHS + SVG).encode())
    hostile(docx_with(tmp_path, {"word/media/image1.svgz": svgz}), "word/media/image1.svgz")


def test_billion_laughs_in_an_odt_svg_picture_is_hostile(tmp_path: Path) -> None:
    parts = odf_parts(ODT)
    parts["Pictures/bomb.svg"] = BILLION_LAUGHS + SVG
    hostile(write_zip(tmp_path / "svg.odt", parts), "Pictures/bomb.svg")


def test_billion_laughs_in_an_embedded_object_of_an_odt_is_hostile(tmp_path: Path) -> None:
    parts = odf_parts(ODT)
    parts["Object 1/content.xml"] = BILLION_LAUGHS + "<office:document-content/>"
    hostile(write_zip(tmp_path / "obj.odt", parts), "Object 1/content.xml")


# -- entity rules -----------------------------------------------------------------------------------------------


def test_external_entity_is_hostile(tmp_path: Path) -> None:
    main_xml = ('<?xml version="1.0"?>\n<!DOCTYPE w [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>\n'
                + BODY.replace("hello", "&xxe;"))
    hostile(write_zip(tmp_path / "xxe.docx", ooxml_parts(main_xml=main_xml)), "xxe")


def test_parameter_entity_is_hostile(tmp_path: Path) -> None:
    main_xml = ('<?xml version="1.0"?>\n<!DOCTYPE w [<!ENTITY % p "<!ENTITY x \'y\'>"> %p;]>\n' + BODY)
    hostile(write_zip(tmp_path / "pe.docx", ooxml_parts(main_xml=main_xml)), "parameter")


def test_quadratic_blowup_is_hostile(tmp_path: Path) -> None:
    # One legal-looking entity referenced a million times: no nesting, but megabytes of expansion.
    main_xml = ('<?xml version="1.0"?>\n<!DOCTYPE w [<!ENTITY a "' + "a" * 1000 + '">]>\n'
                + BODY.replace("hello", "&a;" * 20_000))
    hostile(write_zip(tmp_path / "quad.docx", ooxml_parts(main_xml=main_xml)), "expands its XML entities")


def test_attribute_defaults_in_a_dtd_are_hostile(tmp_path: Path) -> None:
    main_xml = '<?xml version="1.0"?>\n<!DOCTYPE w [<!ATTLIST w:t x CDATA "y">]>\n' + BODY
    hostile(write_zip(tmp_path / "attlist.docx", ooxml_parts(main_xml=main_xml)), "attribute defaults")


def test_doctype_pointing_at_a_url_is_hostile_even_in_an_svg(tmp_path: Path) -> None:
    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg SYSTEM "http://127.0.0.1:9/x.dtd">\n' + SVG.replace("&lol2;", "")
    hostile(docx_with(tmp_path, {"word/media/image1.svg": svg}), "http://127.0.0.1:9/x.dtd")


def test_illustrator_svg_with_namespace_entities_is_allowed(tmp_path: Path) -> None:
    # What Adobe Illustrator writes (jodconverter/test_toc.odt in the corpus has one): a W3C DTD plus constants.
    svg = ('<?xml version="1.0" encoding="utf-8"?>\n'
           '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd" [\n'
           '\t<!ENTITY ns_svg "http://www.w3.org/2000/svg">\n\t<!ENTITY ns_xlink "http://www.w3.org/1999/xlink">\n]>\n'
           '<svg version="1.1" xmlns="&ns_svg;" xmlns:xlink="&ns_xlink;" width="14" height="14"><g/></svg>')
    assert sniff(docx_with(tmp_path, {"word/media/image1.svg": svg}, content_types_extra=SVG_TYPE)).kind == "docx"


def test_bare_relative_doctype_in_a_basic_library_is_allowed(tmp_path: Path) -> None:
    hostile_docs.make_macro_onload_odt(path := tmp_path / "macro.odt", tmp_path / "never.txt")
    assert sniff(path).kind == "odt"


# -- encodings ----------------------------------------------------------------------------------------------------


def test_encoding_expat_lacks_is_decoded_by_python_and_still_parsed(tmp_path: Path) -> None:
    main_xml = (BILLION_LAUGHS.replace('"1.0"', '"1.0" encoding="Shift_JIS"')
                + '<w:document xmlns:w="urn:x"><w:body>&lol2;</w:body></w:document>').encode("shift_jis")
    hostile(write_zip(tmp_path / "sjis.docx", ooxml_parts(main_xml=main_xml)), "word/document.xml")  # type: ignore[arg-type]


def test_shift_jis_document_converts(tmp_path: Path) -> None:
    main_xml = DOCUMENT_XML.replace("UTF-8", "Shift_JIS").replace("hello", "\u65e5\u672c").encode("shift_jis")
    assert sniff(write_zip(tmp_path / "sjis.docx", ooxml_parts(main_xml=main_xml))).kind == "docx"  # type: ignore[arg-type]


def test_long_declaration_in_an_encoding_expat_lacks_is_still_decoded(tmp_path: Path) -> None:
    # The declaration runs past the 64 bytes the sniffer reads first to decide whether a part is XML.
    main_xml = DOCUMENT_XML.replace("UTF-8", "Shift_JIS").replace('standalone="yes"', 'standalone="yes"            ')
    assert main_xml.index("?>") > 64
    assert sniff(write_zip(tmp_path / "sjis.docx", ooxml_parts(main_xml=main_xml.encode("shift_jis")))).kind == "docx"  # type: ignore[arg-type]


def test_unknown_encoding_is_corrupt(tmp_path: Path) -> None:
    main_xml = DOCUMENT_XML.replace("UTF-8", "x-made-up")
    error = refused(write_zip(tmp_path / "enc.docx", ooxml_parts(main_xml=main_xml)))
    assert error.reason is Reason.CORRUPT and "x-made-up" in error.message


@pytest.mark.parametrize("prefix", [b"\x00\x00\x00<", b"\x4c\x6f\xa7\x94"], ids=["utf-32", "ebcdic"])
def test_encodings_only_libxml2_reads_are_refused(tmp_path: Path, prefix: bytes) -> None:
    error = refused(docx_with(tmp_path, {"word/odd.bin": prefix + b"\x00" * 40}))
    assert error.reason is Reason.CORRUPT and "word/odd.bin" in error.message


# -- what is and is not an XML part ---------------------------------------------------------------------------------


def test_malformed_xml_part_is_corrupt_and_named(tmp_path: Path) -> None:
    error = refused(docx_with(tmp_path, {"word/footer1.xml": "<w:ftr><w:p></w:ftr>"}))
    assert error.reason is Reason.CORRUPT and "word/footer1.xml" in error.message


def test_part_declared_xml_by_content_type_is_parsed_whatever_its_bytes(tmp_path: Path) -> None:
    extra = '<Override PartName="/word/custom.bin" ContentType="application/vnd.example+xml"/>'
    error = refused(docx_with(tmp_path, {"word/custom.bin": b"\x01\x02 not xml"}, content_types_extra=extra))
    assert error.reason is Reason.CORRUPT and "word/custom.bin" in error.message


def test_empty_parts_and_compressed_pictures_are_not_xml(tmp_path: Path) -> None:
    # LibreOffice writes empty Configurations2 parts; Office stores EMF pictures gzipped (.emz).
    emz = gzip.compress(b"\x01\x00\x00\x00" + bytes(200))
    assert sniff(docx_with(tmp_path, {"word/empty.xml": "", "word/media/image1.emz": emz})).kind == "docx"


def test_the_committed_samples_still_pass() -> None:
    for name in ("sample.docx", "sample.xlsx", "sample.pptx", "sample.odt", "sample.ods", "sample.rtf"):
        assert sniff(DATA / name, name).kind == name.rsplit(".", 1)[1]


# -- nesting --------------------------------------------------------------------------------------------------------


def test_tables_nested_beyond_the_limit_in_a_docx_are_hostile(tmp_path: Path) -> None:
    depth = xml_guard.MAX_TABLE_DEPTH + 1
    hostile(hostile_docs.make_nested_tables_docx(tmp_path / "deep.docx", depth), "word/document.xml", "tables")


def test_tables_nested_to_the_limit_in_a_docx_are_allowed(tmp_path: Path) -> None:
    path = hostile_docs.make_nested_tables_docx(tmp_path / "ok.docx", xml_guard.MAX_TABLE_DEPTH)
    assert sniff(path).kind == "docx"


def test_tables_nested_beyond_the_limit_in_an_odt_are_hostile(tmp_path: Path) -> None:
    path = hostile_docs.make_nested_tables_odt(tmp_path / "deep.odt", xml_guard.MAX_TABLE_DEPTH + 1)
    hostile(path, "content.xml", "tables")


def test_element_depth_beyond_the_limit_is_hostile(tmp_path: Path) -> None:
    path = hostile_docs.make_nested_groups_pptx(tmp_path / "deep.pptx", xml_guard.MAX_ELEMENT_DEPTH,
                                                DATA / "sample.pptx")
    hostile(path, "ppt/slides/slide1.xml", "deep")


def test_rtf_tables_nested_beyond_the_limit_are_hostile(tmp_path: Path) -> None:
    path = hostile_docs.make_nested_tables_rtf(tmp_path / "deep.rtf", xml_guard.MAX_RTF_TABLE_DEPTH + 1)
    hostile(path, "tables")
    ok = hostile_docs.make_nested_tables_rtf(tmp_path / "ok.rtf", xml_guard.MAX_RTF_TABLE_DEPTH)
    assert sniff(ok).kind == "rtf"


def test_rtf_itap_cut_by_a_chunk_boundary_is_still_read() -> None:
    text = b"{\\rtf1 " + b"x" * 1000 + b"\\itap999 y}"
    for cut in range(1000, 1015):
        with pytest.raises(Exception, match="999 deep"):
            xml_guard.check_rtf(iter([text[:cut], text[cut:]]), "the file")


# -- flat XML files are read whole, in chunks -----------------------------------------------------------------------


def test_nesting_bomb_past_the_head_of_a_flat_odt_is_hostile(tmp_path: Path) -> None:
    padding = "<text:p>" + "padding " * 20_000 + "</text:p>"  # well past the 64 KiB head
    tables = ("<table:table><table:table-row><table:table-cell>" * 40 + "<text:p/>"
              + "</table:table-cell></table:table-row></table:table>" * 40)
    document = flat_odf(ODT).replace(
        "<office:body/>", f'<office:body><office:text xmlns:text="t" xmlns:table="u">{padding}{tables}'
        "</office:text></office:body>")
    path = tmp_path / "deep.fodt"
    path.write_text(document, encoding="utf-8")
    hostile(path, "the file", "tables")


def test_word_2003_xml_bomb_after_a_long_comment_is_hostile(tmp_path: Path) -> None:
    path = tmp_path / "w.xml"
    path.write_text('<?xml version="1.0"?>\n<!--' + "x" * 100_000 + "-->\n" + BILLION_LAUGHS.split("\n", 1)[1]
                    + '<w:wordDocument xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml">&lol2;'
                    "</w:wordDocument>", encoding="utf-8")
    hostile(path)


def test_flat_odt_is_parsed_in_bounded_chunks(tmp_path: Path) -> None:
    reads: list[int] = []
    data = io.BytesIO(flat_odf(ODT).replace("<office:body/>", "<office:body>" + "<a/>" * 200_000
                                            + "</office:body>").encode())

    def read(size: int) -> bytes:
        reads.append(size)
        return data.read(size)

    assert xml_guard.check_xml(read, "the file") is not None
    assert len(reads) > 2 and max(reads) <= 2**20


def test_plain_text_that_looks_like_broken_xml_is_still_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("<not really xml\nsecond line\n", encoding="utf-8")
    assert sniff(path, "notes.txt").kind == "txt"


def test_flat_xml_root_is_found_behind_an_entity_free_doctype(tmp_path: Path) -> None:
    path = tmp_path / "flat.fodt"
    path.write_text(flat_odf(ODT, prolog='<?xml version="1.0"?>\n<!DOCTYPE office:document>\n'), encoding="utf-8")
    assert sniff(path).kind == "fodt"


def test_sniff_of_a_docx_with_many_pictures_reads_each_part_once(tmp_path: Path) -> None:
    parts = ooxml_parts()
    parts.update({f"word/media/image{i}.png": b"\x89PNG\r\n\x1a\n" + bytes(5000) for i in range(50)})
    assert sniff(write_zip(tmp_path / "pics.docx", parts)).kind == "docx"
    assert WORD_MAIN  # the helper module's constant is the main part type used throughout


def test_a_duplicate_metadata_entry_is_parsed_too(tmp_path: Path) -> None:
    # Zip readers disagree on which of two same-named entries wins: every one of them is vetted.
    parts = ooxml_parts()
    path = tmp_path / "dup.docx"
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name, which is the point
        archive.writestr("[Content_Types].xml", BILLION_LAUGHS + "<Types/>")
        for name, data in parts.items():
            archive.writestr(name, data)
    hostile(path, "[Content_Types].xml")
