"""Parse XML before LibreOffice does, with a parser that refuses DTDs, and refuse nesting its layout cannot survive.

A scan of the prolog is not a parser: a comment holding `]`, a part named .dat, UTF-16 without a BOM or an SVG
picture all slipped past one. Here every byte goes through expat (the standard library's, C speed), fed in
chunks so a large part never sits in memory, with every DTD feature that can expand, fetch or recurse refused.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from xml.parsers import expat

from worker.errors import Reason, WorkerError

__all__ = [
    "GZIP_MAGIC",
    "MAX_ELEMENT_DEPTH",
    "MAX_RTF_TABLE_DEPTH",
    "MAX_TABLE_DEPTH",
    "XmlRoot",
    "check_gzipped",
    "check_rtf",
    "check_xml",
    "looks_like_xml",
    "read_root",
]

# Limits: far above real documents (the deepest of ../shared/corpus: see bench/README.md "nesting"), far below
# what holds an office for the conversion timeout (bench/nesting.py).
MAX_TABLE_DEPTH = 32  # tables in table cells: w:tbl, table:table
MAX_ELEMENT_DEPTH = 256  # any element
MAX_RTF_TABLE_DEPTH = 32  # \itapN

_CHUNK = 256 * 2**10
_TABLE_NAMES = ("tbl", "table")  # local names: the prefix is the document's to choose
GZIP_MAGIC = b"\x1f\x8b"
_MAX_ENTITIES = 32  # Illustrator declares about a dozen namespace constants
_MAX_ENTITY_CHARS = 1024
_MAX_EXPANSION_CHARS = 2**20  # all references together
# Public DTDs real writers cite, never fetched by us or by LibreOffice: W3C (Inkscape, Illustrator and most SVG
# writers), Apple's property lists (inside every iWork package).
_WELL_KNOWN_DTDS = ("http://www.w3.org/", "https://www.w3.org/", "http://www.apple.com/DTDs/")
_MAX_GUNZIP_BYTES = 64 * 2**20  # an .svgz bigger than this when inflated is a bomb, whatever LibreOffice thinks

# How a part starts when it is XML in an encoding an XML processor can detect (XML 1.0 appendix F), or when it
# is an encoding expat does not know but libxml2 (LibreOffice's parser) might: UTF-32 and EBCDIC.
_XML_STARTS = (
    b"\xef\xbb\xbf",  # UTF-8 BOM
    b"\xff\xfe",  # UTF-16 LE BOM (and UTF-32 LE)
    b"\xfe\xff",  # UTF-16 BE BOM
    b"<\x00",  # UTF-16 LE without BOM
    b"\x00<",  # UTF-16 BE without BOM
    b"\x00\x00\xfe\xff",  # UTF-32 BE BOM
    b"\x00\x00\x00<",  # UTF-32 BE
    b"\x4c\x6f\xa7\x94",  # "<?xm" in EBCDIC
)


@dataclass(frozen=True)
class XmlRoot:
    """The root element of a document: its qualified name and attributes, as written."""

    name: str
    attributes: dict[str, str]

    @property
    def local_name(self) -> str:
        return self.name.rpartition(":")[2]


class _RootFound(Exception):
    """Raised inside the parser to stop once the root element has been seen."""


def looks_like_xml(head: bytes) -> bool:
    """Whether a part's first bytes may be those of an XML document, in any encoding a parser could detect.

    A head of nothing but blank space may still be XML further on (a DOCTYPE may follow any amount of it).
    """
    if head.startswith(_XML_STARTS):
        return True
    body = head.lstrip(b" \t\r\n")
    return body.startswith(b"<") or (bool(head) and not body)


def check_xml(
    read: Callable[[int], bytes], what: str, *, first: bytes = b"", declared: bool = True
) -> XmlRoot | None:
    """Parse the whole stream `read` gives (after `first`), refusing DTD features and excessive nesting.

    Returns the root element, or None for a part that is blank, or, when nothing `declared` it XML, whose first
    non-blank byte shows it is not XML after all. Raises WorkerError: HOSTILE for DTD features that fetch or
    expand (see _Guard) and nesting beyond the limits; CORRUPT for XML that is not well-formed (LibreOffice's
    parser rejects it too, and XML we cannot follow is XML we cannot vet).
    """
    guard = _Guard(what)
    data = first + read(_CHUNK)  # one first feed holds the whole XML declaration, whatever `first` cut off
    blank = True
    while data:
        if blank:
            content = data.lstrip(b" \t\r\n")
            if content:
                blank = False
                if not declared and not looks_like_xml(content):
                    return None
        guard.feed(data)
        data = read(_CHUNK)
    if blank:
        return None  # an empty part (LibreOffice writes empty Configurations2 parts): nothing is parsed
    guard.finish()
    return guard.root


def check_gzipped(read: Callable[[int], bytes], what: str, *, first: bytes = b"") -> XmlRoot | None:
    """Inflate a gzip stream (an .svgz picture: LibreOffice's graphic filter inflates it) and check it if XML.

    An .emz (a compressed EMF picture) or anything else whose inflated bytes are not XML passes untouched.
    """
    inflated = _gunzip(first, read, what)
    return check_xml(lambda size: next(inflated, b""), what, declared=False)


def read_root(head: bytes | str, what: str, *, complete: bool) -> XmlRoot | None:
    """The root element of an XML document from its first bytes, vetting everything before it on the way.

    Stops at the root's start tag. `complete` says the head is the whole file; otherwise a head without a root
    element is a prolog of abnormal length (a comment or DOCTYPE padded past our read) and refused.
    """
    guard = _Guard(what, stop_at_root=True)
    try:
        guard.feed(head)
        if complete:
            guard.finish()
    except _RootFound:
        return guard.root
    if complete:
        return None
    raise WorkerError(Reason.HOSTILE, f"{what} has an XML header of abnormal length")


_RTF_TABLE_LEVEL = re.compile(rb"\\itap(\d{1,9})")


def check_rtf(chunks: Iterable[bytes], what: str) -> None:
    r"""Refuse RTF whose tables nest (\itapN) beyond what LibreOffice lays out in time.

    Group depth (`{`) is not limited: 50,000 nested groups convert in 0.2 s (bench/README.md, nesting).
    """
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        # A control word cut by the chunk boundary starts at the last backslash near the end: keep it for later.
        cut = window.rfind(b"\\", max(len(window) - 15, 0))
        end = cut if cut >= 0 else len(window)
        _refuse_rtf_table_levels(window, end, what)
        tail = window[end:]
    _refuse_rtf_table_levels(tail, len(tail), what)


def _refuse_rtf_table_levels(data: bytes, end: int, what: str) -> None:
    for match in _RTF_TABLE_LEVEL.finditer(data, 0, end):
        level = int(match.group(1))
        if level > MAX_RTF_TABLE_DEPTH:
            raise WorkerError(
                Reason.HOSTILE,
                f"{what} nests tables {level} deep (the limit is {MAX_RTF_TABLE_DEPTH}),"
                " which LibreOffice cannot lay out in time; we refuse it",
            )


def _gunzip(data: bytes, read: Callable[[int], bytes], what: str) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits=31)
    produced = 0
    try:
        while data:
            out = inflater.decompress(data, _CHUNK)
            while out:
                produced += len(out)
                if produced > _MAX_GUNZIP_BYTES:
                    raise WorkerError(Reason.ZIP_BOMB, f"{what} is compressed at an impossible ratio (a bomb)")
                yield out
                out = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
            data = read(_CHUNK)
    except zlib.error as exc:
        raise WorkerError(Reason.CORRUPT, f"{what} is a damaged compressed picture") from exc


class _Guard:
    """One expat parser with every DTD feature turned into a refusal, and depth counters."""

    def __init__(self, what: str, *, stop_at_root: bool = False) -> None:
        self.what = what
        self.root: XmlRoot | None = None
        self._stop_at_root = stop_at_root
        self._depth = 0
        self._tables = 0
        self._fallback: codecs.IncrementalDecoder | None = None
        self._fed = False  # the declaration (and so the encoding) is in the first bytes fed
        self._entities: dict[str, int] = {}  # name -> length of its replacement text
        self._byte_references: dict[bytes, int] = {}  # "&name;" in every encoding -> replacement length
        self._text_references: dict[str, int] = {}
        self._expansion = 0
        self._parser = self._new_parser(None)

    def _new_parser(self, encoding: str | None) -> expat.XMLParserType:
        parser = expat.ParserCreate(encoding)
        # Never read an external DTD or parameter entity; with no ExternalEntityRefHandler expat reads nothing,
        # and the handlers below turn any declaration into a refusal before it can be used.
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._unparsed_entity
        parser.AttlistDeclHandler = self._attribute_defaults
        parser.ExternalEntityRefHandler = self._external_entity
        parser.ordered_attributes = True  # a flat list is built faster than a dict, and only the root's is used
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        return parser

    # -- feeding ---------------------------------------------------------------------------------------------

    def feed(self, data: bytes | str) -> None:
        self._feed(data)
        if self._entities:
            self._count_references(data)

    def _feed(self, data: bytes | str) -> None:
        if isinstance(data, str):  # already decoded: pyexpat re-encodes it as UTF-8 and says so to expat
            self._parse(data, final=False)
            return
        if self._fallback is not None:
            self._parse(self._fallback.decode(data), final=False)
            return
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            if exc.code != expat.errors.codes[expat.errors.XML_ERROR_UNKNOWN_ENCODING] or self._fed:
                raise self._malformed(exc) from exc
            self._switch_to_python_codec(data, exc)
        except (ValueError, LookupError) as exc:  # pyexpat: "multi-byte encodings are not supported"
            if self._fed:
                raise WorkerError(Reason.CORRUPT, f"{self.what} has an unreadable text encoding") from exc
            self._switch_to_python_codec(data, exc)
        self._fed = True

    def finish(self) -> None:
        if self._fallback is not None:
            self._parse(self._fallback.decode(b"", final=True), final=True)
            return
        try:
            self._parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise self._malformed(exc) from exc

    def _parse(self, text: str, *, final: bool) -> None:
        try:
            self._parser.Parse(text, final)
        except expat.ExpatError as exc:
            raise self._malformed(exc) from exc
        except UnicodeDecodeError as exc:
            raise WorkerError(Reason.CORRUPT, f"{self.what} is not valid text in its declared encoding") from exc

    def _switch_to_python_codec(self, data: bytes, exc: Exception) -> None:
        """expat knows UTF-8/16, Latin-1 and ASCII; LibreOffice's libxml2 knows more, so decode those ourselves.

        Only the first chunk can reach here (the declaration is at the start), so `data` is the whole input so far.
        """
        declared = _declared_encoding(data)
        try:
            codec = codecs.lookup(declared) if declared else None
        except LookupError:
            codec = None
        if codec is None:
            raise WorkerError(
                Reason.CORRUPT, f"{self.what} declares a text encoding ({declared or 'unreadable'}) we cannot read"
            ) from exc
        self._fallback = codec.incrementaldecoder()
        self._parser = self._new_parser("utf-8")  # the declaration's encoding is overridden: we feed str
        self._parse(self._fallback.decode(data), final=False)

    def _malformed(self, exc: expat.ExpatError) -> WorkerError:
        message = expat.errors.messages[exc.code]
        if "amplification" in message:  # expat's own billion-laughs brake (2.4+) fired before our count did
            return WorkerError(Reason.HOSTILE, f"{self.what} expands its XML entities abnormally, which we refuse")
        return WorkerError(
            Reason.CORRUPT,
            f"{self.what} is not well-formed XML ({message},"
            f" line {exc.lineno}); save the document again from the application that made it",
        )

    # -- handlers --------------------------------------------------------------------------------------------

    def _doctype(self, name: str, system_id: str | None, public_id: str | None, has_internal_subset: bool) -> None:
        # OpenOffice.org wrote `<!DOCTYPE manifest:manifest PUBLIC "..." "Manifest.dtd">` and LibreOffice still
        # writes such bare references into Basic libraries: harmless, since nothing here or there loads them.
        if system_id and not _harmless_dtd_reference(system_id):
            raise WorkerError(
                Reason.HOSTILE,
                f"{self.what} declares a DOCTYPE pointing at {system_id[:80]!r}, which we refuse",
            )

    def _entity(
        self, name: str, is_parameter: bool, value: str | None, base: str | None, system_id: str | None,
        public_id: str | None, notation: str | None,
    ) -> None:
        """Allow only what Adobe Illustrator writes into SVG (a few short namespace constants): no entity may
        refer to another (billion laughs), be external (XXE), be a parameter entity, or be long or numerous."""
        if is_parameter or value is None or notation is not None:
            raise WorkerError(
                Reason.HOSTILE, f"{self.what} declares the external or parameter XML entity {name!r}, which we refuse"
            )
        if any(c in value for c in "&%<"):
            raise WorkerError(
                Reason.HOSTILE,
                f"{self.what} declares the XML entity {name!r} built from other entities (a billion-laughs bomb)",
            )
        if len(value) > _MAX_ENTITY_CHARS or len(self._entities) >= _MAX_ENTITIES:
            raise WorkerError(Reason.HOSTILE, f"{self.what} declares abnormally large XML entities, which we refuse")
        self._entities[name] = len(value)
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            self._byte_references[f"&{name};".encode(encoding)] = len(value)
        self._text_references[f"&{name};"] = len(value)

    def _count_references(self, data: bytes | str) -> None:
        """Bound what the entities expand to: each reference costs its replacement text (the quadratic blowup).

        A reference cut by a chunk boundary goes uncounted: at most one per chunk, which the budget absorbs.
        """
        if isinstance(data, bytes):
            self._expansion += sum(data.count(ref) * size for ref, size in self._byte_references.items())
        else:
            self._expansion += sum(data.count(ref) * size for ref, size in self._text_references.items())
        if self._expansion > _MAX_EXPANSION_CHARS:
            raise WorkerError(
                Reason.HOSTILE, f"{self.what} expands its XML entities past {_MAX_EXPANSION_CHARS} characters"
            )

    def _unparsed_entity(self, name: str, *args: object) -> None:
        raise WorkerError(Reason.HOSTILE, f"{self.what} declares the unparsed XML entity {name!r}, which we refuse")

    def _attribute_defaults(self, element: str, *args: object) -> None:
        raise WorkerError(
            Reason.HOSTILE, f"{self.what} declares attribute defaults for <{element}> in its DTD, which we refuse"
        )

    def _external_entity(self, context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise WorkerError(Reason.HOSTILE, f"{self.what} refers to an external XML entity, which we refuse")

    def _start(self, name: str, attributes: list[str]) -> None:
        # Called for every element: kept to a counter and one C-level suffix test in the common case.
        self._depth += 1
        if self._depth > MAX_ELEMENT_DEPTH:
            raise WorkerError(
                Reason.HOSTILE,
                f"{self.what} nests XML elements more than {MAX_ELEMENT_DEPTH} deep (at <{name}>), which we refuse",
            )
        if self.root is None:
            self.root = XmlRoot(name, dict(zip(attributes[::2], attributes[1::2], strict=True)))
            if self._stop_at_root:
                raise _RootFound
        if name.endswith(_TABLE_NAMES) and name[name.find(":") + 1 :] in _TABLE_NAMES:
            self._tables += 1
            if self._tables > MAX_TABLE_DEPTH:
                raise WorkerError(
                    Reason.HOSTILE,
                    f"{self.what} nests tables more than {MAX_TABLE_DEPTH} deep, which LibreOffice cannot lay out"
                    " in time; we refuse it",
                )

    def _end(self, name: str) -> None:
        self._depth -= 1
        if name.endswith(_TABLE_NAMES) and name[name.find(":") + 1 :] in _TABLE_NAMES:
            self._tables -= 1


def _harmless_dtd_reference(system_id: str) -> bool:
    """A bare file name (OpenOffice.org's "Manifest.dtd") or a well-known public DTD: nobody fetches those."""
    if system_id.startswith(_WELL_KNOWN_DTDS):
        return True
    return not any(c in system_id for c in "/\\:%&?#")


def _declared_encoding(data: bytes) -> str | None:
    """The encoding name of an ASCII-compatible XML declaration, if there is one."""
    head = data[:200]
    if not head.startswith(b"<?xml"):
        return None
    end = head.find(b"?>")
    declaration = head[: end if end > 0 else len(head)].decode("ascii", "replace")
    at = declaration.find("encoding")
    if at < 0:
        return None
    rest = declaration[at + len("encoding") :].lstrip(" =\t\r\n")
    if not rest or rest[0] not in "\"'":
        return None
    return rest[1:].split(rest[0], 1)[0].strip() or None
