"""One JSON object per line for Cloud Logging (severity, message, trace, job fields); plain text on a terminal."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, the span id a decimal uint64.
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?(?:;o=(\d+))?")
# W3C traceparent: version-trace_id-parent_id-flags.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_RESERVED = frozenset({"severity", "message", "time"})
_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "INFO": "INFO", "DEBUG": "DEBUG"}


def trace_fields(headers: Mapping[str, str], project: str | None) -> dict[str, Any]:
    """Cloud Logging groups a request's lines by `projects/P/traces/T`, taken from either trace header.

    W3C `traceparent` wins when it is present and valid (contract 5, structured logging); otherwise
    `X-Cloud-Trace-Context`. The span id is written as Cloud Logging wants it: 16 hex digits.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    trace: str | None = None
    span: str | None = None
    sampled: bool | None = None
    m = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if m and m.group(1) != "ff" and set(m.group(2)) != {"0"} and set(m.group(3)) != {"0"}:
        trace, span, sampled = m.group(2), m.group(3), bool(int(m.group(4), 16) & 1)
    else:
        m = _CLOUD_TRACE.match(headers.get("x-cloud-trace-context", "").strip())
        if m and set(m.group(1)) != {"0"}:
            trace = m.group(1).lower()
            if m.group(2) is not None and 0 < int(m.group(2)) < 2**64:
                span = f"{int(m.group(2)):016x}"
            if m.group(3) is not None:
                sampled = m.group(3) == "1"
    if trace is None:
        return {}
    out: dict[str, Any] = {TRACE_FIELD: f"projects/{project}/traces/{trace}" if project else trace}
    if span:
        out[SPAN_FIELD] = span
    if sampled is not None:
        out[SAMPLED_FIELD] = sampled
    return out


class JsonFormatter(logging.Formatter):
    """Structured lines: extra fields passed as `extra={"fields": {...}}` land at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            # A job field never overwrites what Cloud Logging reads (severity, message, time).
            entry.update({k: v for k, v in fields.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For people at a terminal: the message, then the fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        tail = ""
        if isinstance(fields, dict):
            tail = " " + " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", {}))
        text = f"{record.levelname.lower():7} {record.getMessage()}{tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(log_format: str) -> None:
    """Route every logger to stdout in the chosen format (json unless told otherwise)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # its queue warnings would flood the log
