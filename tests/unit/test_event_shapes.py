"""The other push shapes: unwrapped Pub/Sub pushes, binary and structured CloudEvents, and garbage that is only
ever a 400.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.push_bodies import (
    CAPTURED,
    ENVELOPES,
    GEN,
    JSON_HEADERS,
    attrs,
    b64,
    dumps,
    obj,
    parse_bad,
    parse_not,
    parse_ok,
    push,
)
from worker.errors import Reason, WorkerError
from worker.events import NotStorageEvent, ObjectEvent, parse_push

# --- unwrapped push -----------------------------------------------------------------------------------------


def unwrapped_headers(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "Content-Type": "application/json",
        "X-Goog-Pubsub-Message-Id": "555",
        "X-Goog-Pubsub-Publish-Time": "2023-11-14T22:13:20.5Z",
        "X-Goog-Pubsub-Subscription-Name": "projects/p/subscriptions/s",
        "Bucketid": "in-bucket",
        "Objectid": "incoming/report.docx",
        "Objectgeneration": GEN,
        "Eventtype": "OBJECT_FINALIZE",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_unwrapped_with_object_body() -> None:
    event = parse_ok(unwrapped_headers(), dumps(obj()))
    assert (event.shape, event.message_id, event.subscription, event.size) == (
        "push-unwrapped",
        "555",
        "projects/p/subscriptions/s",
        33,
    )
    assert event.publish_time == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)


@pytest.mark.parametrize("body", [b"", b"not json at all", b"\x00\x01\x02", b"[1]", b"[" * 10_000])
def test_unwrapped_body_is_optional(body: bytes) -> None:
    event = parse_ok(unwrapped_headers(), body)
    assert (event.bucket, event.name, event.generation, event.size) == (
        "in-bucket",
        "incoming/report.docx",
        int(GEN),
        None,
    )


def test_unwrapped_without_attributes_is_not_a_storage_event() -> None:
    headers = unwrapped_headers(Bucketid=None, Objectid=None, Objectgeneration=None, Eventtype=None)
    event = parse_not(headers, dumps(obj()))
    assert event.message_id == "555"


def test_unwrapped_name_utf8_bytes_seen_as_latin1_are_repaired() -> None:
    name = "incoming/Bericht \u00fcber \u2013 Q3.docx"
    as_wsgi = name.encode("utf-8").decode("latin-1")  # what PEP 3333 servers hand us for raw UTF-8 bytes
    event = parse_ok(unwrapped_headers(Objectid=as_wsgi), b"")
    assert event.name == name


def test_unwrapped_body_name_wins_over_header() -> None:
    event = parse_ok(unwrapped_headers(Objectid="mangled?"), dumps(obj(name="incoming/exact ✓.docx")))
    assert event.name == "incoming/exact ✓.docx"


def test_wrapped_envelope_wins_over_unwrapped_headers() -> None:
    body = push({"attributes": attrs(objectId="from-envelope"), "messageId": "9"})
    event = parse_ok(unwrapped_headers(), body)
    assert (event.shape, event.name, event.message_id) == ("push", "from-envelope", "9")


# --- binary CloudEvents -------------------------------------------------------------------------------------


def ce_headers(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "8273645192837465",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": "//storage.googleapis.com/projects/_/buckets/in-bucket",
        "ce-subject": "objects/incoming/report.docx",
        "ce-time": "2023-11-14T22:13:20.123456Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("ce_type", "event_type"),
    [
        ("google.cloud.storage.object.v1.finalized", "OBJECT_FINALIZE"),
        ("google.cloud.storage.object.v1.deleted", "OBJECT_DELETE"),
        ("google.cloud.storage.object.v1.archived", "OBJECT_ARCHIVE"),
        ("google.cloud.storage.object.v1.metadataUpdated", "OBJECT_METADATA_UPDATE"),
    ],
)
def test_binary_cloudevent_types(ce_type: str, event_type: str) -> None:
    event = parse_ok(ce_headers(**{"ce-type": ce_type}), dumps(obj()))
    assert (event.event_type, event.shape) == (event_type, "cloudevent-binary")
    assert event.message_id == "8273645192837465"
    assert event.publish_time == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert (event.bucket, event.generation, event.size) == ("in-bucket", int(GEN), 33)


def test_binary_cloudevent_upper_case_headers() -> None:
    headers = {k.upper(): v for k, v in ce_headers().items()}
    assert parse_ok(headers, dumps(obj())).shape == "cloudevent-binary"


def test_binary_cloudevent_subject_is_percent_decoded_when_body_has_no_name() -> None:
    headers = ce_headers(**{"ce-subject": "objects/incoming/a%20b%20%E2%9C%93%25.docx"})
    assert parse_ok(headers, dumps(obj(name=None))).name == "incoming/a b ✓%.docx"


def test_binary_cloudevent_body_name_wins_over_subject() -> None:
    headers = ce_headers(**{"ce-subject": "objects/incoming/mangled"})
    assert parse_ok(headers, dumps(obj(name="incoming/exact 100%.docx"))).name == "incoming/exact 100%.docx"


def test_binary_cloudevent_generation_comes_from_body() -> None:
    parse_not(ce_headers(), dumps(obj(generation=None)))
    assert parse_ok(ce_headers(), dumps(obj(generation=int(GEN)))).generation == int(GEN)


def test_binary_cloudevent_bucket_falls_back_to_body() -> None:
    headers = ce_headers(**{"ce-source": "//pubsub.googleapis.com/projects/p/topics/t"})
    assert parse_ok(headers, dumps(obj(bucket="body-bucket"))).bucket == "body-bucket"


@pytest.mark.parametrize("ce_type", ["google.cloud.pubsub.topic.v1.messagePublished", "com.example.x", "%ZZ"])
def test_binary_cloudevent_other_type_is_not_a_storage_event(ce_type: str) -> None:
    event = parse_not(ce_headers(**{"ce-type": ce_type}), b"whatever, not even json")
    assert event.message_id == "8273645192837465"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"\xff", b"[" * 50_000])
def test_binary_cloudevent_body_not_an_object(body: bytes) -> None:
    parse_not(ce_headers(), body)


@pytest.mark.parametrize("missing", ["ce-specversion", "ce-id", "ce-source"])
def test_binary_cloudevent_missing_required_header_is_bad_request(missing: str) -> None:
    parse_bad(ce_headers(**{missing: None}), dumps(obj()))


# --- structured CloudEvents ---------------------------------------------------------------------------------


def structured(**overrides: Any) -> bytes:
    base = {
        "specversion": "1.0",
        "id": "ev-1",
        "type": "google.cloud.storage.object.v1.finalized",
        "source": "//storage.googleapis.com/projects/_/buckets/in-bucket",
        "subject": "objects/incoming/report.docx",
        "time": "2023-11-14T22:13:20Z",
        "datacontenttype": "application/json",
        "data": obj(),
    }
    base.update(overrides)
    return dumps({k: v for k, v in base.items() if v is not None})


CE_JSON = {"Content-Type": "application/cloudevents+json; charset=UTF-8"}


def test_structured_cloudevent() -> None:
    event = parse_ok(CE_JSON, structured())
    assert (event.shape, event.message_id, event.name, event.generation) == (
        "cloudevent-structured",
        "ev-1",
        "incoming/report.docx",
        int(GEN),
    )


def test_structured_cloudevent_data_base64() -> None:
    event = parse_ok(CE_JSON, structured(data=None, data_base64=b64(obj(size="77"))))
    assert event.size == 77


def test_structured_cloudevent_wins_over_ce_headers() -> None:
    # Content-Type decides the mode (CloudEvents HTTP binding 3); stray ce-* headers do not make it binary.
    assert parse_ok({**ce_headers(), **CE_JSON}, structured()).shape == "cloudevent-structured"


def test_structured_cloudevent_other_type() -> None:
    assert parse_not(CE_JSON, structured(type="com.example.other")).message_id == "ev-1"


@pytest.mark.parametrize("data", ["a string", [1, 2], 42])
def test_structured_cloudevent_data_not_an_object(data: object) -> None:
    parse_not(CE_JSON, structured(data=data))


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_structured_cloudevent_missing_required_is_bad_request(missing: str) -> None:
    parse_bad(CE_JSON, structured(**{missing: None}))


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"[" * 100_000])
def test_structured_cloudevent_garbage_is_bad_request(body: bytes) -> None:
    parse_bad(CE_JSON, body)


def test_structured_cloudevent_bad_data_base64_is_bad_request() -> None:
    parse_bad(CE_JSON, structured(data=None, data_base64="%%%"))


# --- property-ish: garbage never raises anything but WorkerError(BAD_REQUEST) -------------------------------

HEADER_SETS: list[dict[str, str]] = [
    {},
    JSON_HEADERS,
    CE_JSON,
    ce_headers(),
    unwrapped_headers(),
    {"ce-type": "x"},
    {"x-goog-pubsub-message-id": "1"},
]


def assert_only_bad_request(headers: Mapping[str, str], body: bytes) -> None:
    try:
        result = parse_push(headers, body)
    except WorkerError as exc:
        assert exc.reason is Reason.BAD_REQUEST, (headers, body[:200])
    else:
        assert isinstance(result, ObjectEvent | NotStorageEvent)


def test_random_bytes() -> None:
    rng = random.Random(20261128)
    for _ in range(3000):
        body = rng.randbytes(rng.randint(0, 300))
        assert_only_bad_request(rng.choice(HEADER_SETS), body)


def test_random_mutations_of_real_envelopes() -> None:
    rng = random.Random(7)
    seeds = [json.dumps(json.loads(CAPTURED.read_text())["body"]).encode()]
    for path in sorted(ENVELOPES.glob("*.json")):
        seeds.append(dumps(json.loads(path.read_text(encoding="utf-8"))["body"]))
    alphabet = b'{}[]":,\\0123456789.eE+-tfnul aZ\x00\xff'
    for _ in range(4000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(4)
            pos = rng.randrange(len(body) + 1)
            if op == 0 and body:
                del body[pos : pos + rng.randint(1, 20)]
            elif op == 1:
                body[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
            elif op == 2 and body:
                body[pos % len(body)] = rng.randrange(256)
            else:
                body = body[:pos]
        assert_only_bad_request(rng.choice(HEADER_SETS), bytes(body))


FUZZ_KEYS = [
    "message",
    "attributes",
    "data",
    "bucketId",
    "objectId",
    "objectGeneration",
    "eventType",
    "messageId",
    "publishTime",
    "deliveryAttempt",
    "subscription",
    "name",
    "bucket",
    "generation",
    "size",
    "contentType",
    "specversion",
    "id",
    "type",
    "source",
    "subject",
    "data_base64",
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 6 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, 2**64, int(GEN), 1.5, float("1e308")])
    if kind in (3, 4, 5):
        return rng.choice(["", "x", GEN, "OBJECT_FINALIZE", "e30=", "%%%", "\ud800", "objects/a", "1.0", "b"])
    keys = FUZZ_KEYS
    if kind in (6, 7):
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}
    return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def test_random_json_structures() -> None:
    rng = random.Random(42)
    for _ in range(4000):
        doc = random_json(rng)
        if rng.random() < 0.5:
            doc = {"message": doc}
        body = json.dumps(doc).encode()  # ASCII with \u escapes, so lone surrogates survive the trip
        assert_only_bad_request(rng.choice(HEADER_SETS), body)


# --- the object's custom metadata (per-document options) in every shape -------------------------------------

OPTIONS_META = {"docworker-pdfa": "2b", "Docworker-Pages": "1-3,5", "requested-by": "ünïcødé"}


def _every_shape(data: dict[str, Any]) -> dict[str, tuple[Mapping[str, str], bytes]]:
    return {
        "push": (JSON_HEADERS, push({"attributes": attrs(), "data": b64(data), "messageId": "1"})),
        "push-unwrapped": (unwrapped_headers(), dumps(data)),
        "cloudevent-binary": (ce_headers(), dumps(data)),
        "cloudevent-structured": (CE_JSON, structured(data=data)),
    }


@pytest.mark.parametrize("shape", ["push", "push-unwrapped", "cloudevent-binary", "cloudevent-structured"])
def test_custom_metadata_is_kept_verbatim_in_every_shape(shape: str) -> None:
    headers, body = _every_shape(obj(metadata=OPTIONS_META))[shape]
    event = parse_ok(headers, body)
    assert event.shape == shape
    assert event.metadata == OPTIONS_META  # keys keep their case: the options parser matches them case-insensitively


@pytest.mark.parametrize("shape", ["push", "push-unwrapped", "cloudevent-binary", "cloudevent-structured"])
def test_an_object_without_custom_metadata_has_an_empty_map(shape: str) -> None:
    headers, body = _every_shape(obj())[shape]
    assert parse_ok(headers, body).metadata == {}


def test_odd_metadata_values_reach_the_options_parser_as_text_never_dropped() -> None:
    data = obj(metadata={"docworker-quality": 50, "docworker-pdfa": {"x": 1}, "gone": None})
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": b64(data), "messageId": "1"}))
    assert event.metadata == {"docworker-quality": "50", "docworker-pdfa": '{"x": 1}'}


def test_a_metadata_field_that_is_not_a_map_means_no_custom_metadata() -> None:
    data = obj(metadata=["docworker-pdfa", "2b"])
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": b64(data), "messageId": "1"})).metadata == {}


@pytest.mark.parametrize("shape", ["push-none", "push-bad-data", "push-unwrapped-empty"])
def test_a_delivery_without_the_object_resource_has_unknown_metadata(shape: str) -> None:
    """payload format NONE (or data that is not the resource): None, so the job reads the object's metadata."""
    bodies = {
        "push-none": (JSON_HEADERS, push({"attributes": attrs(payloadFormat="NONE"), "messageId": "1"})),
        "push-bad-data": (JSON_HEADERS, push({"attributes": attrs(), "data": b64(b"not json"), "messageId": "1"})),
        "push-unwrapped-empty": (unwrapped_headers(), b""),
    }
    headers, body = bodies[shape]
    assert parse_ok(headers, body).metadata is None
