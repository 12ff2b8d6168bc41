"""Documents that hurt LibreOffice itself (not the sniffer): built at test time."""

from __future__ import annotations

from pathlib import Path

_FODS = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"
 office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:body><office:spreadsheet><table:table table:name="S">
<table:table-row table:number-rows-repeated="1048576"><table:table-cell table:number-columns-repeated="1024"
 office:value-type="string"><text:p>xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx</text:p></table:table-cell></table:table-row>
</table:table></office:spreadsheet></office:body></office:document>
"""


def make_memory_bomb_fods(path: Path) -> Path:
    """A 700-byte flat spreadsheet declaring a billion non-empty cells: LibreOffice's RSS climbs ~70 MB/s until
    it is stopped (measured: 1.1 GB after 15 s). Nothing in the file is hostile to a parser, so the sniffer lets it
    through; only the conversion timeout (or the address-space limit) stops it."""
    path.write_text(_FODS)
    return path
