"""Push and CloudEvent parsing: every shape and spelling, edge cases, and garbage that is only ever a 400."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Mapping
from dataclasses import FrozenInstanceError, asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from worker.errors import Reason, WorkerError
from worker.events import EVENT_TYPES, MAX_JSON_DEPTH, NotStorageEvent, ObjectEvent, parse_push, parse_rfc3339

REPO = Path(__file__).resolve().parents[2]
ENVELOPES = REPO / "tests" / "data" / "envelopes"
CAPTURED = REPO / "tests" / "data" / "pubsub-push-gcs-finalize.json"  # a real emulator push (from shared/fixtures)
JSON_HEADERS = {"Content-Type": "application/json"}
GEN = "1795867266026254"


def dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def b64(doc: object) -> str:
    raw = doc if isinstance(doc, bytes) else dumps(doc)
    return base64.b64encode(raw).decode("ascii")


def attrs(**overrides: Any) -> dict[str, Any]:
    base = {
        "bucketId": "in-bucket",
        "objectId": "incoming/report.docx",
        "objectGeneration": GEN,
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def obj(**overrides: Any) -> dict[str, Any]:
    base = {
        "kind": "storage#object",
        "name": "incoming/report.docx",
        "bucket": "in-bucket",
        "generation": GEN,
        "size": "33",
        "contentType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def push(message: Mapping[str, Any], **top: Any) -> bytes:
    return dumps({"message": dict(message), "subscription": "projects/p/subscriptions/s", **top})


def parse_ok(headers: Mapping[str, str], body: bytes) -> ObjectEvent:
    event = parse_push(headers, body)
    assert isinstance(event, ObjectEvent), event
    return event


def parse_not(headers: Mapping[str, str], body: bytes) -> NotStorageEvent:
    event = parse_push(headers, body)
    assert isinstance(event, NotStorageEvent), event
    return event


def parse_bad(headers: Mapping[str, str], body: bytes) -> WorkerError:
    with pytest.raises(WorkerError) as info:
        parse_push(headers, body)
    assert info.value.reason is Reason.BAD_REQUEST
    return info.value


# --- the captured real push and the sample envelopes --------------------------------------------------------


def test_captured_emulator_push() -> None:
    captured = json.loads(CAPTURED.read_text())
    event = parse_ok(captured["headers"], dumps(captured["body"]))
    assert event == ObjectEvent(
        bucket="in-bucket",
        name="incoming/report.docx",
        generation=1795867266026254,
        event_type="OBJECT_FINALIZE",
        size=33,
        content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        message_id="2",
        publish_time=datetime(2026, 11, 28, 12, 1, 6, 45000, tzinfo=UTC),
        delivery_attempt=None,
        subscription="projects/test-project/subscriptions/convert-push",
        shape="push",
    )


@pytest.mark.parametrize("path", sorted(ENVELOPES.glob("*.json")), ids=lambda p: p.stem)
def test_sample_envelopes(path: Path) -> None:
    sample = json.loads(path.read_text(encoding="utf-8"))
    body = sample["body"]
    event = parse_ok(sample["headers"], body.encode() if isinstance(body, str) else dumps(body))
    got = asdict(event)
    got["publish_time"] = event.publish_time.isoformat() if event.publish_time else None
    assert got == sample["expect"]


def test_event_is_frozen() -> None:
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "messageId": "1"}))
    with pytest.raises(FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]


# --- wrapped push: spellings and optional parts -------------------------------------------------------------


def test_camel_case_only() -> None:
    message = {"attributes": attrs(), "messageId": "7", "publishTime": "2021-02-26T19:13:55.749Z"}
    event = parse_ok(JSON_HEADERS, push(message))
    assert event.message_id == "7"
    assert event.publish_time == datetime(2021, 2, 26, 19, 13, 55, 749000, tzinfo=UTC)


def test_snake_case_only() -> None:
    event = parse_ok(
        JSON_HEADERS, push({"attributes": attrs(), "message_id": "8", "publish_time": "2021-02-26T19:13:55Z"})
    )
    assert event.message_id == "8"
    assert event.publish_time == datetime(2021, 2, 26, 19, 13, 55, tzinfo=UTC)


def test_headers_are_case_insensitive() -> None:
    body = push({"attributes": attrs(), "messageId": "1"})
    assert parse_ok({"CONTENT-TYPE": "APPLICATION/JSON"}, body).shape == "push"
    assert parse_ok({}, body).shape == "push"  # no Content-Type at all: the body decides


@pytest.mark.parametrize("data", [None, "", "MISSING"])
def test_data_missing_or_empty_with_attributes(data: str | None) -> None:
    message: dict[str, Any] = {"attributes": attrs(payloadFormat="NONE"), "messageId": "1"}
    if data != "MISSING":
        message["data"] = data
    event = parse_ok(JSON_HEADERS, push(message))
    assert (event.bucket, event.name, event.generation) == ("in-bucket", "incoming/report.docx", int(GEN))
    assert event.size is None and event.content_type is None


def test_attributes_absent_means_empty() -> None:
    # The object JSON alone says which object, but not what happened to it: not an event we understand.
    event = parse_not(JSON_HEADERS, push({"data": b64(obj()), "messageId": "1"}))
    assert event.message_id == "1"
    assert "event type" in event.why


def test_attributes_null_means_empty() -> None:
    parse_not(JSON_HEADERS, push({"attributes": None, "data": b64(obj()), "messageId": "1"}))


def test_minimal_message_is_not_a_storage_event() -> None:
    assert parse_not(JSON_HEADERS, dumps({"message": {}})).message_id is None


def test_data_fills_in_missing_attributes() -> None:
    message = {"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": b64(obj()), "messageId": "1"}
    event = parse_ok(JSON_HEADERS, push(message))
    assert (event.bucket, event.name, event.generation, event.size) == (
        "in-bucket",
        "incoming/report.docx",
        int(GEN),
        33,
    )


def test_attributes_win_over_data_but_data_gives_size_and_type() -> None:
    data = obj(bucket="data-bucket", name="data-name", generation="1", size="4096", contentType="text/plain")
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": b64(data), "messageId": "1"}))
    assert (event.bucket, event.name, event.generation) == ("in-bucket", "incoming/report.docx", int(GEN))
    assert (event.size, event.content_type) == (4096, "text/plain")


@pytest.mark.parametrize("generation", [GEN, int(GEN)])
def test_generation_as_string_or_number(generation: str | int) -> None:
    in_attrs = parse_ok(JSON_HEADERS, push({"attributes": attrs(objectGeneration=generation)}))
    in_data = parse_ok(
        JSON_HEADERS,
        push({"attributes": attrs(objectGeneration=None), "data": b64(obj(generation=generation))}),
    )
    assert in_attrs.generation == in_data.generation == int(GEN)


def test_delivery_attempt_is_top_level() -> None:
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs()}, deliveryAttempt=5)).delivery_attempt == 5
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs()})).delivery_attempt is None
    in_message = push({"attributes": attrs(), "deliveryAttempt": 9})  # only the top-level field counts
    assert parse_ok(JSON_HEADERS, in_message).delivery_attempt is None


@pytest.mark.parametrize("attempt", ["x", -1, 1.5, True, None, [1]])
def test_odd_delivery_attempt_is_ignored(attempt: object) -> None:
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs()}, deliveryAttempt=attempt))
    assert event.delivery_attempt is None


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_gcs_event_type(event_type: str) -> None:
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs(eventType=event_type)})).event_type == event_type


def test_url_safe_and_unpadded_base64_data() -> None:
    raw = dumps(obj(name="incoming/?>?>.docx", size="1000"))
    for data in (
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        message = {"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": data}
        assert parse_ok(JSON_HEADERS, push(message)).name == "incoming/?>?>.docx"


def test_custom_attributes_and_overwrote_generation_are_ignored() -> None:
    extra = attrs(overwroteGeneration="1", pipeline="docx2pdf", notificationConfig="projects/_/buckets/b/x/1")
    assert parse_ok(JSON_HEADERS, push({"attributes": extra})).generation == int(GEN)


# --- publishTime --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-02-26T19:13:55Z", datetime(2021, 2, 26, 19, 13, 55, tzinfo=UTC)),
        ("2021-02-26T19:13:55.749Z", datetime(2021, 2, 26, 19, 13, 55, 749000, tzinfo=UTC)),
        ("2021-02-26T19:13:55.749123Z", datetime(2021, 2, 26, 19, 13, 55, 749123, tzinfo=UTC)),
        ("2021-02-26T19:13:55.749123456Z", datetime(2021, 2, 26, 19, 13, 55, 749123, tzinfo=UTC)),
        ("2021-02-26T19:13:55.7Z", datetime(2021, 2, 26, 19, 13, 55, 700000, tzinfo=UTC)),
        ("2021-02-26t19:13:55z", datetime(2021, 2, 26, 19, 13, 55, tzinfo=UTC)),
        ("2021-02-26T21:13:55.5+02:00", datetime(2021, 2, 26, 19, 13, 55, 500000, tzinfo=UTC)),
        ("2021-02-26T14:13:55-05:00", datetime(2021, 2, 26, 19, 13, 55, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2021-02-26",
        "2021-02-26T19:13:55",  # no offset: ambiguous
        "2021-02-26T19:13:55.1234567890Z",  # 10 digits
        "2021-02-30T19:13:55Z",
        "2021-02-26T25:13:55Z",
        "20210226T191355Z",
        "2021-W08-5T19:13:55Z",
        "١٠٢١-02-26T19:13:55Z",
        "yesterday",
    ],
)
def test_rfc3339_rejects(text: str) -> None:
    assert parse_rfc3339(text) is None


def test_unparseable_publish_time_is_none_not_an_error() -> None:
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs(), "publishTime": "soon"})).publish_time is None
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs(), "publishTime": 12})).publish_time is None


# --- object names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "incoming/with space.docx",
        "incoming/\u00fcn\u00efc\u00f8d\u00e9 \u2013 \u6587\u4ef6.docx",
        "../../etc/passwd",
        "incoming/../../../x.docx",
        "/leading-slash.docx",
        "a" * 1024,
        "é" * 512,  # 1024 bytes of UTF-8
        "incoming/emoji 😀.docx",
        "incoming/%2e%2e/percent.docx",
        "incoming/new\nline.docx",
    ],
)
def test_object_names_are_kept_verbatim(name: str) -> None:
    assert parse_ok(JSON_HEADERS, push({"attributes": attrs(objectId=name)})).name == name
    data_only = push({"attributes": attrs(objectId=None), "data": b64(obj(name=name))})
    assert parse_ok(JSON_HEADERS, data_only).name == name


def test_lone_surrogate_name_is_not_a_storage_event() -> None:
    body = b'{"message": {"attributes": {"bucketId": "b", "objectId": "x\\ud800y", "objectGeneration": "1", '
    body += b'"eventType": "OBJECT_FINALIZE"}}}'
    parse_not(JSON_HEADERS, body)


# --- valid envelope, not our event -> NotStorageEvent -------------------------------------------------------


@pytest.mark.parametrize("missing", ["bucketId", "objectId", "objectGeneration", "eventType"])
def test_missing_identifying_attribute(missing: str) -> None:
    event = parse_not(JSON_HEADERS, push({"attributes": attrs(**{missing: None}), "messageId": "m1"}))
    assert event.message_id == "m1"


@pytest.mark.parametrize("empty", ["bucketId", "objectId", "objectGeneration"])
def test_empty_identifying_attribute(empty: str) -> None:
    parse_not(JSON_HEADERS, push({"attributes": attrs(**{empty: ""})}))


@pytest.mark.parametrize(
    "generation",
    [
        "abc",
        "-1",
        "1.5",
        "1e15",
        "0x10",
        " 12",
        "12 ",
        "+12",
        "1_000",
        "\uff11\uff12",
        "0",
        0,
        -5,
        1.5,
        True,
        2**63,
        "9" * 25,
        [1],
    ],
)
def test_bad_generation_is_not_a_storage_event(generation: object) -> None:
    parse_not(JSON_HEADERS, push({"attributes": attrs(objectGeneration=generation)}))


def test_largest_int64_generation_is_fine() -> None:
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(objectGeneration=str(2**63 - 1))}))
    assert event.generation == 2**63 - 1


@pytest.mark.parametrize(
    "event_type", ["OBJECT_CREATE", "object_finalize", "", "google.storage.object.finalize", 3]
)
def test_unknown_event_type(event_type: object) -> None:
    parse_not(JSON_HEADERS, push({"attributes": attrs(eventType=event_type)}))


@pytest.mark.parametrize("value", [7, ["b"], {"b": 1}, True])
def test_non_string_bucket_or_name(value: object) -> None:
    parse_not(JSON_HEADERS, push({"attributes": attrs(bucketId=value)}))
    parse_not(JSON_HEADERS, push({"attributes": attrs(objectId=value)}))


@pytest.mark.parametrize("payload", [b"hello", b"[1, 2, 3]", b'"a string"', b"\xff\xfe\x00", b"[" * 100])
def test_non_object_data_without_attributes_is_not_a_storage_event(payload: bytes) -> None:
    parse_not(JSON_HEADERS, push({"data": b64(payload), "messageId": "1"}))


def test_non_object_data_with_attributes_is_ignored() -> None:
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": b64(b"not json")}))
    assert event.size is None


def test_odd_size_and_content_type_become_none() -> None:
    data = obj(size="-3", contentType=42)
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": b64(data)}))
    assert (event.size, event.content_type) == (None, None)


# --- not an envelope at all -> BAD_REQUEST ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"{",
        b"null",
        b"42",
        b'"message"',
        b"[]",
        b'[{"message": {}}]',
        b"{}",
        b'{"msg": {}}',
        b'{"data": "e30="}',
        b"\xff\xfe\xfd",
        b'{"message": {}}\x00',
        b"\xef\xbb\xbf" + b'{"message": {}}',  # UTF-8 BOM: not valid JSON text per RFC 8259
    ],
)
def test_not_an_envelope_is_bad_request(body: bytes) -> None:
    parse_bad(JSON_HEADERS, body)


@pytest.mark.parametrize("message", [None, "x", 1, [], ["message"], True])
def test_message_not_an_object_is_bad_request(message: object) -> None:
    parse_bad(JSON_HEADERS, dumps({"message": message}))


@pytest.mark.parametrize("attributes", ["x", 1, [], [["bucketId", "b"]], True])
def test_attributes_not_an_object_is_bad_request(attributes: object) -> None:
    parse_bad(JSON_HEADERS, dumps({"message": {"attributes": attributes, "data": b64(obj())}}))


@pytest.mark.parametrize("data", ["%%%not base64%%%", "a", "abcde", "e30=e30=", "é", 123, ["e30="], {"a": 1}])
def test_bad_data_without_sufficient_attributes_is_bad_request(data: object) -> None:
    parse_bad(JSON_HEADERS, push({"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": data}))


@pytest.mark.parametrize("data", ["%%%not base64%%%", "abc", 123])
def test_bad_data_with_sufficient_attributes_is_ignored(data: object) -> None:
    event = parse_ok(JSON_HEADERS, push({"attributes": attrs(), "data": data}))
    assert event.size is None


def test_recursion_bomb_is_bad_request() -> None:
    err = parse_bad(JSON_HEADERS, b"[" * 200_000 + b"]" * 200_000)
    assert isinstance(err.__cause__, RecursionError)
    parse_bad(JSON_HEADERS, b'{"message": ' + b"[" * 100_000)


def test_nesting_limit() -> None:
    def nested(depth: int) -> bytes:
        # {"message": {"attributes": {...}, "x": [[...]]}}: the lists bring the total depth to `depth`.
        inner = "[" * (depth - 2) + "]" * (depth - 2)
        return b'{"message": {"attributes": ' + dumps(attrs()) + b', "x": ' + inner.encode() + b"}}"

    assert isinstance(parse_push(JSON_HEADERS, nested(MAX_JSON_DEPTH)), ObjectEvent)
    parse_bad(JSON_HEADERS, nested(MAX_JSON_DEPTH + 1))


def test_huge_integer_is_bad_request_not_a_crash() -> None:
    parse_bad(JSON_HEADERS, b'{"message": {}, "deliveryAttempt": ' + b"9" * 5000 + b"}")


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
