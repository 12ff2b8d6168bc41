"""Build hostile documents at test time, so security tests can aim links at a port and marker they choose."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_REL_IMAGE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image"

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" \
ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"""

_PACKAGE_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="word/document.xml" \
Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""

_ODF_NAMESPACES = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
    'xmlns:ooo="http://openoffice.org/2004/office" '
    # Event names are QNames: without this binding LibreOffice silently drops the "dom:load" listener.
    'xmlns:dom="http://www.w3.org/2001/xml-events" '
    'xmlns:xlink="http://www.w3.org/1999/xlink"'
)


def write_docx(path: Path, body_xml: str, rels: Sequence[tuple[str, str, str, bool]] = ()) -> None:
    """Write a minimal .docx with `body_xml` as its body; `rels` are (id, type, target, external) tuples."""
    rel_lines = "".join(
        f"<Relationship Id={quoteattr(rid)} Type={quoteattr(rtype)} Target={quoteattr(target)}"
        + (' TargetMode="External"' if external else "")
        + "/>"
        for rid, rtype, target, external in rels
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:document xmlns:w="{_W_NS}" xmlns:r="{_R_NS}"'
        ' xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"'
        ' xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
        ' xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        f"<w:body>{body_xml}<w:sectPr/></w:body></w:document>"
    )
    document_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f"{rel_lines}</Relationships>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _PACKAGE_RELS)
        archive.writestr("word/document.xml", document)
        archive.writestr("word/_rels/document.xml.rels", document_rels)


def paragraph(text: str) -> str:
    """One WordprocessingML paragraph holding `text`."""
    return f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'


def _linked_picture(rel_id: str, number: int) -> str:
    """A paragraph with an inline picture whose bytes live at an external URL (`r:link`, not `r:embed`)."""
    return (
        '<w:p><w:r><w:drawing><wp:inline distT="0" distB="0" distL="0" distR="0">'
        '<wp:extent cx="952500" cy="952500"/>'
        f'<wp:docPr id="{number}" name="Linked picture {number}"/>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        f'<pic:pic><pic:nvPicPr><pic:cNvPr id="{number}" name="canary{number}.png"/>'
        "<pic:cNvPicPr/></pic:nvPicPr>"
        f'<pic:blipFill><a:blip r:link="{rel_id}"/><a:stretch><a:fillRect/></a:stretch></pic:blipFill>'
        '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="952500" cy="952500"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr></pic:pic>'
        "</a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>"
    )


def make_linked_image_docx(path: Path, url: str) -> None:
    """A .docx whose only picture is fetched from `url` when it is rendered (server-side request forgery)."""
    body = paragraph("linked image below") + _linked_picture("rIdLink1", 1)
    write_docx(path, body, [("rIdLink1", _REL_IMAGE, url, True)])


def make_many_links_docx(path: Path, url: str, n: int) -> None:
    """A .docx with `n` linked pictures at distinct URLs (`url?n=i`): fetch delays add up (tarpit test)."""
    separator = "&" if "?" in url else "?"
    body = paragraph(f"{n} linked images below") + "".join(_linked_picture(f"rIdLink{i}", i) for i in range(1, n + 1))
    rels = [(f"rIdLink{i}", _REL_IMAGE, f"{url}{separator}n={i}", True) for i in range(1, n + 1)]
    write_docx(path, body, rels)


def make_dde_docx(path: Path) -> None:
    """A .docx with a DDEAUTO field (the classic Office command-execution lure) and its cached result text."""
    instruction = ' DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k echo docworker-dde" '
    body = (
        paragraph("DDE field below") + '<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        f'<w:r><w:instrText xml:space="preserve">{escape(instruction)}</w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
        "<w:r><w:t>docworker dde cached result</w:t></w:r>"
        '<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
    )
    write_docx(path, body)


def write_odt(
    path: Path, body_xml: str, *, scripts_xml: str = "", extra: dict[str, str] | None = None,
    root_namespaces: str = "",
) -> None:
    """Write a minimal .odt (stored mimetype first, manifest of every part) with `body_xml` as office:text."""
    extra = extra or {}
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<office:document-content {_ODF_NAMESPACES} {root_namespaces} office:version="1.3">'
        f"{scripts_xml}<office:body><office:text>{body_xml}</office:text></office:body></office:document-content>"
    )
    entries = ["content.xml", *extra]
    folders = sorted({name.rsplit("/", 1)[0] + "/" for name in extra if "/" in name})
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.3"><manifest:file-entry manifest:full-path="/"'
        ' manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        + "".join(f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type=""/>' for name in folders)
        + "".join(
            f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>' for name in entries
        )
        + "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
        for name, data in extra.items():
            archive.writestr(name, data)
        archive.writestr("META-INF/manifest.xml", manifest)


def make_linked_image_odt(path: Path, url: str) -> None:
    """An .odt whose only image is `draw:image xlink:href=url`, fetched when the document is rendered."""
    body = (
        "<text:p>linked image below</text:p><text:p>"
        '<draw:frame draw:name="canary" text:anchor-type="as-char" svg:width="2.5cm" svg:height="2.5cm">'
        f'<draw:image xlink:href={quoteattr(url)} xlink:type="simple" xlink:show="embed"'
        ' xlink:actuate="onLoad"/>'
        "</draw:frame></text:p>"
    )
    write_odt(path, body)


def make_macro_onload_odt(path: Path, marker_path: Path) -> None:
    """An .odt with a Basic macro bound to OnLoad (dom:load) that writes `marker_path` if it ever runs."""
    basic = (
        "Sub OnLoad\n"
        "  Dim n As Integer\n"
        "  n = FreeFile\n"
        f'  Open "{marker_path}" For Output As #n\n'
        '  Print #n, "docworker macro ran"\n'
        "  Close #n\n"
        "End Sub\n"
    )
    dtd = '<!DOCTYPE {root} PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "{dtd}">\n'
    script_lc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + dtd.format(root="library:libraries", dtd="libraries.dtd")
        + '<library:libraries xmlns:library="http://openoffice.org/2000/library" xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<library:library library:name="Standard" xlink:href="Basic/Standard/script-lb.xml/"'
        ' xlink:type="simple" library:link="false"/></library:libraries>'
    )
    script_lb = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + dtd.format(root="library:library", dtd="library.dtd")
        + '<library:library xmlns:library="http://openoffice.org/2000/library" library:name="Standard"'
        ' library:readonly="false" library:passwordprotected="false">'
        '<library:element library:name="Module1"/></library:library>'
    )
    module = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + dtd.format(root="script:module", dtd="module.dtd")
        + '<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1"'
        f' script:language="StarBasic" script:moduleType="normal">{escape(basic)}</script:module>'
    )
    scripts = (
        "<office:scripts><office:event-listeners>"
        '<script:event-listener script:language="ooo:script" script:event-name="dom:load"'
        ' xlink:type="simple"'
        ' xlink:href="vnd.sun.star.script:Standard.Module1.OnLoad?language=Basic&amp;location=document"/>'
        "</office:event-listeners></office:scripts>"
    )
    write_odt(
        path,
        "<text:p>docworker macro document</text:p>",
        scripts_xml=scripts,
        extra={
            "Basic/script-lc.xml": script_lc,
            "Basic/Standard/script-lb.xml": script_lb,
            "Basic/Standard/Module1.xml": module,
        },
    )


# --- nesting bombs: structures LibreOffice lays out recursively ---------------------------------------------------

_TBL_OPEN = (
    '<w:tbl><w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr><w:tblGrid><w:gridCol w:w="2000"/></w:tblGrid>'
    "<w:tr><w:tc><w:tcPr><w:tcW w:w=\"0\" w:type=\"auto\"/></w:tcPr>"
)
_TBL_CLOSE = "<w:p/></w:tc></w:tr></w:tbl>"


def make_nested_tables_docx(path: Path, depth: int) -> Path:
    """A .docx whose single table holds a table in its cell, `depth` levels deep (w:tbl in w:tc)."""
    body = _TBL_OPEN * depth + paragraph(f"docworker table depth {depth}") + _TBL_CLOSE * depth
    write_docx(path, paragraph("nested tables below") + body)
    return path


def make_nested_sdt_docx(path: Path, depth: int) -> Path:
    """A .docx with `depth` nested block content controls (w:sdt/w:sdtContent): plain element depth, no layout."""
    inner = paragraph(f"docworker sdt depth {depth}")
    body = "<w:sdt><w:sdtContent>" * depth + inner + "</w:sdtContent></w:sdt>" * depth
    write_docx(path, body)
    return path


_ODF_TABLE_NS = 'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'


def make_nested_tables_odt(path: Path, depth: int) -> Path:
    """An .odt whose table holds a table in its cell, `depth` levels deep (table:table in table:table-cell)."""
    opening = "<table:table><table:table-column/><table:table-row><table:table-cell>"
    closing = "</table:table-cell></table:table-row></table:table>"
    body = opening * depth + f"<text:p>docworker table depth {depth}</text:p>" + closing * depth
    write_odt(path, body, root_namespaces=_ODF_TABLE_NS)
    return path


def make_nested_spans_odt(path: Path, depth: int) -> Path:
    """An .odt paragraph with `depth` nested text:span elements: plain element depth inside one paragraph."""
    body = "<text:p>" + "<text:span>" * depth + f"docworker span depth {depth}" + "</text:span>" * depth + "</text:p>"
    write_odt(path, body)
    return path


def make_nested_tables_rtf(path: Path, depth: int) -> Path:
    r"""An .rtf with tables nested `depth` deep (\itapN nested cells, \nestrow), the RTF 1.8 way Word writes them."""
    lines = [r"{\rtf1\ansi\deff0{\fonttbl{\f0 Helvetica;}}\f0\fs20 nested tables below\par"]

    def level(n: int) -> None:
        # a cell at nesting level n holds (for n < depth) a complete table of level n+1, then its own text
        if n < depth:
            level(n + 1)
        end_cell = r"\cell" if n == 1 else r"\nestcell"
        lines.append(rf"\pard\intbl\itap{n} level {n}{end_cell}")
        row_props = r"\trowd\cellx4000"
        if n == 1:
            lines.append(rf"{row_props}\row")
        else:
            lines.append(rf"{{\*\nesttableprops{row_props}\nestrow}}{{\nonesttables\par}}")

    level(1)
    lines.append(r"\pard docworker rtf depth " + str(depth) + r"\par}")
    path.write_text("\n".join(lines), encoding="ascii")
    return path


def make_nested_groups_rtf(path: Path, depth: int) -> Path:
    """An .rtf with `depth` nested `{...}` groups around one word (group depth, no tables)."""
    path.write_text(r"{\rtf1\ansi " + "{" * depth + f"docworker group depth {depth}" + "}" * depth + r"\par}",
                    encoding="ascii")
    return path


def make_nested_groups_pptx(path: Path, depth: int, template: Path) -> Path:
    """A copy of the .pptx `template` whose first slide gets one shape inside `depth` nested groups (p:grpSp)."""
    group_props = (
        '<p:nvGrpSpPr><p:cNvPr id="{id}" name="Group {id}"/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr>'
        '<p:grpSpPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/><a:chOff x="0" y="0"/>'
        '<a:chExt cx="914400" cy="914400"/></a:xfrm></p:grpSpPr>'
    )
    shape = (
        f'<p:sp><p:nvSpPr><p:cNvPr id="{depth + 1000}" name="Deep"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr>'
        '<p:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr>'
        f"<p:txBody><a:bodyPr/><a:p><a:r><a:t>docworker group depth {depth}</a:t></a:r></a:p></p:txBody></p:sp>"
    )
    groups = "".join("<p:grpSp>" + group_props.format(id=500 + i) for i in range(depth))
    nested = groups + shape + "</p:grpSp>" * depth
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "ppt/slides/slide1.xml":
                data = data.replace(b"</p:spTree>", nested.encode() + b"</p:spTree>", 1)
            target.writestr(item, data)
    return path
