"""What one push came to, whichever stage decided it: an Outcome plus a reason from that outcome's closed set.

Refusals (the route), ignores (the filter) and job outcomes are the same value, so one function maps it to a status,
a metric and a log line (worker/web.py `respond`). The string values are the `worker_jobs_total` labels and the log
fields `outcome`/`reason` (docs/operations.md): renaming one breaks dashboards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from worker.errors import Reason


class Outcome(StrEnum):
    CONVERTED = "converted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    FAILED = "failed"  # permanent: a failure record was written, the message is acked
    RETRY = "retry"  # transient: the message must be redelivered
    REFUSED = "refused"  # the request itself is not trusted (auth, parse), or the worker is draining


class Done(StrEnum):
    """Why a delivery is `converted`."""

    OK = "ok"  # the PDF was created
    OVERWRITE = "overwrite"  # a newer generation replaced an older PDF


class Duplicate(StrEnum):
    """Why a delivery is a `duplicate`: this generation's output is already stored."""

    SAME_GENERATION = "same_generation"  # found before converting (a redelivery)
    CONCURRENT = "concurrent"  # a concurrent delivery won the create-only write
    ALREADY_FAILED = "already_failed"  # a failure record of this generation exists


class Ignore(StrEnum):
    """Why an event is acked without work."""

    EVENT_TYPE = "event_type"
    SUFFIX = "suffix"
    OWN_OUTPUT = "own_output"
    STALE = "stale"
    BUCKET = "bucket_not_allowed"
    NOT_STORAGE_EVENT = "not_storage_event"


Why = Done | Duplicate | Ignore | Reason

# The closed set of reasons each outcome may carry; failed, retry and refused carry a worker.errors.Reason.
REASONS: dict[Outcome, type[Done] | type[Duplicate] | type[Ignore] | type[Reason]] = {
    Outcome.CONVERTED: Done,
    Outcome.DUPLICATE: Duplicate,
    Outcome.IGNORED: Ignore,
    Outcome.FAILED: Reason,
    Outcome.RETRY: Reason,
    Outcome.REFUSED: Reason,
}


@dataclass
class JobResult:
    """Everything the status, the metrics and the log line need about one push (refusals included)."""

    outcome: Outcome
    reason: Why
    message: str = ""
    output: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    input_bytes: int = 0
    output_bytes: int = 0
    kind: str | None = None
    profile: str | None = None  # PdfOptions.profile of a converted document (a bounded metric label)
    checks_failed: tuple[str, ...] = ()  # pdf_checks.Failure values of a PDF that failed its verification

    def __post_init__(self) -> None:
        # A reason outside its outcome's set is a bug of ours: fail here, not as a stray label on a dashboard.
        self.reason = REASONS[self.outcome](self.reason)
