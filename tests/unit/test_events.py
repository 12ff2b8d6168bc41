"""Pub/Sub push parsing: the captured push, every spelling of the wrapped push, publishTime, object names, valid
envelopes that are not our event, and bodies that are not envelopes (400).

Unwrapped pushes, CloudEvents and garbage are in test_event_shapes.py; the body builders in push_bodies.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import FrozenInstanceError, asdict
from datetime import UTC, datetime
from pathlib import Path
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
from worker.events import EVENT_TYPES, MAX_JSON_DEPTH, ObjectEvent, parse_push, parse_rfc3339

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
        metadata={"requested-by": "alice"},
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
