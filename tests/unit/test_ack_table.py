"""The acknowledgement table of docs/architecture.md, locked down: every Outcome and every Reason -> one HTTP status.

Pub/Sub push treats only 102, 200, 201, 202 and 204 as an ack; anything else is redelivered. A new Outcome or
Reason must be added to the tables below, or these tests fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.harness.web_app import RecordingJob
from worker.config import Config, OfficeSettings
from worker.errors import RETRYABLE, Reason, WorkerError
from worker.job import Ignore, JobResult, Outcome
from worker.web import ACK, status_for, status_for_error

PUBSUB_ACK_CODES = frozenset({102, 200, 201, 202, 204})
ENVELOPES = Path(__file__).resolve().parents[1] / "data" / "envelopes"

# Outcomes the worker is finished with: acked, whatever the reason label says.
ACKING_OUTCOMES = {Outcome.CONVERTED, Outcome.DUPLICATE, Outcome.IGNORED, Outcome.FAILED}
REASONS_BY_OUTCOME = {
    Outcome.CONVERTED: ["ok", "overwrite"],
    Outcome.DUPLICATE: ["same_generation", "concurrent", "already_failed"],
    Outcome.IGNORED: [i.value for i in Ignore],
    Outcome.FAILED: [r.value for r in Reason],  # any reason can end as a failure record (e.g. after N attempts)
}

# Reason -> the status of a RETRY result (job) carrying it; None = never a RETRY reason.
RETRY_STATUS: dict[Reason, int | None] = {
    Reason.QUEUE_FULL: 429,
    Reason.OFFICE_CRASHED: 503,
    Reason.OFFICE_KILLED: 503,
    Reason.OFFICE_UNAVAILABLE: 503,
    Reason.STORAGE_UNAVAILABLE: 503,
    Reason.AUTH_UNAVAILABLE: 503,
    Reason.SECRET_UNAVAILABLE: 503,  # a mounted secret unreadable for now (I/O): Pub/Sub comes back
    Reason.SHUTTING_DOWN: 503,
    Reason.CONVERSION_TIMEOUT: 503,
    Reason.MEMORY_EXHAUSTED: 503,
}

# Reason -> the status when the request itself fails with it (auth, parsing).
ERROR_STATUS: dict[Reason, int] = {
    Reason.BAD_REQUEST: 400,
    Reason.UNAUTHENTICATED: 401,
    Reason.FORBIDDEN: 403,
    Reason.QUEUE_FULL: 429,
    Reason.OFFICE_CRASHED: 503,
    Reason.OFFICE_KILLED: 503,
    Reason.OFFICE_UNAVAILABLE: 503,
    Reason.STORAGE_UNAVAILABLE: 503,
    Reason.AUTH_UNAVAILABLE: 503,
    Reason.SECRET_UNAVAILABLE: 503,
    Reason.SHUTTING_DOWN: 503,
    Reason.CONVERSION_TIMEOUT: 503,
    Reason.MEMORY_EXHAUSTED: 503,
    # Permanent reasons never come out of auth or parsing; if one did, the request is not trusted: 400, no ack.
    Reason.EMPTY: 400,
    Reason.UNSUPPORTED_TYPE: 400,
    Reason.ENCRYPTED: 400,
    Reason.PASSWORD_REQUIRED: 400,
    Reason.PASSWORD_WRONG: 400,
    Reason.BAD_OPTION: 400,
    Reason.VERIFICATION_FAILED: 400,
    Reason.CORRUPT: 400,
    Reason.ZIP_BOMB: 400,
    Reason.HOSTILE: 400,
    Reason.TOO_LARGE: 400,
    Reason.CONVERSION_FAILED: 400,
    Reason.NAME_COLLISION: 400,
    Reason.BUCKET_NOT_ALLOWED: 400,
    Reason.BAD_CONFIG: 400,
}


def test_the_tables_cover_every_outcome_and_reason() -> None:
    assert ACKING_OUTCOMES | {Outcome.RETRY, Outcome.REFUSED} == set(Outcome)
    assert set(ERROR_STATUS) == set(Reason)
    assert set(RETRY_STATUS) == set(RETRYABLE)


def test_ack_is_a_code_pubsub_treats_as_ack() -> None:
    assert ACK == 204
    assert ACK in PUBSUB_ACK_CODES


@pytest.mark.parametrize(("outcome", "reason"),
                         [(o, r) for o, reasons in REASONS_BY_OUTCOME.items() for r in reasons])
def test_finished_outcomes_are_acked(outcome: Outcome, reason: str) -> None:
    status = status_for(JobResult(outcome, reason))
    assert status == 204
    assert status in PUBSUB_ACK_CODES


@pytest.mark.parametrize("reason", sorted(RETRY_STATUS))
def test_retry_results_are_not_acked(reason: Reason) -> None:
    status = status_for(JobResult(Outcome.RETRY, reason.value))
    assert status == RETRY_STATUS[reason]
    assert status not in PUBSUB_ACK_CODES


@pytest.mark.parametrize("reason", sorted(Reason))
def test_request_errors_map_and_are_never_acked(reason: Reason) -> None:
    status = status_for_error(WorkerError(reason, "x"))
    assert status == ERROR_STATUS[reason]
    assert status not in PUBSUB_ACK_CODES


@pytest.mark.parametrize("reason", sorted(Reason))
def test_refused_results_answer_like_the_error_that_refused_them(reason: Reason) -> None:
    assert status_for(JobResult(Outcome.REFUSED, reason)) == ERROR_STATUS[reason]


def test_retryable_reasons_are_exactly_429_or_503() -> None:
    for reason in Reason:
        status = status_for_error(WorkerError(reason, "x"))
        if reason in RETRYABLE:
            assert status == (429 if reason == Reason.QUEUE_FULL else 503)
        else:
            assert status in (400, 401, 403)


# -- the same table through the real route (no office, no storage: a stub runner returns each result) ----------


@pytest.fixture
def app_config(tmp_path: Path) -> Config:
    """A small body limit, so a 413 costs little."""
    return Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path), auth_mode="off",
                  max_body_bytes=64 * 1024)


def _envelope(name: str) -> tuple[dict[str, str], bytes]:
    doc = json.loads((ENVELOPES / name).read_text())
    body = doc["body"]
    raw = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
    return dict(doc.get("headers") or {"Content-Type": "application/json"}), raw


@pytest.mark.parametrize(("result", "status"), [
    (JobResult(Outcome.CONVERTED, "ok"), 204),
    (JobResult(Outcome.DUPLICATE, "same_generation"), 204),
    (JobResult(Outcome.IGNORED, "stale"), 204),
    (JobResult(Outcome.FAILED, "encrypted"), 204),
    (JobResult(Outcome.RETRY, "queue_full"), 429),
    (JobResult(Outcome.RETRY, "office_crashed"), 503),
    (JobResult(Outcome.RETRY, "storage_unavailable"), 503),
])
def test_route_answers_by_the_table(client: FlaskClient, app_job: RecordingJob, result: JobResult,
                                    status: int) -> None:
    app_job.result = result
    headers, body = _envelope("push-fake-gcs-numeric-generation.json")
    assert client.post("/", data=body, headers=headers).status_code == status
    assert app_job.calls == 1


def test_route_refuses_what_is_not_a_push_and_acks_what_is_not_a_storage_event(
    client: FlaskClient, app_job: RecordingJob
) -> None:
    assert client.post("/", data=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/", data=b"[]", headers={"Content-Type": "application/json"}).status_code == 400
    too_big = b'{"message": {"data": "' + b"A" * 70_000 + b'"}}'
    assert client.post("/", data=too_big, headers={"Content-Type": "application/json"}).status_code == 413
    # A valid envelope that is not a storage event: redelivery would never help, so it is acked.
    not_storage = {"message": {"data": "aGVsbG8=", "messageId": "9", "attributes": {"origin": "x"}},
                   "subscription": "projects/p/subscriptions/s"}
    assert client.post("/", json=not_storage).status_code == 204
    assert app_job.calls == 0
