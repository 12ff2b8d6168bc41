"""Builders of the push bodies the event-parsing tests feed worker.events.parse_push, and its three expectations."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from worker.errors import Reason, WorkerError
from worker.events import NotStorageEvent, ObjectEvent, parse_push

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
