"""Turn one push request (headers + body) into one typed storage event, so nothing else parses wire formats.

Pure functions only: no Flask, no GCS, no network. A body that is not a push envelope or CloudEvent at all
raises `WorkerError(Reason.BAD_REQUEST)`; a well-formed delivery that is not a storage event we understand
returns `NotStorageEvent` (the route acks it). Shapes, as Google documents them: the wrapped push envelope
(https://cloud.google.com/pubsub/docs/push), the unwrapped payload with write-metadata headers
(https://cloud.google.com/pubsub/docs/payload-unwrapping), the GCS notification's attributes and JSON_API_V1 object
body (https://cloud.google.com/storage/docs/pubsub-notifications), and Eventarc's storage CloudEvents
(https://cloud.google.com/run/docs/triggering/storage-triggers).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeGuard
from urllib.parse import unquote

from worker.errors import Reason, WorkerError

# Real envelopes and object resources nest about 4 levels; anything this deep is hostile.
MAX_JSON_DEPTH = 32

EVENT_TYPES = frozenset({"OBJECT_FINALIZE", "OBJECT_DELETE", "OBJECT_ARCHIVE", "OBJECT_METADATA_UPDATE"})

CLOUDEVENT_TYPES = {
    "google.cloud.storage.object.v1.finalized": "OBJECT_FINALIZE",
    "google.cloud.storage.object.v1.deleted": "OBJECT_DELETE",
    "google.cloud.storage.object.v1.archived": "OBJECT_ARCHIVE",
    "google.cloud.storage.object.v1.metadataUpdated": "OBJECT_METADATA_UPDATE",
}

_CE_SOURCE_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
_CE_SUBJECT_PREFIX = "objects/"
_MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d must not match Arabic-Indic or full-width digits
)


@dataclass(frozen=True)
class ObjectEvent:
    """One storage object event, whatever shape it came in; the work key is (bucket, name, generation)."""

    bucket: str
    name: str  # verbatim: may hold spaces, unicode, "../"; callers make local paths safe
    generation: int
    event_type: str  # one of EVENT_TYPES
    size: int | None
    content_type: str | None
    message_id: str | None
    publish_time: datetime | None  # tz-aware UTC
    delivery_attempt: int | None
    subscription: str | None
    shape: str  # "push" | "push-unwrapped" | "cloudevent-binary" | "cloudevent-structured"
    # The object's custom metadata (per-document options, docworker-* keys: worker/options.py). None when the
    # delivery carried no object resource (a notification with payload format NONE): the job then reads it.
    metadata: Mapping[str, str] | None = field(default_factory=dict)


@dataclass(frozen=True)
class NotStorageEvent:
    """A well-formed delivery that is not a storage event we understand: ack it, redelivery cannot help."""

    message_id: str | None
    why: str


def parse_push(headers: Mapping[str, str], body: bytes) -> ObjectEvent | NotStorageEvent:
    """Parse by the request's shape (CloudEvent structured or binary, Pub/Sub push); BAD_REQUEST on garbage."""
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    media_type = h.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/cloudevents+json":
        return _parse_structured_cloudevent(_loads(body, "structured CloudEvent"))
    if "ce-type" in h:
        return _parse_binary_cloudevent(h, body)
    doc: object = None
    not_json: WorkerError | None = None
    try:
        doc = _loads(body, "body")
    except WorkerError as exc:
        not_json = exc
    if isinstance(doc, dict) and "message" in doc:
        return _parse_wrapped(doc)
    if "x-goog-pubsub-message-id" in h:
        return _parse_unwrapped(h, doc)  # an unwrapped body may be anything, or empty
    if not_json is not None:
        raise not_json
    raise WorkerError(Reason.BAD_REQUEST, "body is neither a push envelope nor a CloudEvent")


# --- shapes ------------------------------------------------------------------------------------------------


def _parse_wrapped(envelope: dict[str, object]) -> ObjectEvent | NotStorageEvent:
    """The default push body: {"message": {...}, "subscription": ..., "deliveryAttempt": ...}."""
    message = envelope["message"]
    if not isinstance(message, dict):
        raise WorkerError(Reason.BAD_REQUEST, "push envelope 'message' is not an object")
    attributes = message.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise WorkerError(Reason.BAD_REQUEST, "push envelope 'message.attributes' is not an object")
    message_id = _str_or_none(_first(message, "messageId", "message_id"))
    attrs_suffice = all(_present(attributes.get(k)) for k in ("bucketId", "objectId", "objectGeneration"))
    try:
        data = _decode_data(message.get("data"))
    except WorkerError:
        if not attrs_suffice:
            raise
        data = {}  # data only adds size/contentType here; the attributes identify the object
    if data is None:
        if not attrs_suffice:
            return NotStorageEvent(message_id, "data is not an object resource and attributes are incomplete")
        data = {}
    return _build(
        bucket=_first(attributes, "bucketId") or data.get("bucket"),
        name=_first(attributes, "objectId") or data.get("name"),
        generation=_first(attributes, "objectGeneration") or data.get("generation"),
        event_type=attributes.get("eventType"),
        data=data,
        message_id=message_id,
        publish_time=_first(message, "publishTime", "publish_time"),
        delivery_attempt=envelope.get("deliveryAttempt"),
        subscription=envelope.get("subscription"),
        shape="push",
    )


def _parse_unwrapped(h: Mapping[str, str], doc: object) -> ObjectEvent | NotStorageEvent:
    """Payload unwrapping + write_metadata: attributes are headers, the body is the object JSON or empty."""
    data = doc if isinstance(doc, dict) else {}
    return _build(
        bucket=_header_attr(h, "bucketid") or data.get("bucket"),
        # A header cannot carry non-ASCII reliably; the JSON body's name, when present, is exact.
        name=data.get("name") if _present(data.get("name")) else _header_attr(h, "objectid"),
        generation=_header_attr(h, "objectgeneration") or data.get("generation"),
        event_type=_header_attr(h, "eventtype"),
        data=data,
        message_id=h.get("x-goog-pubsub-message-id"),
        publish_time=h.get("x-goog-pubsub-publish-time"),
        delivery_attempt=None,  # the unwrapped push documents no header for it
        subscription=h.get("x-goog-pubsub-subscription-name"),
        shape="push-unwrapped",
    )


def _parse_binary_cloudevent(h: Mapping[str, str], body: bytes) -> ObjectEvent | NotStorageEvent:
    """Eventarc's binary mode: attributes in ce-* headers (percent-encoded), the object JSON in the body."""
    if not all(h.get(k) for k in ("ce-specversion", "ce-id", "ce-source", "ce-type")):
        raise WorkerError(Reason.BAD_REQUEST, "incomplete binary CloudEvent headers")
    message_id = _ce_header(h, "ce-id")
    ce_type = _ce_header(h, "ce-type") or ""
    event_type = CLOUDEVENT_TYPES.get(ce_type)
    if event_type is None:
        return NotStorageEvent(message_id, f"CloudEvent type {ce_type[:200]!r} is not a storage event")
    data = _try_loads(body) if body.strip() else {}
    if not isinstance(data, dict):
        return NotStorageEvent(message_id, "CloudEvent data is not a JSON object")
    source, subject = _ce_header(h, "ce-source"), _ce_header(h, "ce-subject")
    time = _ce_header(h, "ce-time")
    return _build_cloudevent(event_type, source, subject, data, message_id, time, "cloudevent-binary")


def _parse_structured_cloudevent(doc: object) -> ObjectEvent | NotStorageEvent:
    """Structured mode: one JSON object holding the attributes and `data` (or `data_base64`)."""
    required = ("specversion", "id", "source", "type")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc[k] for k in required):
        raise WorkerError(Reason.BAD_REQUEST, "structured CloudEvent lacks specversion, id, source or type")
    message_id: str = doc["id"]
    event_type = CLOUDEVENT_TYPES.get(doc["type"])
    if event_type is None:
        return NotStorageEvent(message_id, f"CloudEvent type {doc['type'][:200]!r} is not a storage event")
    data: object = doc.get("data")
    if data is None and "data_base64" in doc:
        data = _decode_data(doc["data_base64"])
    if data is not None and not isinstance(data, dict):
        return NotStorageEvent(message_id, "CloudEvent data is not a JSON object")
    source, subject = _str_or_none(doc["source"]), _str_or_none(doc.get("subject"))
    time, shape = doc.get("time"), "cloudevent-structured"
    return _build_cloudevent(event_type, source, subject, data or {}, message_id, time, shape)


def _build_cloudevent(
    event_type: str,
    source: str | None,
    subject: str | None,
    data: Mapping[str, object],
    message_id: str | None,
    time: object,
    shape: str,
) -> ObjectEvent | NotStorageEvent:
    """Bucket from source, object from subject (the data's exact `name` wins), generation from data."""
    bucket: object = data.get("bucket")
    if source is not None and source.startswith(_CE_SOURCE_PREFIX):
        bucket = source[len(_CE_SOURCE_PREFIX) :]
    name: object = None
    if subject is not None and subject.startswith(_CE_SUBJECT_PREFIX):
        name = subject[len(_CE_SUBJECT_PREFIX) :]
    if _present(data.get("name")):
        name = data["name"]
    return _build(
        bucket=bucket,
        name=name,
        generation=data.get("generation"),
        event_type=event_type,
        data=data,
        message_id=message_id,
        publish_time=time,
        delivery_attempt=None,
        subscription=None,
        shape=shape,
    )


def _build(
    *,
    bucket: object,
    name: object,
    generation: object,
    event_type: object,
    data: Mapping[str, object],
    message_id: object,
    publish_time: object,
    delivery_attempt: object,
    subscription: object,
    shape: str,
) -> ObjectEvent | NotStorageEvent:
    """Validate the identifying fields; anything missing or odd means "not a storage event we understand"."""
    mid = _str_or_none(message_id)
    if not _is_name(bucket):
        return NotStorageEvent(mid, "no bucket")
    if not _is_name(name):
        return NotStorageEvent(mid, "no object name")
    gen = _parse_int(generation)
    if not gen:  # None, or 0 which GCS never assigns
        return NotStorageEvent(mid, f"no valid object generation ({str(generation)[:40]!r})")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return NotStorageEvent(mid, f"event type {str(event_type)[:80]!r} is not a storage object event")
    content_type = data.get("contentType")
    return ObjectEvent(
        bucket=bucket,
        name=name,
        generation=gen,
        event_type=event_type,
        size=_parse_int(data.get("size")),
        content_type=content_type if isinstance(content_type, str) else None,
        message_id=mid,
        publish_time=parse_rfc3339(publish_time) if isinstance(publish_time, str) else None,
        delivery_attempt=_parse_int(delivery_attempt),
        subscription=_str_or_none(subscription),
        shape=shape,
        metadata=_metadata(data),
    )


# --- small pure helpers ------------------------------------------------------------------------------------


def _metadata(data: Mapping[str, object]) -> dict[str, str] | None:
    """The object resource's `metadata` map; None when there is no resource to read it from.

    GCS writes every value as a string; anything else is kept as its JSON text, so a docworker-* key with an odd
    value reaches the options parser and is refused there with the accepted values, never silently dropped.
    """
    if not data:
        return None
    raw = data.get("metadata")
    if not isinstance(raw, dict):
        return {}  # GCS omits the map when the object has no custom metadata
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items() if v is not None}


def _loads(raw: bytes, what: str) -> object:
    """Strict JSON: UTF-8, at most MAX_JSON_DEPTH levels; every failure is BAD_REQUEST."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise WorkerError(Reason.BAD_REQUEST, f"{what} is nested too deeply") from exc
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, int-digit limit: all ValueError
        raise WorkerError(Reason.BAD_REQUEST, f"{what} is not valid JSON: {str(exc)[:120]}") from exc
    if _depth_exceeds(doc, MAX_JSON_DEPTH):
        raise WorkerError(Reason.BAD_REQUEST, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


def _try_loads(raw: bytes) -> object:
    """Like _loads, but None for anything that is not acceptable JSON; the caller decides what that means."""
    try:
        return _loads(raw, "body")
    except WorkerError:
        return None


def _depth_exceeds(doc: object, limit: int) -> bool:
    """Iterative (never recursive) check that containers nest no deeper than `limit`."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _decode_data(value: object) -> dict[str, object] | None:
    """Message data: {} when missing or empty, None when not a JSON object; BAD_REQUEST on bad base64."""
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        raise WorkerError(Reason.BAD_REQUEST, "message data is not a base64 string")
    try:
        raw = _b64decode(value)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise WorkerError(Reason.BAD_REQUEST, "message data is not valid base64") from exc
    if not raw.strip():
        return {}
    doc = _try_loads(raw)  # not JSON: another publisher's payload in a valid envelope, not our event
    return doc if isinstance(doc, dict) else None


def _b64decode(value: str) -> bytes:
    """Standard or URL-safe base64, padding optional: the proto3 JSON mapping for bytes accepts all four."""
    text = value.strip().rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_rfc3339(value: str) -> datetime | None:
    """RFC 3339 time with 0-9 fractional digits -> tz-aware UTC datetime (to the microsecond), else None."""
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, z, sign, off_h, off_m = m.groups()
    try:
        tz = UTC
        if not z:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(-offset if sign == "-" else offset)
        micros = int((frac or "0").ljust(6, "0")[:6])
        sec = min(int(second), 59)  # RFC 3339 allows a leap second (60); datetime does not
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), sec, micros, tz)
    except ValueError:
        return None
    return dt.astimezone(UTC)


def _parse_int(value: object) -> int | None:
    """A non-negative int64 from a JSON number or a decimal string (GCS sends 64-bit ints as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        n = int(value)
    else:
        return None
    return n if 0 <= n <= _MAX_INT64 else None


def _is_name(value: object) -> TypeGuard[str]:
    """A usable bucket/object name: a non-empty string that encodes to UTF-8 (no lone surrogates)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _present(value: object) -> bool:
    return value is not None and value != ""


def _first(mapping: Mapping[str, object], *keys: str) -> object:
    """The first present value among `keys` (for the camelCase/snake_case twins)."""
    for key in keys:
        value = mapping.get(key)
        if _present(value):
            return value
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _header_attr(h: Mapping[str, str], key: str) -> str | None:
    """A header value; undo WSGI's latin-1 decoding when the raw bytes were UTF-8 (PEP 3333)."""
    value = h.get(key)
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _ce_header(h: Mapping[str, str], key: str) -> str | None:
    """A CloudEvents attribute header: drop optional quotes, then one strict UTF-8 percent-decoding round."""
    value = _header_attr(h, key)
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        return None
