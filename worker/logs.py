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
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "INFO": "INFO", "DEBUG": "DEBUG"}


def trace_fields(headers: Mapping[str, str], project: str | None) -> dict[str, str]:
    """Cloud Logging groups a request's lines by `projects/P/traces/T`, taken from either trace header."""
    headers = {k.lower(): v for k, v in headers.items()}
    trace = span = None
    m = _CLOUD_TRACE.match(headers.get("x-cloud-trace-context", ""))
    if m:
        trace, span = m.group(1).lower(), m.group(2)
    else:
        m = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
        if m:
            trace, span = m.group(1), m.group(2)
    if trace is None:
        return {}
    out = {TRACE_FIELD: f"projects/{project}/traces/{trace}" if project else trace}
    if span:
        out[SPAN_FIELD] = span
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
            entry.update(fields)
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
        return f"{record.levelname.lower():7} {record.getMessage()}{tail}"


def setup(log_format: str) -> None:
    """Route every logger to stdout in the chosen format (json unless told otherwise)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # its queue warnings would flood the log
