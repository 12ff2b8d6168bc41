"""Per-document PDF options: the catalogue, parsing (object metadata, environment, Gotenberg form), FilterData.

Pure: no Flask, no GCS, no UNO. Options come from the uploaded object's custom metadata under one prefix
(`docworker-pdfa: 2b`), over service-wide defaults from the environment (`PDF_PDFA=2b`). Every bad key is
reported at once with its accepted values (`BadOptions`). Passwords never travel in metadata: metadata names a
secret, and `MountedSecrets` reads it only from files the operator mounted under one directory. docs/options.md
has the table and the design; job.py, conversion.py and the Gotenberg route (gotenberg.py) use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

from worker.errors import Reason, WorkerError

PREFIX = "docworker-"
ENV_PREFIX = "PDF_"
SECRETS_DIR_ENV = "SECRETS_DIR"
DIGEST_VERSION = "v1"  # bump when an option's meaning changes, so old and new conversions never share a key

PDFA_LEVELS = {"1b": 1, "2b": 2, "3b": 3}  # SelectPdfVersion values in LibreOffice's PDF export filter
DPI_CHOICES = (75, 150, 300, 600, 1200)  # the values LibreOffice's export dialog offers (and Gotenberg accepts)
PRINT_LEVELS = {"none": 0, "lowres": 1, "full": 2}  # FilterData "Printing"
CHANGE_LEVELS = {"none": 0, "assemble": 1, "forms": 2, "comments": 3, "any": 4}  # FilterData "Changes"
MAX_PAGE_NUMBER = 100_000
MAX_RANGE_PARTS = 64
MAX_WATERMARK_CHARS = 200
MAX_SECRET_BYTES = 4096
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")  # Secret Manager's id alphabet: no dot, no slash
_PAGE_PART = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class BadOptions(ValueError):
    """One or more bad option keys or values; `problems` maps each key to what was wrong and what is accepted.

    The job turns it into one permanent `bad_option` record, acked at once; the Gotenberg route into one 400.
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("bad options: " + "; ".join(f"{k}: {v}" for k, v in sorted(self.problems.items())))


@dataclass(frozen=True)
class PdfOptions:
    """What the uploader asked for; defaults reproduce LibreOffice's stock PDF export (see `to_filter_data`).

    Secret fields hold secret NAMES, never passwords; `Passwords` carries the resolved values.
    """

    pdfa: str | None = None  # "1b" | "2b" | "3b"
    pdfua: bool = False
    pages: str | None = None  # canonical "1-3,5"
    single_page_sheets: bool = False
    notes: bool = False
    notes_in_margin: bool = False
    bookmarks: bool = True
    quality: int = 90
    max_dpi: int | None = None  # None: images keep their resolution
    lossless: bool = False
    form_fields: bool = True
    watermark: str | None = None
    update_indexes: bool | None = None  # None: the service's UPDATE_INDEXES setting
    printing: str = "full"
    changes: str = "any"
    copying: bool = True
    open_password_secret: str | None = None
    owner_password_secret: str | None = None
    password_secret: str | None = None  # opens an encrypted input (LibreOffice's `Password` load property)

    @property
    def restricts_permissions(self) -> bool:
        return self.printing != "full" or self.changes != "any" or not self.copying

    @property
    def profile(self) -> str:
        """A bounded metric label: default, pdfa-1b/2b/3b, pdfua, encrypted, or custom (anything else)."""
        if self == DEFAULT:
            return "default"
        if self.open_password_secret or self.owner_password_secret:
            return "encrypted"
        if self.pdfa:
            return "pdfa-" + self.pdfa
        if self.pdfua:
            return "pdfua"
        return "custom"

    @property
    def page_set(self) -> frozenset[int] | None:
        """The page numbers `pages` selects (bounded by validation), or None for every page."""
        return None if self.pages is None else frozenset(_page_numbers(self.pages))

    def to_metadata(self) -> dict[str, str]:
        """The options that differ from the defaults, as metadata keys and canonical values (round-trips)."""
        out: dict[str, str] = {}
        for option in CATALOGUE:
            value = getattr(self, option.field)
            if value != getattr(DEFAULT, option.field):
                out[PREFIX + option.key] = _canonical(value)
        return out

    def digest(self) -> str:
        """Stable, order-independent digest for the idempotency key: only non-default options count, so adding
        an option later never changes the digest of pushes that do not use it. Secret names count; values never.
        """
        return self._digest

    @cached_property
    def _digest(self) -> str:  # a job asks twice (duplicate check, output metadata); the value never changes
        doc = json.dumps([DIGEST_VERSION, self.to_metadata()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:32]

    def to_filter_data(self, passwords: Passwords | None = None) -> dict[str, bool | int | str]:
        """LibreOffice PDF export FilterData (name -> value), always complete.

        Complete because any non-empty FilterData makes LibreOffice 7.4 skip its configured defaults and use the
        filter's built-in ones (measured: ExportNotes on, Quality 80), so a watermark alone would also add comment
        annotations and re-compress images. These values reproduce the stock export exactly when nothing is set.
        """
        passwords = passwords or Passwords()
        tagged = self.pdfua or self.pdfa is not None
        data: dict[str, bool | int | str] = {
            "SelectPdfVersion": PDFA_LEVELS[self.pdfa] if self.pdfa else 0,
            "PDFUACompliance": self.pdfua,
            "UseTaggedPDF": tagged,
            "EmbedStandardFonts": tagged,
            "EnableTextAccessForAccessibilityTools": True,
            "SinglePageSheets": self.single_page_sheets,
            "ExportNotes": self.notes,
            "ExportNotesPages": False,
            "ExportBookmarks": self.bookmarks,
            "Quality": self.quality,
            "ReduceImageResolution": self.max_dpi is not None,
            "MaxImageResolution": self.max_dpi or 300,
            "UseLosslessCompression": self.lossless,
            "ExportFormFields": self.form_fields,
            "IsSkipEmptyPages": False,
        }
        if self.notes_in_margin:
            data["ExportNotesInMargin"] = True
        if self.pages is not None:
            data["PageRange"] = self.pages
        if self.watermark is not None:
            data["Watermark"] = self.watermark  # its mere presence turns the watermark on, even when empty
        if passwords.open_password:
            data["EncryptFile"] = True
            data["DocumentOpenPassword"] = passwords.open_password
        if passwords.owner_password:
            data["RestrictPermissions"] = True
            data["PermissionPassword"] = passwords.owner_password
            data["Printing"] = PRINT_LEVELS[self.printing]
            data["Changes"] = CHANGE_LEVELS[self.changes]
            data["EnableCopyingOfContent"] = self.copying
        return data


DEFAULT = PdfOptions()


@dataclass(frozen=True)
class Passwords:
    """Resolved passwords for one conversion: never logged, never digested, never written to a record."""

    open_password: str | None = None  # needed to open the output PDF
    owner_password: str | None = None  # lifts the output's permission restrictions
    input_password: str | None = None  # opens an encrypted input

    def __repr__(self) -> str:
        shown = {f.name: "***" if getattr(self, f.name) else None for f in fields(self)}
        return f"Passwords({shown})"


def filter_json(filter_data: Mapping[str, bool | int | str]) -> str:
    """FilterData in the JSON syntax LibreOffice 7.4's `soffice --convert-to 'pdf:<filter>:<json>'` reads
    ({"Name": {"type": "boolean"|"long"|"string", "value": "..."}}): for stock-soffice tests and benches.
    """
    def typed(value: bool | int | str) -> dict[str, str]:
        if isinstance(value, bool):
            return {"type": "boolean", "value": "true" if value else "false"}
        if isinstance(value, int):
            return {"type": "long", "value": str(value)}
        return {"type": "string", "value": value}

    return json.dumps({name: typed(value) for name, value in filter_data.items()}, separators=(",", ":"))


def to_load_properties(passwords: Passwords) -> dict[str, str]:
    """Extra load properties for LibreOffice's loadComponentFromURL: `Password` opens an encrypted input."""
    return {"Password": passwords.input_password} if passwords.input_password else {}


# --- the catalogue ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One documented option: metadata key (after PREFIX), dataclass field, accepted values, parser."""

    key: str
    field: str
    accepted: str
    parse: Callable[[str], object]
    libreoffice: str
    verified: str


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError


def _choice(choices: Mapping[str, object] | tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


def _false_only(raw: str) -> bool:
    """notes-in-margin: LibreOffice 7.4 has no ExportNotesInMargin (not in any of its libraries), so only false."""
    if _bool(raw):
        raise ValueError
    return False


def _quality(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 100:
        raise ValueError
    return value


def _dpi(raw: str) -> int:
    value = int(raw)
    if value not in DPI_CHOICES:
        raise ValueError
    return value


def _pages(raw: str) -> str:
    """Canonical page ranges "1-3,5": parts joined by commas, no spaces, 1 <= start <= end <= MAX_PAGE_NUMBER."""
    parts = [p.strip() for p in raw.split(",")]
    if not 0 < len(parts) <= MAX_RANGE_PARTS:
        raise ValueError
    canonical = []
    for part in parts:
        m = _PAGE_PART.fullmatch(part.replace(" ", ""))
        if m is None:
            raise ValueError
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        if not 1 <= start <= end <= MAX_PAGE_NUMBER:
            raise ValueError
        canonical.append(str(start) if start == end else f"{start}-{end}")
    return ",".join(canonical)


def _page_numbers(pages: str) -> set[int]:
    numbers: set[int] = set()
    for part in pages.split(","):
        start, _, end = part.partition("-")
        numbers.update(range(int(start), int(end or start) + 1))
    return numbers


def _watermark(raw: str) -> str:
    if not 0 < len(raw) <= MAX_WATERMARK_CHARS or not raw.isprintable():
        raise ValueError
    return raw


def secret_name(raw: str) -> str:
    """A secret's name: Secret Manager's id alphabet (letters, digits, _ and -), so never a path or `..`."""
    if not _SECRET_NAME.fullmatch(raw):
        raise ValueError
    return raw


_BOOL = "true or false"
_SECRET = "the name of a secret the operator mounted (letters, digits, _ and -, at most 255)"

CATALOGUE: tuple[Option, ...] = (
    Option("pdfa", "pdfa", "1b, 2b or 3b", _choice(PDFA_LEVELS), "SelectPdfVersion=1|2|3",
           "XMP pdfaid:part and conformance B, an OutputIntent, every font embedded, no encryption"),
    Option("pdfua", "pdfua", _BOOL, _bool, "PDFUACompliance, UseTaggedPDF",
           "StructTreeRoot, MarkInfo/Marked, XMP pdfuaid:part"),
    Option("pages", "pages", f"page ranges like 1-3,5 (1 to {MAX_PAGE_NUMBER}, at most {MAX_RANGE_PARTS} parts)",
           _pages, "PageRange", "page count at most the pages selected (exact when the source count is known)"),
    Option("single-page-sheets", "single_page_sheets", _BOOL, _bool, "SinglePageSheets",
           "one page per sheet (the caller passes the sheet count)"),
    Option("notes", "notes", _BOOL, _bool, "ExportNotes", "comments become /Text annotations (none when false)"),
    Option("notes-in-margin", "notes_in_margin", "false (LibreOffice 7.4 has no ExportNotesInMargin)",
           _false_only, "ExportNotesInMargin", "refused until the image ships a LibreOffice that has it"),
    Option("bookmarks", "bookmarks", _BOOL, _bool, "ExportBookmarks", "no outline when false"),
    Option("quality", "quality", "an integer 1-100 (JPEG quality)", _quality, "Quality",
           "integration test: a lower quality gives smaller JPEG streams"),
    Option("max-dpi", "max_dpi", ", ".join(map(str, DPI_CHOICES)), _dpi,
           "ReduceImageResolution=true, MaxImageResolution", "every placed image at most this many pixels per inch"),
    Option("lossless", "lossless", _BOOL, _bool, "UseLosslessCompression", "no JPEG (DCTDecode) image"),
    Option("form-fields", "form_fields", _BOOL, _bool, "ExportFormFields", "no AcroForm fields when false"),
    Option("watermark", "watermark", f"printable text, 1-{MAX_WATERMARK_CHARS} characters", _watermark,
           "Watermark", "the text is on every page (text extraction)"),
    Option("update-indexes", "update_indexes", _BOOL, _bool, "(launcher) refresh indexes before export",
           "tests/integration/test_office.py (stale table of contents rebuilt)"),
    Option("print", "printing", "none, lowres or full", _choice(PRINT_LEVELS), "Printing=0|1|2",
           "permission bits (needs owner-password-secret)"),
    Option("changes", "changes", "none, assemble, forms, comments or any", _choice(CHANGE_LEVELS), "Changes=0-4",
           "permission bits (needs owner-password-secret)"),
    Option("copy", "copying", _BOOL, _bool, "EnableCopyingOfContent", "permission bits (needs owner-password-secret)"),
    Option("open-password-secret", "open_password_secret", _SECRET, secret_name,
           "EncryptFile, DocumentOpenPassword", "opens only with the password"),
    Option("owner-password-secret", "owner_password_secret", _SECRET, secret_name,
           "RestrictPermissions, PermissionPassword", "the owner password is accepted; permissions as asked"),
    Option("password-secret", "password_secret", _SECRET, secret_name, "load property Password",
           "the input opens (conversion succeeds)"),
)
BY_KEY = {option.key: option for option in CATALOGUE}
ENV_KEYS = {ENV_PREFIX + o.key.upper().replace("-", "_"): o for o in CATALOGUE if o.key != "update-indexes"}


# --- parsing ----------------------------------------------------------------------------------------------


def _apply(base: PdfOptions, raw: Mapping[str, tuple[str, str]]) -> PdfOptions:
    """Parse {key: (label, raw value)} over `base`; collect every problem, then check the combination.

    The label is what the caller wrote (the metadata key or the environment variable), so errors name it.
    """
    problems: dict[str, str] = {}
    changes: dict[str, object] = {}
    for key, (label, value) in raw.items():
        option = BY_KEY.get(key)
        if option is None:
            problems[label] = "unknown option; accepted keys: " + ", ".join(PREFIX + o.key for o in CATALOGUE)
            continue
        try:
            changes[option.field] = option.parse(value.strip())
        except ValueError:
            problems[label] = f"{_shown(value)} is not accepted; accepted: {option.accepted}"
    if not problems:
        options = replace(base, **changes)  # type: ignore[arg-type]
        labels = {key: label for key, (label, _) in raw.items()}
        problems = {labels.get(key, PREFIX + key): why for key, why in _conflicts(options).items()}
    if problems:
        raise BadOptions(problems)
    return options


def _conflicts(options: PdfOptions) -> dict[str, str]:
    """A combination LibreOffice would silently not honour is refused, so a PDF never differs from the request."""
    if options.pdfa and (options.open_password_secret or options.owner_password_secret):
        return {"pdfa": "PDF/A forbids encryption; accepted: no open or owner password secret with pdfa"}
    return {}


def check_passwords(options: PdfOptions, passwords: Passwords) -> None:
    """The checks that need the passwords themselves (from secrets, or literal from Gotenberg's form fields)."""
    problems: dict[str, str] = {}
    if options.pdfa and (passwords.open_password or passwords.owner_password):
        problems[PREFIX + "pdfa"] = "PDF/A forbids encryption; accepted: no open or owner password with pdfa"
    if options.restricts_permissions and not passwords.owner_password:
        for key, field in (("print", "printing"), ("changes", "changes"), ("copy", "copying")):
            if getattr(options, field) != getattr(DEFAULT, field):
                problems[PREFIX + key] = "permissions need an owner password; accepted: the default, or an owner " \
                                         "password (owner-password-secret)"
    if problems:
        raise BadOptions(problems)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def from_metadata(metadata: Mapping[str, str] | None, defaults: PdfOptions | None = None) -> PdfOptions:
    """Options from an object's custom metadata over `defaults`; keys outside PREFIX are ignored (any case)."""
    base = defaults or DEFAULT
    if not metadata:
        return base
    raw: dict[str, tuple[str, str]] = {}
    for key, value in metadata.items():
        low = key.lower()
        if low.startswith(PREFIX):
            raw[low[len(PREFIX):]] = (key, value if isinstance(value, str) else str(value))
    return _apply(base, raw) if raw else base


def metadata_from_pairs(pairs: list[str]) -> dict[str, str]:
    """`worker convert --option pdfa=2b --option pages=1-3,5` -> the same metadata keys, so one parser serves both."""
    out: dict[str, str] = {}
    problems: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            problems[pair] = "not KEY=VALUE; accepted keys: " + ", ".join(o.key for o in CATALOGUE)
            continue
        key = key.strip().lower().removeprefix(PREFIX)
        out[PREFIX + key] = value
    if problems:
        raise BadOptions(problems)
    return out


def from_env(env: Mapping[str, str] | None = None) -> PdfOptions:
    """Service-wide defaults from PDF_* variables (PDF_PDFA=2b, PDF_MAX_DPI=150, ...), validated once at start.

    Every problem is reported together as one WorkerError(BAD_CONFIG), like worker/config.py.
    """
    env = os.environ if env is None else env
    raw = {ENV_KEYS[name].key: (name, value) for name, value in env.items() if name in ENV_KEYS and value.strip()}
    unknown = sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in ENV_KEYS)
    problems = [f"{n}: unknown option; accepted: {', '.join(sorted(ENV_KEYS))}" for n in unknown]
    options = PdfOptions()
    try:
        options = _apply(options, raw)
    except BadOptions as exc:
        problems.extend(f"{k}: {v}" for k, v in sorted(exc.problems.items()))
    if problems:
        raise WorkerError(Reason.BAD_CONFIG, "invalid PDF option defaults: " + "; ".join(problems))
    return options


# --- Gotenberg's LibreOffice route (issue 15) -------------------------------------------------------------

# form field -> our key; the value passes through the same parser. Password fields are literal passwords in the
# request, not secret names: the route puts them in `Passwords` itself (GOTENBERG_PASSWORD_FIELDS).
GOTENBERG_FIELDS: dict[str, str] = {
    "pdfa": "pdfa",  # Gotenberg sends "PDF/A-2b"; gotenberg_to_metadata strips the "PDF/A-" prefix
    "pdfua": "pdfua",
    "nativePageRanges": "pages",
    "singlePageSheets": "single-page-sheets",
    "exportNotes": "notes",
    "exportNotesInMargin": "notes-in-margin",
    "exportBookmarks": "bookmarks",
    "quality": "quality",
    "maxImageResolution": "max-dpi",  # only when reduceImageResolution is true
    "losslessImageCompression": "lossless",
    "exportFormFields": "form-fields",
    "nativeWatermarkText": "watermark",
    "updateIndexes": "update-indexes",
    "allowPrinting": "print",  # false -> none, true -> full
    "allowCopying": "copy",
}
GOTENBERG_PASSWORD_FIELDS = {"password": "input_password", "userPassword": "open_password",
                             "ownerPassword": "owner_password"}
# Fields the route understands but that change nothing here (reduceImageResolution folds into max-dpi).
GOTENBERG_FOLDED = frozenset({"reduceImageResolution"})
# Gotenberg's finer permission flags; LibreOffice's "Changes" level is coarser, see gotenberg_to_metadata.
GOTENBERG_CHANGE_FIELDS = ("allowModifying", "allowAnnotating", "allowFillingForms", "allowAssembling")


def gotenberg_to_metadata(form: Mapping[str, str]) -> dict[str, str]:
    """Gotenberg LibreOffice-route form fields -> our metadata keys; any other field is a BadOptions naming it.

    The caller removes the file parts and the fields its route handles itself (merge, metadata, ...), and the
    password fields (GOTENBERG_PASSWORD_FIELDS), before calling.
    """
    out: dict[str, str] = {}
    problems: dict[str, str] = {}
    reduce = form.get("reduceImageResolution", "false").strip().lower() in _TRUE
    for name, value in form.items():
        value = value.strip()
        if name in GOTENBERG_FOLDED or name in GOTENBERG_CHANGE_FIELDS:
            continue
        if name not in GOTENBERG_FIELDS:
            problems[name] = "not supported by this service"
            continue
        key = GOTENBERG_FIELDS[name]
        if name == "pdfa":
            value = value.upper().removeprefix("PDF/A-").lower() if value else value
        elif name == "maxImageResolution" and not reduce:
            continue
        elif name == "allowPrinting":
            value = {"true": "full", "false": "none"}.get(value.lower(), value)
        if value:
            out[PREFIX + key] = value
    if reduce and PREFIX + "max-dpi" not in out:
        out[PREFIX + "max-dpi"] = "300"  # Gotenberg's default maxImageResolution
    allowed = {f: form.get(f, "true").strip().lower() not in _FALSE for f in GOTENBERG_CHANGE_FIELDS}
    if not all(allowed.values()):
        out[PREFIX + "changes"] = _changes_level(allowed)
    if problems:
        raise BadOptions(problems)
    return out


def _changes_level(allowed: Mapping[str, bool]) -> str:
    """The most permissive LibreOffice Changes level that grants nothing Gotenberg's flags deny."""
    if allowed["allowModifying"] and allowed["allowAnnotating"] and allowed["allowFillingForms"]:
        return "any"  # LibreOffice's "any" never grants assembling; the nearest level that denies less
    if allowed["allowAnnotating"]:
        return "comments"
    if allowed["allowFillingForms"]:
        return "forms"
    if allowed["allowAssembling"]:
        return "assemble"
    return "none"


# --- secrets ----------------------------------------------------------------------------------------------


class SecretSource(Protocol):
    """Where named secrets come from; only names the operator made available can resolve."""

    def read(self, name: str) -> str: ...


class MountedSecrets:
    """Secrets mounted as files under one directory (Cloud Run secret volumes, docs/options.md).

    `<directory>/<name>` is the secret's file, or a directory holding it as `value` (Cloud Run wants one mount
    directory per secret: `--set-secrets=/secrets/<name>/value=<secret>:latest`). Names are validated (no dot, no
    slash), so an uploader can never reach a file outside the directory. A value is re-read only when the file's
    (inode, size, mtime) changes or `max_age_s` has passed (a volume may swap versions without a visible stat
    change), so a secret is read about once per version, not per document.
    """

    def __init__(self, directory: Path, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.max_age_s = max_age_s
        self._clock = clock
        self._cache: dict[str, tuple[tuple[int, int, int], float, str]] = {}

    def read(self, name: str) -> str:
        label = "secret"
        try:
            secret_name(name)
        except ValueError as exc:
            raise BadOptions({label: f"{_shown(name)} is not accepted; accepted: {_SECRET}"}) from exc
        path = self.directory / name
        try:
            if path.is_dir():
                path = path / "value"
            st = path.stat()
        except FileNotFoundError as exc:
            raise BadOptions({label: f"{_shown(name)} is not a secret this service has; accepted: {_SECRET}"}) from exc
        version, now = (st.st_ino, st.st_size, st.st_mtime_ns), self._clock()
        cached = self._cache.get(name)
        if cached is not None and cached[0] == version and now - cached[1] < self.max_age_s:
            return cached[2]
        if st.st_size > MAX_SECRET_BYTES:
            raise BadOptions({label: f"{_shown(name)} is larger than {MAX_SECRET_BYTES} bytes"})
        with path.open("rb") as fh:
            raw = fh.read(MAX_SECRET_BYTES + 1)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadOptions({label: f"{_shown(name)} is not UTF-8 text"}) from exc
        value = value.removesuffix("\n").removesuffix("\r")  # one trailing newline, as `echo` or an editor adds
        if not value:
            raise BadOptions({label: f"{_shown(name)} is empty"})
        self._cache[name] = (version, now, value)
        return value


def secrets_from_env(env: Mapping[str, str] | None = None) -> MountedSecrets | None:
    """SECRETS_DIR names the operator's secret directory; None when unset (then any *-secret option is refused)."""
    env = os.environ if env is None else env
    raw = env.get(SECRETS_DIR_ENV, "").strip()
    if not raw:
        return None
    directory = Path(raw)
    if not directory.is_dir():
        raise WorkerError(Reason.BAD_CONFIG, f"invalid configuration: {SECRETS_DIR_ENV}={raw!r}: not a directory")
    return MountedSecrets(directory)


def resolve_passwords(options: PdfOptions, source: SecretSource | None) -> Passwords:
    """Read the secrets `options` names; BadOptions names each key whose secret cannot be had."""
    wanted = {"open_password": options.open_password_secret, "owner_password": options.owner_password_secret,
              "input_password": options.password_secret}
    keys = {"open_password": "open-password-secret", "owner_password": "owner-password-secret",
            "input_password": "password-secret"}
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for slot, name in wanted.items():
        if name is None:
            continue
        if source is None:
            problems[PREFIX + keys[slot]] = f"no secrets are configured on this service ({SECRETS_DIR_ENV} unset)"
            continue
        try:
            values[slot] = source.read(name)
        except BadOptions as exc:
            problems[PREFIX + keys[slot]] = "; ".join(exc.problems.values())
    if problems:
        raise BadOptions(problems)
    passwords = Passwords(**values)
    check_passwords(options, passwords)
    return passwords


def _canonical(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
