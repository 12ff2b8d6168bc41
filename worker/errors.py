"""One error type with a reason from a closed set, so every failure maps to one status and one metric label."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a job or request failed; the value is the metric label and the failure record's `reason`."""

    # The input itself: permanent, redelivery would never help.
    EMPTY = "empty"
    UNSUPPORTED_TYPE = "unsupported_type"
    ENCRYPTED = "encrypted"  # encrypted in a way no password we could be given opens (iWork, WordPerfect, ...)
    PASSWORD_REQUIRED = "password_required"  # encrypted, openable with its password, and none was named
    PASSWORD_WRONG = "password_wrong"  # the named password does not open it
    BAD_OPTION = "bad_option"  # a per-document option (docworker-* metadata, form field) is unknown or invalid
    VERIFICATION_FAILED = "verification_failed"  # the exported PDF does not carry what its options asked for
    CORRUPT = "corrupt"
    ZIP_BOMB = "zip_bomb"
    HOSTILE = "hostile"
    TOO_LARGE = "too_large"
    CONVERSION_FAILED = "conversion_failed"
    CONVERSION_TIMEOUT = "conversion_timeout"
    NAME_COLLISION = "name_collision"
    BUCKET_NOT_ALLOWED = "bucket_not_allowed"
    # Our side or a dependency: transient, Pub/Sub should redeliver.
    OFFICE_CRASHED = "office_crashed"
    OFFICE_KILLED = "office_killed"  # SIGKILLed from outside (OOM killer, operator): not the document's doing
    MEMORY_EXHAUSTED = "memory_exhausted"
    OFFICE_UNAVAILABLE = "office_unavailable"
    QUEUE_FULL = "queue_full"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    AUTH_UNAVAILABLE = "auth_unavailable"
    SECRET_UNAVAILABLE = "secret_unavailable"  # a mounted secret exists but reading it failed (I/O, permission)
    SHUTTING_DOWN = "shutting_down"
    # The request: never trusted, never acked.
    BAD_REQUEST = "bad_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    # Configuration (start-up only).
    BAD_CONFIG = "bad_config"


RETRYABLE = frozenset(
    {
        Reason.OFFICE_CRASHED,
        Reason.OFFICE_KILLED,
        Reason.OFFICE_UNAVAILABLE,
        Reason.QUEUE_FULL,
        Reason.STORAGE_UNAVAILABLE,
        Reason.AUTH_UNAVAILABLE,
        Reason.SECRET_UNAVAILABLE,
        Reason.SHUTTING_DOWN,
        # A timeout may be a busy machine rather than a poison document; the job decides after N attempts.
        Reason.CONVERSION_TIMEOUT,
        # An office bloated by earlier documents may cross the ceiling on an innocent one; a fresh office decides.
        Reason.MEMORY_EXHAUSTED,
    }
)


class WorkerError(Exception):
    """A failure with a reason from `Reason` and a human message; raise it `from` the low-level cause."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE
