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


def write_odt(path: Path, body_xml: str, *, scripts_xml: str = "", extra: dict[str, str] | None = None) -> None:
    """Write a minimal .odt (stored mimetype first, manifest of every part) with `body_xml` as office:text."""
    extra = extra or {}
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<office:document-content {_ODF_NAMESPACES} office:version="1.3">'
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
