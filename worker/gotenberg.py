"""Gotenberg's LibreOffice-route contract as pure functions: form -> what to convert, failure -> status and body.

Read from Gotenberg v8.36.0 (pkg/modules/libreoffice/routes.go, pkg/modules/api/{context,formdata,middlewares,
errors}.go, test/integration/features/{libreoffice_convert,health,output_filename}.feature). No Flask, no office:
worker/sync_route.py does the HTTP and the conversions. A field we cannot honour is refused naming it, never
ignored; docs/operations.md lists what is accepted.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker import options as opts
from worker.errors import RETRYABLE, Reason, WorkerError
from worker.options import BadOptions, Passwords, PdfOptions

ROUTE = "/forms/libreoffice/convert"
ROOT = "/gotenberg"  # Gotenberg's --api-root-path: a client pointed at <service>/gotenberg finds /health there too
ROUTE_LABEL = "libreoffice_convert"  # the metric label
TRACE_HEADER = "Gotenberg-Trace"
FILENAME_HEADER = "Gotenberg-Output-Filename"
FILES_FIELD = "files"  # what clients name the field; Gotenberg takes a file part of any name as a document...
OTHER_FILE_FIELDS = frozenset({"embeds", "watermark", "stamp", "facturxXml"})  # ...except these, not supported here
TEXT = "text/plain; charset=UTF-8"  # Gotenberg's error bodies
MAX_METADATA_CHARS = 64 * 1024

# Gotenberg fields we cannot honour except at Gotenberg's default, which is also what LibreOffice does unasked
# (DefaultOptions in pkg/modules/libreoffice/api/api.go): a client that sends the default explicitly still works.
DEFAULT_ONLY: dict[str, bool] = {
    "landscape": False, "allowDuplicateFieldNames": False, "exportBookmarksToPdfDestination": False,
    "exportPlaceholders": False, "exportNotesPages": False, "exportOnlyNotesPages": False,
    "convertOooTargetToPdfTarget": False, "exportLinksRelativeFsys": False, "exportHiddenSlides": False,
    "skipEmptyPages": False, "addOriginalDocumentAsStream": False, "flatten": False, "nativePdfFormats": True,
    "splitUnify": False,
}
EMPTY_ONLY = frozenset({"splitMode", "splitSpan", "downloadFrom", "embedsMetadata", "rotateAngle", "rotatePages"})
# Keys of the `metadata` field (exiftool's names, as Gotenberg's clients send them) -> XMP property we write.
METADATA_KEYS: dict[str, str] = {
    "Author": "dc:creator", "Title": "dc:title", "Subject": "dc:description", "Keywords": "pdf:Keywords",
    "Creator": "xmp:CreatorTool", "Producer": "pdf:Producer", "CreationDate": "xmp:CreateDate",
    "CreateDate": "xmp:CreateDate", "ModDate": "xmp:ModifyDate", "ModifyDate": "xmp:ModifyDate",
    "Copyright": "dc:rights", "Trapped": "pdf:Trapped",
}
LIST_KEYS = frozenset({"Author", "Keywords"})
DATE_KEYS = frozenset({"CreationDate", "CreateDate", "ModDate", "ModifyDate"})
TRAPPED = ("True", "False", "Unknown")
_TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, which Gotenberg uses, lower-cased
_FALSE = ("0", "f", "false")
# our option key -> the Gotenberg field that sets it, so a BadOptions names what the caller sent
FIELD_OF_KEY = {opts.PREFIX + key: name for name, key in opts.GOTENBERG_FIELDS.items()}
FIELD_OF_KEY[opts.PREFIX + "max-dpi"] = "maxImageResolution"
FIELD_OF_KEY[opts.PREFIX + "changes"] = "allowModifying"
FIELD_OF_KEY[opts.PREFIX + "pdfa"] = "pdfa"


class SyncError(Exception):
    """A request answered with `status` and a plain-text body, as Gotenberg does; `reason` is our label for it."""

    def __init__(self, status: int, message: str, reason: Reason, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Upload:
    """One file part, already on disk under a fixed name; `filename` is the caller's, sanitised."""

    filename: str
    path: str
    size: int


@dataclass(frozen=True)
class Plan:
    """What one request asks for, validated: files in Gotenberg's order, options, passwords, merge, metadata."""

    uploads: tuple[Upload, ...]
    options: PdfOptions
    passwords: Passwords
    merge: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def several(self) -> bool:
        return len(self.uploads) > 1 and not self.merge


def invalid(problems: Sequence[str]) -> SyncError:
    """Gotenberg's 400 for form data: "Invalid form data: " then one problem per line."""
    return SyncError(400, "Invalid form data: " + "\n".join(problems), Reason.BAD_OPTION)


def field_problem(name: str, value: str, why: str) -> str:
    """One line in Gotenberg's words: form field 'x' is invalid (got 'y', resulting to why)."""
    return f"form field '{name}' is invalid (got '{value}', resulting to {why})"


def sanitize_filename(name: str) -> str:
    """The last path segment, control characters dropped, NFC (Gotenberg's sanitizeFilename): never a path."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 0x20 and ord(ch) != 0x7F)
    return unicodedata.normalize("NFC", name)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Order files as people number them (2 before 10), close to Gotenberg's AlphanumericSort (merge order)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def parse_bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(field_problem(name, value, f'strconv.ParseBool: parsing "{value}": invalid syntax'))


def build_plan(form: Mapping[str, list[str]], uploads: Sequence[Upload], file_fields: Sequence[str] = ()) -> Plan:
    """The validated request, or SyncError(400) naming every field that is wrong or that we cannot honour."""
    problems: list[str] = [f"form file field '{name}' is not supported by this service"
                           for name in sorted(set(file_fields) & OTHER_FILE_FIELDS)]
    values: dict[str, str] = {}
    for name, given in form.items():
        if len(given) > 1 and len(set(given)) > 1:
            problems.append(f"form field '{name}' is given {len(given)} times with different values")
        values[name] = given[0] if given else ""
    merge = False
    metadata: dict[str, Any] = {}
    if "merge" in values:
        try:
            merge = parse_bool("merge", values.pop("merge")) if values["merge"].strip() else False
        except ValueError as exc:
            problems.append(str(exc))
    if "metadata" in values:
        metadata, bad = parse_metadata(values.pop("metadata"))
        problems += bad
    problems += _drop_defaults(values)
    passwords = Passwords(**{slot: values.pop(name) for name, slot in opts.GOTENBERG_PASSWORD_FIELDS.items()
                             if values.get(name)})
    for name in opts.GOTENBERG_PASSWORD_FIELDS:
        values.pop(name, None)
    known = set(opts.GOTENBERG_FIELDS) | opts.GOTENBERG_FOLDED | set(opts.GOTENBERG_CHANGE_FIELDS)
    problems += [field_problem(name, values.pop(name), "not supported by this service")
                 for name in sorted(set(values) - known)]
    options = opts.DEFAULT
    try:
        options = opts.from_metadata(opts.gotenberg_to_metadata(values))
        opts.check_passwords(options, passwords)
    except BadOptions as exc:
        problems += [_named(key, why, values) for key, why in sorted(exc.problems.items())]
    problems += _conflicts(options, passwords, merge, bool(metadata))
    if not uploads:
        problems.append(f"no form file found (send each document as a file part, e.g. '{FILES_FIELD}')")
    names = [u.filename for u in uploads]
    problems += [f"form file '{n}' is sent more than once (output names must differ)"
                 for n in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"form file '{u.filename or '(no name)'}' has no file name" for u in uploads if not u.filename]
    if problems:
        raise invalid(problems)
    ordered = tuple(sorted(uploads, key=lambda u: natural_key(u.filename)))
    return Plan(ordered, options, passwords, merge, metadata)


def _drop_defaults(values: dict[str, str]) -> list[str]:
    """Remove the fields we cannot honour when they hold Gotenberg's default; any other value is a problem."""
    problems = []
    for name in [n for n in values if n in DEFAULT_ONLY or n in EMPTY_ONLY]:
        value = values.pop(name)
        if not value.strip():
            continue
        if name in EMPTY_ONLY:
            problems.append(field_problem(name, value, "not supported by this service; accepted: empty"))
            continue
        try:
            ok = parse_bool(name, value) == DEFAULT_ONLY[name]
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if not ok:
            default = "true" if DEFAULT_ONLY[name] else "false"
            problems.append(field_problem(name, value, f"not supported by this service; accepted: {default}"))
    return problems


def _named(key: str, why: str, values: Mapping[str, str]) -> str:
    """A BadOptions problem in the caller's words: the form field it came from, not our metadata key."""
    name = key if key in values else FIELD_OF_KEY.get(key, key)
    return field_problem(name, values.get(name, ""), why.replace(opts.PREFIX, ""))


def _conflicts(options: PdfOptions, passwords: Passwords, merge: bool, metadata: bool) -> list[str]:
    """Combinations we would not honour exactly: refused rather than answered with a different PDF."""
    encrypted = bool(passwords.open_password or passwords.owner_password)
    problems = []
    if encrypted and merge:
        problems.append("form fields 'userPassword'/'ownerPassword' cannot be combined with 'merge' here "
                        "(each PDF is encrypted by LibreOffice before a merge)")
    if encrypted and metadata:
        problems.append("form fields 'userPassword'/'ownerPassword' cannot be combined with 'metadata' here "
                        "(the metadata is written after LibreOffice encrypted the PDF)")
    if options.pdfua and merge:
        problems.append("form field 'pdfua' cannot be combined with 'merge' here (a merge keeps the tags of the "
                        "first document only)")
    return problems


def parse_metadata(raw: str) -> tuple[dict[str, Any], list[str]]:
    """The `metadata` JSON object, keys and values checked: ({key: value}, problems)."""
    if not raw.strip():
        return {}, []
    if len(raw) > MAX_METADATA_CHARS:
        return {}, [field_problem("metadata", raw[:40] + "...", f"longer than {MAX_METADATA_CHARS} characters")]
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return {}, [field_problem("metadata", raw, f"unmarshal metadata: {exc}")]
    if not isinstance(doc, dict):
        return {}, [field_problem("metadata", raw, "unmarshal metadata: not a JSON object")]
    problems = []
    for key, value in doc.items():
        why = _metadata_problem(key, value)
        if why:
            problems.append(f"metadata key '{key}' is invalid ({why})")
    return doc, problems


def _metadata_problem(key: str, value: Any) -> str | None:
    if key not in METADATA_KEYS:
        return "not supported by this service; accepted: " + ", ".join(METADATA_KEYS)
    items = value if key in LIST_KEYS and isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v.isprintable() for v in items):
        return "must be printable text" + (" or a list of texts" if key in LIST_KEYS else "")
    if key in DATE_KEYS:
        try:
            parse_date(value)
        except ValueError:
            return "must be a date like 2006-09-18T16:27:50-04:00"
    if key == "Trapped" and value not in TRAPPED:
        return "must be one of " + ", ".join(TRAPPED)
    return None


def parse_date(value: str) -> datetime:
    """ISO 8601 as Gotenberg's clients send it (2006-09-18T16:27:50-04:00, or Z); naive dates are UTC."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- answers -----------------------------------------------------------------------------------------------


def output_name(header: str | None, several: bool) -> str:
    """Gotenberg-Output-Filename (sanitised) plus .pdf or .zip; without it a fresh UUID name, like Gotenberg."""
    stem = sanitize_filename(header or "").strip() or str(uuid.uuid4())
    return stem + (".zip" if several else ".pdf")


def zip_entry_name(upload_name: str) -> str:
    """document.docx -> document.docx.pdf inside the zip (Gotenberg's naming)."""
    return upload_name + ".pdf"


def failure(exc: WorkerError, filename: str) -> SyncError:
    """Our reason for one file -> Gotenberg's status and a body that names the file."""
    reason = exc.reason
    if reason is Reason.QUEUE_FULL:
        return SyncError(429, "The request queue is full. Retry shortly.", reason, retry_after_s=1)
    if reason is Reason.CONVERSION_TIMEOUT:
        return SyncError(503, f"The conversion of '{filename}' exceeded the time limit. Retry later, or reduce the "
                         "workload.", reason, retry_after_s=5)
    if reason in RETRYABLE:
        return SyncError(503, f"LibreOffice failed to convert the document '{filename}' ({reason.value}). The "
                         "request is valid and may be retried.", reason, retry_after_s=5)
    if reason is Reason.PASSWORD_REQUIRED:
        return SyncError(400, f"The document '{filename}' is password-protected. Provide its password in the "
                         "'password' form field.", reason)
    if reason is Reason.PASSWORD_WRONG:
        return SyncError(400, f"The password for the document '{filename}' is incorrect. Check the 'password' "
                         "form field.", reason)
    if reason is Reason.TOO_LARGE:
        return SyncError(413, f"The document '{filename}' is too large: {exc.message}", reason)
    return SyncError(400, f"The document '{filename}' could not be converted ({reason.value}): {exc.message}",
                     reason)


def health_body(up: bool, now: datetime | None = None) -> dict[str, Any]:
    """Gotenberg's /health JSON (alexliesenfeld/health), LibreOffice module only: 200 when up, 503 when down."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    status = "up" if up else "down"
    return {"status": status, "details": {"libreoffice": {"status": status, "timestamp": stamp}}}
