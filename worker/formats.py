"""The catalogue of document formats: what each kind is called, which LibreOffice application and import filter
load it, and what to tell an uploader whose file is a well-formed document of a kind we do not convert.

worker.sniff decides the kind from the bytes; this module only names things, so both stay small.
Every import filter below was loaded by name with LibreOffice 7.4.7 (Debian 12 -nogui writer, calc, impress,
draw) on a real file of that kind (tests/integration/test_formats.py; docs/formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.errors import Reason, WorkerError

__all__ = ["FORMATS", "Family", "Format", "unsupported"]


class Family(StrEnum):
    """The LibreOffice application that loads a document, which decides the PDF export filter."""

    TEXT = "text"
    SPREADSHEET = "spreadsheet"
    PRESENTATION = "presentation"
    DRAWING = "drawing"


@dataclass(frozen=True)
class Format:
    """One kind of document we convert: its loader, the name it is staged under, and what a person calls it."""

    family: Family
    import_filter: str
    extension: str
    description: str


_T, _S, _P, _D = Family.TEXT, Family.SPREADSHEET, Family.PRESENTATION, Family.DRAWING

# kind -> Format. The staged extension never chooses the filter (the load names it); it only keeps the
# office's own messages readable.
FORMATS: dict[str, Format] = {
    # Office Open XML
    "docx": Format(_T, "MS Word 2007 XML", ".docx", "a Word document"),
    "docm": Format(_T, "MS Word 2007 XML VBA", ".docm", "a macro-enabled Word document"),
    "dotx": Format(_T, "MS Word 2007 XML Template", ".dotx", "a Word template"),
    "dotm": Format(_T, "MS Word 2007 XML Template", ".dotm", "a macro-enabled Word template"),
    "xlsx": Format(_S, "Calc MS Excel 2007 XML", ".xlsx", "an Excel workbook"),
    "xlsm": Format(_S, "Calc MS Excel 2007 VBA XML", ".xlsm", "a macro-enabled Excel workbook"),
    "xltx": Format(_S, "Calc MS Excel 2007 XML Template", ".xltx", "an Excel template"),
    "xltm": Format(_S, "Calc MS Excel 2007 XML Template", ".xltm", "a macro-enabled Excel template"),
    "xlsb": Format(_S, "Calc MS Excel 2007 Binary", ".xlsb", "an Excel binary workbook"),
    "pptx": Format(_P, "Impress MS PowerPoint 2007 XML", ".pptx", "a PowerPoint presentation"),
    "pptm": Format(_P, "Impress MS PowerPoint 2007 XML VBA", ".pptm", "a macro-enabled PowerPoint presentation"),
    # Slide shows load with the ordinary filter: the AutoPlay one would try to start the show.
    "ppsx": Format(_P, "Impress MS PowerPoint 2007 XML", ".ppsx", "a PowerPoint slide show"),
    "ppsm": Format(_P, "Impress MS PowerPoint 2007 XML VBA", ".ppsm", "a macro-enabled PowerPoint slide show"),
    "potx": Format(_P, "Impress MS PowerPoint 2007 XML Template", ".potx", "a PowerPoint template"),
    "potm": Format(_P, "Impress MS PowerPoint 2007 XML Template", ".potm", "a macro-enabled PowerPoint template"),
    "vsdx": Format(_D, "Visio Document", ".vsdx", "a Visio drawing"),
    "vsdm": Format(_D, "Visio Document", ".vsdm", "a macro-enabled Visio drawing"),
    # OpenDocument and its StarOffice 6 / OpenOffice.org 1 predecessor
    "odt": Format(_T, "writer8", ".odt", "an OpenDocument text"),
    "ott": Format(_T, "writer8_template", ".ott", "an OpenDocument text template"),
    "ods": Format(_S, "calc8", ".ods", "an OpenDocument spreadsheet"),
    "ots": Format(_S, "calc8_template", ".ots", "an OpenDocument spreadsheet template"),
    "odp": Format(_P, "impress8", ".odp", "an OpenDocument presentation"),
    "otp": Format(_P, "impress8_template", ".otp", "an OpenDocument presentation template"),
    "odg": Format(_D, "draw8", ".odg", "an OpenDocument drawing"),
    "otg": Format(_D, "draw8_template", ".otg", "an OpenDocument drawing template"),
    "fodt": Format(_T, "OpenDocument Text Flat XML", ".fodt", "a flat OpenDocument text"),
    "fods": Format(_S, "OpenDocument Spreadsheet Flat XML", ".fods", "a flat OpenDocument spreadsheet"),
    "fodp": Format(_P, "OpenDocument Presentation Flat XML", ".fodp", "a flat OpenDocument presentation"),
    "fodg": Format(_D, "OpenDocument Drawing Flat XML", ".fodg", "a flat OpenDocument drawing"),
    "sxw": Format(_T, "StarOffice XML (Writer)", ".sxw", "an OpenOffice.org 1 / StarOffice 6 text document"),
    "sxc": Format(_S, "StarOffice XML (Calc)", ".sxc", "an OpenOffice.org 1 / StarOffice 6 spreadsheet"),
    "sxi": Format(_P, "StarOffice XML (Impress)", ".sxi", "an OpenOffice.org 1 / StarOffice 6 presentation"),
    "sxd": Format(_D, "StarOffice XML (Draw)", ".sxd", "an OpenOffice.org 1 / StarOffice 6 drawing"),
    # Microsoft binary formats
    "doc": Format(_T, "MS Word 97", ".doc", "a Word 97-2003 document"),
    # Word 6.0 and 95 share one file format; "MS Word 97" cannot load it (LibreOffice's own detection picks this).
    "doc95": Format(_T, "MS Word 95", ".doc", "a Word 6.0/95 document"),
    "xls": Format(_S, "MS Excel 97", ".xls", "an Excel 97-2003 workbook"),
    "xls95": Format(_S, "MS Excel 95", ".xls", "an Excel 5.0/95 workbook"),
    "xls4": Format(_S, "MS Excel 4.0", ".xls", "an Excel 2.x-4.0 worksheet"),
    "ppt": Format(_P, "MS PowerPoint 97", ".ppt", "a PowerPoint 97-2003 presentation"),
    "wps": Format(_T, "MS_Works", ".wps", "a Microsoft Works document"),
    "wri": Format(_T, "MS_Write", ".wri", "a Microsoft Write document"),
    "vsd": Format(_D, "Visio Document", ".vsd", "a Visio drawing"),
    "pub": Format(_D, "Publisher Document", ".pub", "a Microsoft Publisher document"),
    # Other word processors and spreadsheets
    "wpd": Format(_T, "WordPerfect", ".wpd", "a WordPerfect document"),
    "wk1": Format(_S, "WPS_Lotus_Calc", ".wk1", "a Lotus 1-2-3 spreadsheet"),
    "wk3": Format(_S, "WPS_Lotus_Calc", ".wk3", "a Lotus 1-2-3 spreadsheet"),
    "wk4": Format(_S, "WPS_Lotus_Calc", ".wk4", "a Lotus 1-2-3 spreadsheet"),
    "123": Format(_S, "WPS_Lotus_Calc", ".123", "a Lotus 1-2-3 spreadsheet"),
    "sdw": Format(_T, "StarOffice_Writer", ".sdw", "a StarOffice 5 text document"),
    "sdc": Format(_S, "StarOffice_Spreadsheet", ".sdc", "a StarOffice 5 spreadsheet"),
    "sdd": Format(_P, "StarOffice_Presentation", ".sdd", "a StarOffice 5 presentation"),
    "sda": Format(_D, "StarOffice_Drawing", ".sda", "a StarOffice 5 drawing"),
    "pages": Format(_T, "Apple Pages", ".pages", "an Apple Pages document"),
    "numbers": Format(_S, "Apple Numbers", ".numbers", "an Apple Numbers spreadsheet"),
    "key": Format(_P, "Apple Keynote", ".key", "an Apple Keynote presentation"),
    # Single-stream formats
    "rtf": Format(_T, "Rich Text Format", ".rtf", "an RTF document"),
    "txt": Format(_T, "Text (encoded)", ".txt", "a plain text file"),
    "csv": Format(_S, "Text - txt - csv (StarCalc)", ".csv", "a CSV table"),
    "dif": Format(_S, "DIF", ".dif", "a DIF (Data Interchange Format) spreadsheet"),
    "word2003xml": Format(_T, "MS Word 2003 XML", ".xml", "a Word 2003 XML document"),
}

_SAVE_AS = "save it as .docx, .xlsx, .pptx or OpenDocument in the application that made it, and upload again"


def unsupported(description: str, advice: str = _SAVE_AS) -> WorkerError:
    """A refusal naming what a well-formed file is and what its owner can do instead."""
    return WorkerError(Reason.UNSUPPORTED_TYPE, f"the file is {description}, which we cannot convert; {advice}")
