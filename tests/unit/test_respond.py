"""respond(): every outcome with every reason of its closed set -> one status, one metric sample, one log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from worker.errors import Reason
from worker.events import ObjectEvent
from worker.metrics import Metrics
from worker.outcome import REASONS, Done, Duplicate, Ignore, JobResult, Outcome
from worker.web import respond

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

# Written out here, not read from worker/web.py, so a change to the table has to change this test too.
REFUSED_STATUS = {Reason.BAD_REQUEST: 400, Reason.UNAUTHENTICATED: 401, Reason.FORBIDDEN: 403,
                  Reason.QUEUE_FULL: 429}
RETRYABLE = {Reason.OFFICE_CRASHED, Reason.OFFICE_KILLED, Reason.OFFICE_UNAVAILABLE, Reason.QUEUE_FULL,
             Reason.STORAGE_UNAVAILABLE, Reason.AUTH_UNAVAILABLE, Reason.SECRET_UNAVAILABLE, Reason.SHUTTING_DOWN,
             Reason.CONVERSION_TIMEOUT, Reason.MEMORY_EXHAUSTED}


def expected(outcome: Outcome, reason: Reason | Done | Duplicate | Ignore) -> tuple[int, int]:
    """(status, log level) for one pair, from the table in docs/architecture.md."""
    if outcome == Outcome.REFUSED:
        assert isinstance(reason, Reason)
        status = REFUSED_STATUS.get(reason, 503 if reason in RETRYABLE else 400)
        return status, logging.WARNING
    if outcome == Outcome.RETRY:
        return (429 if reason == Reason.QUEUE_FULL else 503), logging.WARNING
    if outcome == Outcome.FAILED:
        return 204, logging.ERROR
    return 204, logging.WARNING if reason == Ignore.NOT_STORAGE_EVENT else logging.INFO


PAIRS = [(o, r) for o, kind in REASONS.items() for r in kind]


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode()) for s in family.samples}


def test_every_outcome_has_its_own_closed_reason_set() -> None:
    assert set(REASONS) == set(Outcome)
    assert {r.value for r in Done} == {"ok", "overwrite"}  # the dashboards' label values
    assert {r.value for r in Duplicate} == {"same_generation", "concurrent", "already_failed"}


@pytest.mark.parametrize(("outcome", "reason"), [(Outcome.CONVERTED, "concurrent"), (Outcome.DUPLICATE, "ok"),
                                                 (Outcome.IGNORED, "corrupt"), (Outcome.FAILED, "suffix"),
                                                 (Outcome.REFUSED, "anything")])
def test_a_reason_outside_its_outcomes_set_is_refused_at_construction(outcome: Outcome, reason: str) -> None:
    with pytest.raises(ValueError):
        JobResult(outcome, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(("outcome", "reason"), PAIRS, ids=[f"{o.value}-{r.value}" for o, r in PAIRS])
def test_respond_writes_status_metric_and_one_log_line(
    outcome: Outcome, reason: Reason | Done | Duplicate | Ignore, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    status, level = expected(outcome, reason)
    with caplog.at_level(logging.DEBUG, logger="worker.push"):
        resp = respond(metrics, JobResult(outcome, reason, "why"), {"trace": "t"})
    assert resp.status_code == status
    s = samples(metrics)
    assert s[("worker_jobs_total", frozenset({("outcome", outcome.value), ("reason", reason.value)}))] == 1
    assert s[("worker_http_requests_total", frozenset({("code", str(status))}))] == 1
    assert ("worker_job_duration_seconds_count", frozenset()) in s
    assert s[("worker_job_duration_seconds_count", frozenset())] == 0  # no job ran
    [record] = caplog.records
    assert record.levelno == level
    assert record.getMessage() == f"{outcome.value}: why"
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["outcome"], fields["reason"], fields["status"], fields["trace"]) == \
        (outcome.value, reason.value, status, "t")


def test_respond_after_a_job_logs_the_object_and_times_it(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(CollectorRegistry())
    event = ObjectEvent(bucket="in", name="a/photo.JPG", generation=7, event_type="OBJECT_FINALIZE", size=3,
                        content_type=None, message_id="m-1", publish_time=NOW - timedelta(seconds=2),
                        delivery_attempt=2, subscription=None, shape="push")
    result = JobResult(Outcome.IGNORED, Ignore.SUFFIX, "suffix .jpg is not in INPUT_SUFFIXES")
    with caplog.at_level(logging.INFO, logger="worker.push"):
        assert respond(metrics, result, {}, event=event, total_s=0.25, now=NOW).status_code == 204
    [record] = caplog.records
    assert record.getMessage() == "ignored: gs://in/a/photo.JPG (suffix .jpg is not in INPUT_SUFFIXES)"
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["object"], fields["generation"], fields["suffix"], fields["total_s"]) == \
        ("a/photo.JPG", "7", ".jpg", 0.25)
    s = samples(metrics)
    assert s[("worker_job_duration_seconds_count", frozenset())] == 1
    assert s[("worker_delivery_attempt_sum", frozenset())] == 2
    assert s[("worker_end_to_end_lag_seconds_count", frozenset())] == 0  # lag only for a stored PDF


def test_a_status_decided_by_the_http_layer_is_kept() -> None:
    metrics = Metrics(CollectorRegistry())
    assert respond(metrics, JobResult(Outcome.REFUSED, Reason.BAD_REQUEST, "too large"), {}, status=413) \
        .status_code == 413
    s = samples(metrics)
    assert s[("worker_http_requests_total", frozenset({("code", "413")}))] == 1
    assert s[("worker_jobs_total", frozenset({("outcome", "refused"), ("reason", "bad_request")}))] == 1
