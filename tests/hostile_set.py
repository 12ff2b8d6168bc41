"""The issue-11 hostile set: one document per vector class and per external-reference mechanism of ODF and OOXML.

Built at test time, never by hand, so every link aims at the test's own canary server and secret files:

    .venv/bin/python -m tests.hostile_set OUT_DIR [--url http://127.0.0.1:PORT] [--secrets DIR]

writes every document (and the secret files) to OUT_DIR. Each Vector says what a safe outcome is: a PDF (or a
refusal) with no request to the canary and no byte of the secrets, or, for the bombs, a `hostile` refusal.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tests import hostile_docs
from tests.hostile_docs import paragraph

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

# The marker: in the secret text, SVG text, and as the raw RGB bytes of the secret PNG (a 1-row image).
MARKER = "DWSECRET7f3a9c1e5b"
SECRET_PNG_SIZE = (len(MARKER) // 3, 1)  # 6 x 1 pixels: a size nothing else in these documents has

R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"


@dataclass(frozen=True)
class Secrets:
    """Files the worker's machine has and no document may copy into its PDF."""

    png: Path
    svg: Path
    txt: Path
    csv: Path

    @classmethod
    def write(cls, directory: Path) -> Secrets:
        directory.mkdir(parents=True, exist_ok=True)
        secrets = cls(directory / "secret.png", directory / "secret.svg", directory / "secret.txt",
                      directory / "secret.csv")
        secrets.png.write_bytes(_png_with_pixels(MARKER.encode()[: 3 * SECRET_PNG_SIZE[0]]))
        secrets.svg.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40">'
            f'<text x="5" y="25" font-size="12">{MARKER} svg</text></svg>', encoding="utf-8")
        secrets.txt.write_text(f"{MARKER} text\n", encoding="utf-8")
        secrets.csv.write_text(f"{MARKER},csv\n1,2\n", encoding="utf-8")
        return secrets


@dataclass(frozen=True)
class Vector:
    """One hostile document: `build(path, url, secrets)`; `expect` is "safe" (a PDF or a refusal) or a Reason."""

    name: str
    build: Callable[[Path, str, Secrets], Path]
    expect: str = "safe"
    what: str = ""


def _png_with_pixels(rgb: bytes) -> bytes:
    """A 1-row RGB PNG whose pixel bytes are `rgb` (so the marker shows in any losslessly embedded copy)."""
    width = len(rgb) // 3

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + rgb))
            + chunk(b"IEND", b""))


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


# --- OOXML: Word ------------------------------------------------------------------------------------------------

_W_NAMESPACES = (
    'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    f'xmlns:r="{R_NS}" '
    'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office"'
)
_DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="svg" ContentType="image/svg+xml"/><Default Extension="png" ContentType="image/png"/>'
    '<Override PartName="/word/document.xml"'
    ' ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    '<Override PartName="/word/settings.xml"'
    ' ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml"/>'
    "</Types>"
)
_PACKAGE_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{REL}officeDocument" Target="word/document.xml"/></Relationships>'
)

Rel = tuple[str, str, str, bool]  # id, type (after REL), target, external


def _rels(rels: list[Rel]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        + "".join(
            f"<Relationship Id={quoteattr(rid)} Type={quoteattr(REL + kind)} Target={quoteattr(target)}"
            + (' TargetMode="External"' if external else "") + "/>"
            for rid, kind, target, external in rels
        )
        + "</Relationships>"
    )


def write_word(path: Path, body: str, rels: list[Rel] = (), *, before_body: str = "", settings: str = "",
               settings_rels: list[Rel] = (), parts: dict[str, bytes | str] | None = None) -> Path:
    """A .docx with `body` (plus a settings part, its relationships, and any extra parts)."""
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document {_W_NAMESPACES}>'
                f"{before_body}<w:body>{paragraph('docworker hostile docx')}{body}<w:sectPr/></w:body></w:document>")
    settings_xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:settings {_W_NAMESPACES}>'
                    f"{settings}</w:settings>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _DOCX_TYPES)
        archive.writestr("_rels/.rels", _PACKAGE_RELS)
        archive.writestr("word/document.xml", document)
        archive.writestr("word/_rels/document.xml.rels",
                         _rels([("rIdSettings", "settings", "settings.xml", False), *rels]))
        archive.writestr("word/settings.xml", settings_xml)
        if settings_rels:
            archive.writestr("word/_rels/settings.xml.rels", _rels(list(settings_rels)))
        for name, data in (parts or {}).items():
            archive.writestr(name, data)
    return path


def _inline_picture(blip: str) -> str:
    return (
        '<w:p><w:r><w:drawing><wp:inline distT="0" distB="0" distL="0" distR="0">'
        '<wp:extent cx="952500" cy="952500"/><wp:docPr id="7" name="Picture"/>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        '<pic:pic><pic:nvPicPr><pic:cNvPr id="7" name="p.png"/><pic:cNvPicPr/></pic:nvPicPr>'
        f'<pic:blipFill>{blip}<a:stretch><a:fillRect/></a:stretch></pic:blipFill>'
        '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="952500" cy="952500"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr></pic:pic>'
        "</a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>"
    )


def docx_linked_image(target: str) -> Callable[[Path, str, Secrets], Path]:
    def build(path: Path, url: str, secrets: Secrets) -> Path:
        link = _target(target, url, secrets)
        return write_word(path, _inline_picture('<a:blip r:link="rIdL"/>'), [("rIdL", "image", link, True)])
    return build


def docx_shape_fill(path: Path, url: str, secrets: Secrets) -> Path:
    """A DrawingML shape (wps) whose fill is a picture at an external r:link."""
    shape = (
        '<w:p><w:r><w:drawing><wp:anchor distT="0" distB="0" distL="0" distR="0" simplePos="0" relativeHeight="1"'
        ' behindDoc="0" locked="0" layoutInCell="1" allowOverlap="1"><wp:simplePos x="0" y="0"/>'
        '<wp:positionH relativeFrom="column"><wp:posOffset>0</wp:posOffset></wp:positionH>'
        '<wp:positionV relativeFrom="paragraph"><wp:posOffset>0</wp:posOffset></wp:positionV>'
        '<wp:extent cx="914400" cy="914400"/><wp:wrapNone/><wp:docPr id="5" name="Shape"/><wp:cNvGraphicFramePr/>'
        '<a:graphic><a:graphicData uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
        '<wps:wsp><wps:cNvSpPr/><wps:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom><a:blipFill><a:blip r:link="rIdF"/><a:stretch>'
        "<a:fillRect/></a:stretch></a:blipFill></wps:spPr><wps:bodyPr/></wps:wsp></a:graphicData></a:graphic>"
        "</wp:anchor></w:drawing></w:r></w:p>"
    )
    return write_word(path, shape, [("rIdF", "image", url + "?docx-shape-fill", True)])


def docx_vml_fill(path: Path, url: str, secrets: Secrets) -> Path:
    """A VML rectangle filled with an external picture (v:fill r:id)."""
    shape = ('<w:p><w:r><w:pict><v:rect style="width:100pt;height:60pt"><v:fill r:id="rIdV" type="frame"/>'
             "</v:rect></w:pict></w:r></w:p>")
    return write_word(path, shape, [("rIdV", "image", url + "?docx-vml-fill", True)])


def docx_page_background(path: Path, url: str, secrets: Secrets) -> Path:
    background = ('<w:background w:color="FFFFFF"><v:background id="_x0000_s1025" o:bwmode="white">'
                  '<v:fill r:id="rIdBg" o:title="bg" type="frame"/></v:background></w:background>')
    return write_word(path, "", [("rIdBg", "image", url + "?docx-page-background", True)],
                      before_body=background, settings="<w:displayBackgroundShape/>")


def docx_attached_template(path: Path, url: str, secrets: Secrets) -> Path:
    return write_word(path, "", settings='<w:attachedTemplate r:id="rIdT"/>',
                      settings_rels=[("rIdT", "attachedTemplate", url + "?docx-template.dotx", True)])


def docx_subdocument(path: Path, url: str, secrets: Secrets) -> Path:
    return write_word(path, '<w:p><w:subDoc r:id="rIdS"/></w:p>',
                      [("rIdS", "subDocument", url + "?docx-subdoc.docx", True)])


def docx_alt_chunk(path: Path, url: str, secrets: Secrets) -> Path:
    return write_word(path, '<w:altChunk r:id="rIdA"/>', [("rIdA", "aFChunk", url + "?docx-altchunk.html", True)])


def docx_linked_ole(path: Path, url: str, secrets: Secrets) -> Path:
    """A linked (not embedded) OLE object whose preview picture is also linked."""
    obj = ('<w:p><w:r><w:object w:dxaOrig="1440" w:dyaOrig="1440">'
           '<v:shape id="_x0000_i1025" style="width:72pt;height:72pt"><v:imagedata r:id="rIdImg" o:title=""/>'
           '</v:shape><o:OLEObject Type="Link" ProgID="Excel.Sheet.12" ShapeID="_x0000_i1025" DrawAspect="Content"'
           ' r:id="rIdOle" UpdateMode="Always"><o:LinkType>EnhancedMetaFile</o:LinkType>'
           "<o:LockedField>false</o:LockedField></o:OLEObject></w:object></w:r></w:p>")
    return write_word(path, obj, [("rIdImg", "image", url + "?docx-ole-preview", True),
                                  ("rIdOle", "oleObject", url + "?docx-ole.xlsx", True)])


def _field(instruction: str) -> str:
    return (f"<w:p><w:fldSimple w:instr={quoteattr(instruction)}><w:r><w:t>cached field result</w:t></w:r>"
            "</w:fldSimple></w:p>")


def docx_fields(path: Path, url: str, secrets: Secrets) -> Path:
    """INCLUDEPICTURE and INCLUDETEXT fields at the canary and at the secrets (complex fields too)."""
    body = (_field(f' INCLUDEPICTURE "{url}?docx-includepicture" \\d ')
            + _field(f' INCLUDEPICTURE "{secrets.png}" \\d ')
            + _field(f' INCLUDETEXT "{url}?docx-includetext" ')
            + _field(f' INCLUDETEXT "{secrets.txt}" ')
            + '<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve">'
            f' INCLUDEPICTURE "{escape(file_url(secrets.png))}" </w:instrText></w:r>'
            '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>cached</w:t></w:r>'
            '<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>')
    return write_word(path, body)


def _svg_with_image(href: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"'
            ' xmlns:xlink="http://www.w3.org/1999/xlink" width="200" height="100" viewBox="0 0 200 100">'
            f'<rect width="200" height="100" fill="#eeeeee"/><image x="0" y="0" width="200" height="40"'
            f" xlink:href={quoteattr(href)} href={quoteattr(href)}/></svg>")


def docx_svg_image_href(target: str) -> Callable[[Path, str, Secrets], Path]:
    """An embedded SVG picture whose <image href> points outside the package."""
    def build(path: Path, url: str, secrets: Secrets) -> Path:
        svg = _svg_with_image(_target(target, url, secrets))
        return write_word(path, _inline_picture('<a:blip r:embed="rIdSvg"/>'),
                          [("rIdSvg", "image", "media/image1.svg", False)], parts={"word/media/image1.svg": svg})
    return build


def _target(target: str, url: str, secrets: Secrets) -> str:
    """"http" -> the canary; "png"/"svg"/"txt"/"csv" -> the file:// URL of that secret."""
    if target == "http":
        return url
    return file_url(getattr(secrets, target))


# --- OOXML: PowerPoint and Excel, on top of the committed samples --------------------------------------------------


def _patch_package(source: Path, path: Path, edits: dict[str, Callable[[str], str]],
                   parts: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename in edits:
                data = edits.pop(item.filename)(data.decode("utf-8")).encode("utf-8")
            new.writestr(item, data)
        for name, edit in edits.items():
            new.writestr(name, edit(""))
        for name, text in (parts or {}).items():
            new.writestr(name, text)
    return path


def _add_rels(rels: list[Rel]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        extra = _rels(rels).split("<Relationships", 1)[1].split(">", 1)[1].rsplit("</Relationships>", 1)[0]
        return text.replace("</Relationships>", extra + "</Relationships>")
    return edit


_PIC = (
    '<p:pic><p:nvPicPr><p:cNvPr id="{id}" name="Pic {id}"/><p:cNvPicPr/><p:nvPr/></p:nvPicPr>'
    '<p:blipFill><a:blip r:link="{rid}"/><a:stretch><a:fillRect/></a:stretch></p:blipFill>'
    '<p:spPr><a:xfrm><a:off x="720000" y="2000000"/><a:ext cx="1440000" cy="1440000"/></a:xfrm>'
    '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr></p:pic>'
)


def pptx_vectors(path: Path, url: str, secrets: Secrets) -> Path:
    """Linked picture, picture-filled shape, slide background picture and a linked OLE object in one slide."""
    fill_shape = (
        '<p:sp><p:nvSpPr><p:cNvPr id="91" name="Filled"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr><p:spPr><a:xfrm>'
        '<a:off x="3000000" y="2000000"/><a:ext cx="1440000" cy="1440000"/></a:xfrm><a:prstGeom prst="rect">'
        '<a:avLst/></a:prstGeom><a:blipFill><a:blip r:link="rIdFill"/><a:stretch><a:fillRect/></a:stretch>'
        "</a:blipFill></p:spPr></p:sp>"
    )
    ole = (
        '<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="92" name="Linked OLE"/><p:cNvGraphicFramePr/><p:nvPr/>'
        '</p:nvGraphicFramePr><p:xfrm><a:off x="5500000" y="2000000"/><a:ext cx="1440000" cy="1440000"/></p:xfrm>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/presentationml/2006/ole">'
        '<p:oleObj name="Worksheet" r:id="rIdOle" imgW="1440000" imgH="1440000" progId="Excel.Sheet.12">'
        '<p:link updateAutomatic="1"/><p:pic><p:nvPicPr><p:cNvPr id="93" name=""/><p:cNvPicPr/><p:nvPr/>'
        '</p:nvPicPr><p:blipFill><a:blip r:link="rIdOleImg"/><a:stretch><a:fillRect/></a:stretch></p:blipFill>'
        '<p:spPr><a:xfrm><a:off x="5500000" y="2000000"/><a:ext cx="1440000" cy="1440000"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr></p:pic></p:oleObj></a:graphicData></a:graphic>'
        "</p:graphicFrame>"
    )
    background = ('<p:bg><p:bgPr><a:blipFill><a:blip r:link="rIdBg"/><a:stretch><a:fillRect/></a:stretch>'
                  "</a:blipFill><a:effectLst/></p:bgPr></p:bg>")
    shapes = _PIC.format(id=90, rid="rIdPic") + fill_shape + ole
    rels = [("rIdPic", "image", url + "?pptx-linked-image", True), ("rIdFill", "image", url + "?pptx-fill", True),
            ("rIdBg", "image", url + "?pptx-background", True), ("rIdOle", "oleObject", url + "?pptx-ole.xlsx", True),
            ("rIdOleImg", "image", url + "?pptx-ole-preview", True)]
    return _patch_package(DATA / "sample.pptx", path, {
        "ppt/slides/slide1.xml": lambda t: t.replace("<p:cSld>", "<p:cSld>" + background, 1)
        .replace("</p:spTree>", shapes + "</p:spTree>", 1),
        "ppt/slides/_rels/slide1.xml.rels": _add_rels(rels),
    })


def pptx_linked_secret(path: Path, url: str, secrets: Secrets) -> Path:
    """Linked pictures at the secret PNG and SVG (file://)."""
    shapes = _PIC.format(id=90, rid="rIdPng") + _PIC.format(id=91, rid="rIdSvg").replace('x="720000"', 'x="4000000"')
    rels = [("rIdPng", "image", file_url(secrets.png), True), ("rIdSvg", "image", file_url(secrets.svg), True)]
    return _patch_package(DATA / "sample.pptx", path, {
        "ppt/slides/slide1.xml": lambda t: t.replace("</p:spTree>", shapes + "</p:spTree>", 1),
        "ppt/slides/_rels/slide1.xml.rels": _add_rels(rels),
    })


_XDR_NS = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"


def xlsx_vectors(path: Path, url: str, secrets: Secrets) -> Path:
    """A linked picture on the sheet, WEBSERVICE() at the canary and at a secret, an external workbook link."""
    drawing = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<xdr:wsDr xmlns:xdr="{_XDR_NS}"'
        f' xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="{R_NS}">'
        '<xdr:twoCellAnchor><xdr:from><xdr:col>2</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>2</xdr:row>'
        '<xdr:rowOff>0</xdr:rowOff></xdr:from><xdr:to><xdr:col>4</xdr:col><xdr:colOff>0</xdr:colOff>'
        '<xdr:row>8</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:to><xdr:pic><xdr:nvPicPr><xdr:cNvPr id="2" name="L"/>'
        '<xdr:cNvPicPr/></xdr:nvPicPr><xdr:blipFill><a:blip r:link="rIdImg"/><a:stretch><a:fillRect/></a:stretch>'
        '</xdr:blipFill><xdr:spPr><a:prstGeom prst="rect"><a:avLst/></a:prstGeom></xdr:spPr></xdr:pic>'
        "<xdr:clientData/></xdr:twoCellAnchor></xdr:wsDr>"
    )
    external = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<externalLink'
        ' xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="' + R_NS + '">'
        '<externalBook r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames><sheetDataSet>'
        '<sheetData sheetId="0" refreshError="1"/></sheetDataSet></externalBook></externalLink>'
    )
    cells = (f'<c r="B1" t="str"><f>WEBSERVICE("{url}?xlsx-webservice")</f><v></v></c>'
             f'<c r="C1" t="str"><f>WEBSERVICE("{file_url(secrets.txt)}")</f><v></v></c>'
             '<c r="D1"><f>[1]Sheet1!A1</f><v>0</v></c>')
    types = ('<Override PartName="/xl/drawings/drawing1.xml"'
             ' ContentType="application/vnd.openxmlformats-officedocument.drawing+xml"/>'
             '<Override PartName="/xl/externalLinks/externalLink1.xml"'
             ' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>')
    return _patch_package(DATA / "sample.xlsx", path, {
        "xl/worksheets/sheet1.xml": lambda t: t.replace('t="s"><v>0</v></c>', 't="s"><v>0</v></c>' + cells, 1)
        .replace("</headerFooter>", '</headerFooter><drawing r:id="rIdDr"/>', 1),
        "xl/worksheets/_rels/sheet1.xml.rels": lambda t: _rels([("rIdDr", "drawing", "../drawings/drawing1.xml",
                                                                  False)]),
        "xl/drawings/_rels/drawing1.xml.rels": lambda t: _rels([("rIdImg", "image", url + "?xlsx-linked-image",
                                                                  True)]),
        "xl/externalLinks/_rels/externalLink1.xml.rels": lambda t: _rels(
            [("rId1", "externalLinkPath", url + "?xlsx-external-book.xlsx", True)]),
        "xl/workbook.xml": lambda t: t.replace("</sheets>", '</sheets><externalReferences>'
                                               '<externalReference r:id="rIdExt"/></externalReferences>', 1),
        "xl/_rels/workbook.xml.rels": _add_rels([("rIdExt", "externalLink", "externalLinks/externalLink1.xml",
                                                  False)]),
        "[Content_Types].xml": lambda t: t.replace("</Types>", types, 1),
    }, parts={"xl/drawings/drawing1.xml": drawing, "xl/externalLinks/externalLink1.xml": external})


# --- ODF -----------------------------------------------------------------------------------------------------------

_ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2"'
)
_ODF_TYPES = {"text": "odt", "spreadsheet": "ods", "presentation": "odp"}
_LINK = 'xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"'


def write_odf(path: Path, kind: str, body: str, *, automatic: str = "", styles: str = "",
              master: str = "", parts: dict[str, str] | None = None) -> Path:
    """An ODF package of `kind` (text, spreadsheet, presentation) with a styles.xml for fills and page styles."""
    mimetype = f"application/vnd.oasis.opendocument.{kind}"
    content = (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {_ODF_NS} office:version="1.3">'
               f"<office:automatic-styles>{automatic}</office:automatic-styles>"
               f"<office:body><office:{kind}>{body}</office:{kind}></office:body></office:document-content>")
    styles_xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-styles {_ODF_NS} office:version="1.3">'
                  f"<office:styles>{styles}</office:styles>{master}</office:document-styles>")
    parts = parts or {}
    entries = ["content.xml", "styles.xml", *parts]
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest'
        ' xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        + "".join(f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type='
                  f'"{"image/svg+xml" if name.endswith(".svg") else "text/xml"}"/>' for name in entries)
        + "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), mimetype)
        archive.writestr("content.xml", content)
        archive.writestr("styles.xml", styles_xml)
        for name, data in parts.items():
            archive.writestr(name, data)
        archive.writestr("META-INF/manifest.xml", manifest)
    return path


def _frame(inner: str, x: str = "1cm", anchor: str = 'text:anchor-type="paragraph"') -> str:
    return f'<draw:frame {anchor} svg:x="{x}" svg:y="1cm" svg:width="3cm" svg:height="3cm">{inner}</draw:frame>'


def _background(url: str) -> str:
    return f'<style:background-image xlink:href={quoteattr(url)} {_LINK} style:repeat="stretch"/>'


def odt_linked_image(target: str) -> Callable[[Path, str, Secrets], Path]:
    def build(path: Path, url: str, secrets: Secrets) -> Path:
        link = _target(target, url, secrets)
        image = _frame(f"<draw:image xlink:href={quoteattr(link)} {_LINK}/>")
        return write_odf(path, "text", f"<text:p>docworker hostile odt{image}</text:p>")
    return build


def odt_backgrounds(path: Path, url: str, secrets: Secrets) -> Path:
    """Writer: paragraph, table-cell, section and page backgrounds, a list bullet picture, a frame fill."""
    automatic = (
        '<style:style style:name="P1" style:family="paragraph"><style:paragraph-properties>'
        f"{_background(url + '?odt-paragraph-bg')}</style:paragraph-properties></style:style>"
        '<style:style style:name="Cell1" style:family="table-cell"><style:table-cell-properties>'
        f"{_background(url + '?odt-cell-bg')}</style:table-cell-properties></style:style>"
        '<style:style style:name="Sect1" style:family="section"><style:section-properties>'
        f"{_background(url + '?odt-section-bg')}</style:section-properties></style:style>"
        '<style:style style:name="gr1" style:family="graphic"><style:graphic-properties draw:fill="bitmap"'
        ' draw:fill-image-name="CanaryFill"/></style:style>'
        '<text:list-style style:name="L1"><text:list-level-style-image text:level="1"'
        f' xlink:href={quoteattr(url + "?odt-bullet")} {_LINK}><style:list-level-properties fo:width="0.5cm"'
        ' fo:height="0.5cm"/></text:list-level-style-image></text:list-style>'
    )
    styles = f'<draw:fill-image draw:name="CanaryFill" xlink:href={quoteattr(url + "?odt-frame-fill")} {_LINK}/>'
    master = (
        '<office:automatic-styles><style:page-layout style:name="pm1"><style:page-layout-properties'
        f' fo:page-width="21cm" fo:page-height="29.7cm">{_background(url + "?odt-page-bg")}'
        '</style:page-layout-properties></style:page-layout></office:automatic-styles>'
        '<office:master-styles><style:master-page style:name="Standard" style:page-layout-name="pm1"/>'
        "</office:master-styles>"
    )
    body = (
        '<text:p text:style-name="P1">docworker hostile odt backgrounds</text:p>'
        '<table:table table:name="T1"><table:table-column/><table:table-row>'
        '<table:table-cell table:style-name="Cell1"><text:p>cell</text:p></table:table-cell></table:table-row>'
        '</table:table><text:section text:style-name="Sect1" text:name="S1"><text:p>section</text:p></text:section>'
        '<text:list text:style-name="L1"><text:list-item><text:p>bullet</text:p></text:list-item></text:list>'
        '<text:p><draw:rect draw:style-name="gr1" text:anchor-type="paragraph" svg:x="1cm" svg:y="1cm"'
        ' svg:width="3cm" svg:height="3cm"/></text:p>'
    )
    return write_odf(path, "text", body, automatic=automatic, styles=styles, master=master)


def odt_links(path: Path, url: str, secrets: Secrets) -> Path:
    """Writer: linked sections (canary, secret text), a linked OLE object, a DDE-free text:a-free set of links."""
    body = (
        "<text:p>docworker hostile odt links</text:p>"
        f'<text:section text:name="Http"><text:section-source xlink:href={quoteattr(url + "?odt-section")}'
        ' xlink:type="simple" xlink:show="embed"/><text:p>cached http section</text:p></text:section>'
        f'<text:section text:name="File"><text:section-source xlink:href={quoteattr(file_url(secrets.txt))}'
        ' xlink:type="simple" xlink:show="embed" text:filter-name="Text"/><text:p>cached file section</text:p>'
        "</text:section>"
        "<text:p>" + _frame(f"<draw:object xlink:href={quoteattr(url + '?odt-ole')} {_LINK}/>") + "</text:p>"
    )
    return write_odf(path, "text", body)


def odt_svg_image_href(target: str) -> Callable[[Path, str, Secrets], Path]:
    def build(path: Path, url: str, secrets: Secrets) -> Path:
        image = _frame(f'<draw:image xlink:href="Pictures/pic.svg" {_LINK}/>')
        return write_odf(path, "text", f"<text:p>docworker hostile odt svg{image}</text:p>",
                         parts={"Pictures/pic.svg": _svg_with_image(_target(target, url, secrets))})
    return build


def ods_vectors(path: Path, url: str, secrets: Secrets) -> Path:
    """Calc: linked image, linked OLE object, area link, sheet link (with a refresh delay), WEBSERVICE()."""
    shapes = (
        "<table:shapes>"
        + _frame(f"<draw:image xlink:href={quoteattr(url + '?ods-linked-image')} {_LINK}/>", anchor="")
        + _frame(f"<draw:object xlink:href={quoteattr(url + '?ods-ole')} {_LINK}/>", x="5cm", anchor="")
        + "</table:shapes>"
    )
    csv_options = 'table:filter-name="Text - txt - csv (StarCalc)" table:filter-options="44,34,76,1"'
    body = (
        f'<table:table table:name="Sheet1">{shapes}<table:table-column table:number-columns-repeated="3"/>'
        '<table:table-row><table:table-cell office:value-type="string"><text:p>docworker hostile ods</text:p>'
        "</table:table-cell>"
        f'<table:table-cell table:formula="of:=WEBSERVICE(&quot;{url}?ods-webservice&quot;)"'
        ' office:value-type="string" office:string-value=""><text:p/></table:table-cell>'
        f'<table:table-cell table:formula="of:=WEBSERVICE(&quot;{file_url(secrets.txt)}&quot;)"'
        ' office:value-type="string" office:string-value=""><text:p/></table:table-cell></table:table-row>'
        f'<table:table-row><table:table-cell><table:cell-range-source table:name="A1:B2"'
        f' xlink:href={quoteattr(url + "?ods-area-link")} xlink:type="simple" {csv_options}'
        ' table:last-column-spanned="2" table:last-row-spanned="2" table:refresh-delay="PT1S"/>'
        "<text:p>area</text:p></table:table-cell></table:table-row></table:table>"
        f'<table:table table:name="HttpLink"><table:table-source table:mode="copy-all"'
        f' xlink:href={quoteattr(url + "?ods-sheet-link")} {csv_options} table:table-name=""'
        ' table:refresh-delay="PT1S"/><table:table-column/><table:table-row><table:table-cell>'
        "<text:p>cached</text:p></table:table-cell></table:table-row></table:table>"
        f'<table:table table:name="FileLink"><table:table-source table:mode="copy-all"'
        f' xlink:href={quoteattr(file_url(secrets.csv))} {csv_options} table:table-name=""/><table:table-column/>'
        "<table:table-row><table:table-cell><text:p>cached</text:p></table:table-cell></table:table-row>"
        "</table:table>"
    )
    return write_odf(path, "spreadsheet", body)


def odp_vectors(path: Path, url: str, secrets: Secrets) -> Path:
    """Impress: linked image, linked OLE object, a page background filled with a linked picture, a secret SVG."""
    automatic = ('<style:style style:name="dp1" style:family="drawing-page"><style:drawing-page-properties'
                 ' draw:fill="bitmap" draw:fill-image-name="CanaryFill" presentation:background-visible="true"/>'
                 "</style:style>")
    styles = f'<draw:fill-image draw:name="CanaryFill" xlink:href={quoteattr(url + "?odp-page-fill")} {_LINK}/>'
    body = (
        '<draw:page draw:name="p1" draw:style-name="dp1">'
        + _frame(f"<draw:image xlink:href={quoteattr(url + '?odp-linked-image')} {_LINK}/>", anchor="")
        + _frame(f"<draw:object xlink:href={quoteattr(url + '?odp-ole')} {_LINK}/>", x="5cm", anchor="")
        + _frame(f"<draw:image xlink:href={quoteattr(file_url(secrets.svg))} {_LINK}/>", x="9cm", anchor="")
        + _frame(f"<draw:image xlink:href={quoteattr(file_url(secrets.png))} {_LINK}/>", x="13cm", anchor="")
        + '<draw:frame svg:x="1cm" svg:y="6cm" svg:width="10cm" svg:height="2cm"><draw:text-box>'
        "<text:p>docworker hostile odp</text:p></draw:text-box></draw:frame></draw:page>"
    )
    return write_odf(path, "presentation", body, automatic=automatic, styles=styles)


# --- RTF -----------------------------------------------------------------------------------------------------------


def rtf_fields(path: Path, url: str, secrets: Secrets) -> Path:
    def field(instruction: str) -> str:
        return "{\\field{\\*\\fldinst " + instruction.replace("\\", "\\\\") + "}{\\fldrslt cached}}\\par\n"

    text = ("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Helvetica;}}\\f0 docworker hostile rtf\\par\n"
            + field(f'INCLUDEPICTURE "{url}?rtf-includepicture" \\d')
            + field(f'INCLUDEPICTURE "{secrets.png}" \\d')
            + field(f'INCLUDEPICTURE "{file_url(secrets.svg)}"')
            + field(f'INCLUDETEXT "{secrets.txt}"')
            + field(f'INCLUDETEXT "{url}?rtf-includetext"') + "}")
    path.write_text(text, encoding="ascii")
    return path


# --- bombs: must end as `hostile` refusals before any office sees them ----------------------------------------------

_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol0 "lol">\n'
           + "".join(f' <!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">\n' for i in range(1, 10))
           + "]>\n")


def bomb_svg_in_docx(path: Path, url: str, secrets: Secrets) -> Path:
    svg = _LAUGHS + '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol9;</text></svg>'
    return write_word(path, _inline_picture('<a:blip r:embed="rIdSvg"/>'),
                      [("rIdSvg", "image", "media/image1.svg", False)], parts={"word/media/image1.svg": svg})


def bomb_svgz_in_odt(path: Path, url: str, secrets: Secrets) -> Path:
    svg = _LAUGHS + '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol9;</text></svg>'
    image = _frame(f'<draw:image xlink:href="Pictures/pic.svgz" {_LINK}/>')
    path = write_odf(path, "text", f"<text:p>bomb{image}</text:p>")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("Pictures/pic.svgz", gzip.compress(svg.encode()))
    return path


def _bomb_body(prolog: str) -> str:
    return (prolog + '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            "<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>")


def _docx_with_main(path: Path, main: bytes, main_name: str = "word/document.xml") -> Path:
    types = _DOCX_TYPES.replace('"/word/document.xml"', f'"/{main_name}"')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", types)
        archive.writestr("_rels/.rels", _PACKAGE_RELS.replace("word/document.xml", main_name))
        archive.writestr(main_name, main)
    return path


def bomb_comment_bracket(path: Path, url: str, secrets: Secrets) -> Path:
    prolog = _LAUGHS.replace("<!DOCTYPE lolz [\n", "<!DOCTYPE lolz [\n<!-- ] > -->\n")
    return _docx_with_main(path, _bomb_body(prolog).encode())


def bomb_main_part_dat(path: Path, url: str, secrets: Secrets) -> Path:
    return _docx_with_main(path, _bomb_body(_LAUGHS).encode(), "word/document.dat")


def bomb_utf16_no_bom(path: Path, url: str, secrets: Secrets) -> Path:
    body = _bomb_body(_LAUGHS.replace('"1.0"', '"1.0" encoding="UTF-16"')).encode("utf-16-le")
    return _docx_with_main(path, body)


def _nested(build: Callable[[Path, int], Path], depth: int) -> Callable[[Path, str, Secrets], Path]:
    return lambda path, url, secrets: build(path, depth)


# --- the set -------------------------------------------------------------------------------------------------------

VECTORS: tuple[Vector, ...] = (
    Vector("docx-linked-image.docx", docx_linked_image("http"), what="picture with r:link (SSRF)"),
    Vector("docx-linked-secret-png.docx", docx_linked_image("png"), what="picture r:link file:// PNG"),
    Vector("docx-linked-secret-svg.docx", docx_linked_image("svg"), what="picture r:link file:// SVG"),
    Vector("docx-shape-fill.docx", docx_shape_fill, what="DrawingML shape a:blipFill r:link"),
    Vector("docx-vml-fill.docx", docx_vml_fill, what="VML shape v:fill r:id external"),
    Vector("docx-page-background.docx", docx_page_background, what="w:background v:fill external"),
    Vector("docx-attached-template.docx", docx_attached_template, what="settings attachedTemplate external"),
    Vector("docx-subdoc.docx", docx_subdocument, what="w:subDoc external"),
    Vector("docx-altchunk.docx", docx_alt_chunk, what="w:altChunk external"),
    Vector("docx-linked-ole.docx", docx_linked_ole, what="o:OLEObject Type=Link + linked preview"),
    Vector("docx-fields.docx", docx_fields, what="INCLUDEPICTURE/INCLUDETEXT http and secret paths"),
    Vector("docx-svg-href-http.docx", docx_svg_image_href("http"), what="embedded SVG <image href=http>"),
    Vector("docx-svg-href-secret.docx", docx_svg_image_href("png"), what="embedded SVG <image href=file://png>"),
    Vector("pptx-links.pptx", pptx_vectors, what="pptx linked picture, blipFill, background, linked OLE"),
    Vector("pptx-linked-secret.pptx", pptx_linked_secret, what="pptx pictures r:link file:// PNG and SVG"),
    Vector("xlsx-links.xlsx", xlsx_vectors, what="xlsx linked picture, WEBSERVICE, external workbook"),
    Vector("odt-linked-image.odt", odt_linked_image("http"), what="draw:image xlink:href http"),
    Vector("odt-linked-secret-png.odt", odt_linked_image("png"), what="draw:image xlink:href file:// PNG"),
    Vector("odt-linked-secret-svg.odt", odt_linked_image("svg"), what="draw:image xlink:href file:// SVG"),
    Vector("odt-backgrounds.odt", odt_backgrounds,
           what="paragraph/cell/section/page backgrounds, bullet image, frame fill"),
    Vector("odt-links.odt", odt_links, what="linked sections (http, file:// text), linked OLE"),
    Vector("odt-svg-href-http.odt", odt_svg_image_href("http"), what="ODF SVG picture <image href=http>"),
    Vector("odt-svg-href-secret.odt", odt_svg_image_href("png"), what="ODF SVG picture <image href=file://png>"),
    Vector("ods-links.ods", ods_vectors, what="Calc linked image/OLE, area link, sheet links, WEBSERVICE"),
    Vector("odp-links.odp", odp_vectors, what="Impress linked image/OLE, page fill, file:// SVG and PNG"),
    Vector("rtf-fields.rtf", rtf_fields, what="RTF INCLUDEPICTURE/INCLUDETEXT http and secrets"),
    Vector("bomb-svg-in-docx.docx", bomb_svg_in_docx, "hostile", "billion laughs in an embedded SVG"),
    Vector("bomb-svgz-in-odt.odt", bomb_svgz_in_odt, "hostile", "billion laughs in a gzipped SVG"),
    Vector("bomb-comment-bracket.docx", bomb_comment_bracket, "hostile", "DOCTYPE subset behind a comment with ]"),
    Vector("bomb-main-part-dat.docx", bomb_main_part_dat, "hostile", "main part named .dat"),
    Vector("bomb-utf16-no-bom.docx", bomb_utf16_no_bom, "hostile", "UTF-16 main part without BOM"),
    Vector("bomb-nested-tables.docx", _nested(hostile_docs.make_nested_tables_docx, 200), "hostile",
           "tables nested 200 deep"),
    Vector("bomb-nested-tables.odt", _nested(hostile_docs.make_nested_tables_odt, 1000), "hostile",
           "tables nested 1000 deep"),
    Vector("bomb-nested-tables.rtf", _nested(hostile_docs.make_nested_tables_rtf, 160), "hostile",
           "RTF tables nested 160 deep"),
    Vector("bomb-nested-groups.pptx",
           lambda p, u, s: hostile_docs.make_nested_groups_pptx(p, 1000, DATA / "sample.pptx"), "hostile",
           "shape groups nested 1000 deep"),
)


def build_all(directory: Path, url: str, secrets: Secrets) -> dict[str, Path]:
    """Write every vector's document into `directory`; returns name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    return {v.name: v.build(directory / v.name, url, secrets) for v in VECTORS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:9/canary.png")
    parser.add_argument("--secrets", type=Path)
    args = parser.parse_args()
    secrets = Secrets.write(args.secrets or args.out / "secrets")
    for name, path in build_all(args.out, args.url, secrets).items():
        print(path, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- finding the secrets in what the worker returns ----------------------------------------------------------------


def secret_traces(pdf: Path) -> list[str]:
    """Every trace of the secrets in a PDF: the marker in its text or any decoded stream, or the secret PNG's size.

    Text goes through pdftotext (LibreOffice writes glyph ids, not ASCII); streams through pypdf, decoded (the
    secret PNG's pixels are the marker's bytes, so a losslessly embedded copy shows); image sizes catch a lossy one.
    """
    from pypdf import PdfReader
    from pypdf.generic import StreamObject

    found: list[str] = []
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=False).stdout
    if MARKER in "".join(text.split()):
        found.append("marker in the PDF text")
    reader = PdfReader(pdf)
    for number in range(1, len(reader.xref_objStm) + sum(len(v) for v in reader.xref.values()) + 1):
        try:
            obj = reader.get_object(number)
        except Exception:  # free or missing object numbers
            continue
        if not isinstance(obj, StreamObject):
            continue
        try:
            data = obj.get_data()
        except Exception:  # a filter pypdf cannot decode (DCT is passed through): search the raw bytes
            data = obj._data
        if MARKER.encode() in data or MARKER.encode("utf-16-be") in data:
            found.append(f"marker in stream object {number}")
        if obj.get("/Subtype") == "/Image" and (obj.get("/Width"), obj.get("/Height")) == SECRET_PNG_SIZE:
            found.append(f"an image of the secret PNG's size ({number})")
    return found
