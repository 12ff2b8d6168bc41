"""Cloud Logging JSON lines: severity, message, the trace of the request, job fields; plain text on a terminal."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from worker import logs
from worker.logs import SAMPLED_FIELD, SPAN_FIELD, TRACE_FIELD, JsonFormatter, TextFormatter, trace_fields

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "105445aa7843bc8bf206b12000100000"


# -- trace headers ---------------------------------------------------------------------------------


def test_cloud_trace_context_becomes_the_trace_resource_and_a_hex_span():
    fields = trace_fields({"X-Cloud-Trace-Context": f"{OTHER}/1;o=1"}, "my-project")
    assert fields == {TRACE_FIELD: f"projects/my-project/traces/{OTHER}", SPAN_FIELD: "0000000000000001",
                      SAMPLED_FIELD: True}


def test_cloud_trace_context_large_decimal_span_and_not_sampled():
    span = 2**64 - 1
    fields = trace_fields({"x-cloud-trace-context": f"{OTHER.upper()}/{span};o=0"}, "p")
    assert fields[TRACE_FIELD] == f"projects/p/traces/{OTHER}"  # lower case, as Cloud Trace writes it
    assert fields[SPAN_FIELD] == "ffffffffffffffff"
    assert fields[SAMPLED_FIELD] is False


def test_cloud_trace_context_without_span_or_options():
    assert trace_fields({"X-Cloud-Trace-Context": OTHER}, "p") == {TRACE_FIELD: f"projects/p/traces/{OTHER}"}


def test_traceparent_is_used():
    fields = trace_fields({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, "p")
    assert fields == {TRACE_FIELD: f"projects/p/traces/{TRACE}", SPAN_FIELD: "00f067aa0ba902b7",
                      SAMPLED_FIELD: True}


def test_traceparent_wins_over_cloud_trace_context_when_both_are_present():
    headers = {"X-Cloud-Trace-Context": f"{OTHER}/7;o=1", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"}
    fields = trace_fields(headers, "p")
    assert fields[TRACE_FIELD] == f"projects/p/traces/{TRACE}"
    assert fields[SAMPLED_FIELD] is False


@pytest.mark.parametrize("bad", [
    "garbage",
    f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id is invalid
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id is invalid
    f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is invalid
    f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
])
def test_an_invalid_traceparent_falls_back_to_cloud_trace_context(bad: str):
    fields = trace_fields({"traceparent": bad, "X-Cloud-Trace-Context": f"{OTHER}/1"}, "p")
    assert fields[TRACE_FIELD] == f"projects/p/traces/{OTHER}"


@pytest.mark.parametrize("headers", [{}, {"X-Cloud-Trace-Context": "nothex/1"}, {"traceparent": "nope"},
                                     {"X-Cloud-Trace-Context": "0" * 32}])
def test_no_usable_header_gives_no_trace_fields(headers: dict[str, str]):
    assert trace_fields(headers, "p") == {}


def test_without_a_project_the_bare_trace_id_is_kept():
    assert trace_fields({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, None)[TRACE_FIELD] == TRACE


# -- formatters ------------------------------------------------------------------------------------


def record(level: int, msg: str, fields: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("worker.push", level, __file__, 1, msg, (), exc_info)
    if fields is not None:
        rec.fields = fields
    return rec


def test_a_job_line_is_one_json_object_with_severity_message_trace_and_job_fields():
    fields = {**trace_fields({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, "p"),
              "bucket": "in", "object": "a/b c.docx", "generation": "1795867266026254", "message_id": "42",
              "delivery_attempt": 2, "outcome": "converted", "reason": "ok",
              "durations": {"download": 0.01, "queue_wait": 0.0, "convert": 0.2, "upload": 0.02}, "status": 204}
    line = JsonFormatter().format(record(logging.INFO, "converted: gs://in/a/b c.docx", fields))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == "INFO"
    assert entry["message"] == "converted: gs://in/a/b c.docx"
    assert entry[TRACE_FIELD] == f"projects/p/traces/{TRACE}"
    assert entry["time"].endswith("+00:00")
    for key, expected in fields.items():
        assert entry[key] == expected


@pytest.mark.parametrize(("level", "severity"), [
    (logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARNING"), (logging.ERROR, "ERROR"),
    (logging.CRITICAL, "CRITICAL"), (5, "DEFAULT"),
])
def test_severity_uses_cloud_logging_names(level: int, severity: str):
    assert json.loads(JsonFormatter().format(record(level, "x")))["severity"] == severity


def test_fields_never_overwrite_severity_or_message():
    entry = json.loads(JsonFormatter().format(
        record(logging.ERROR, "real", {"severity": "DEBUG", "message": "fake", "time": "then", "x": 1})))
    assert (entry["severity"], entry["message"], entry["x"]) == ("ERROR", "real", 1)
    assert entry["time"] != "then"


def test_an_exception_stays_on_one_line_with_its_stack_trace():
    line = JsonFormatter().format(record(logging.ERROR, "unexpected error", {"outcome": "error"}, exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert "Traceback" in entry["exception"] and "ValueError: boom" in entry["exception"]


def test_odd_values_and_newlines_still_make_one_json_line():
    line = JsonFormatter().format(record(logging.WARNING, "two\nlines", {"obj": object(), "ü": "ß"}))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines" and entry["ü"] == "ß" and entry["obj"].startswith("<object")


def test_text_lines_for_people():
    text = TextFormatter().format(record(logging.INFO, "converted: gs://in/a.docx",
                                         {"outcome": "converted", "output": None, "status": 204}))
    assert text == "info    converted: gs://in/a.docx outcome=converted status=204"
    failed = TextFormatter().format(record(logging.ERROR, "unexpected error", exc=True))
    assert failed.startswith("error   unexpected error\nTraceback") and "ValueError: boom" in failed


@pytest.mark.parametrize(("fmt", "formatter"), [("json", JsonFormatter), ("text", TextFormatter)])
def test_setup_routes_every_logger_to_stdout(monkeypatch: pytest.MonkeyPatch, fmt: str, formatter: type):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup(fmt)
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, formatter)
        logging.getLogger("worker.somewhere").info("hello", extra={"fields": {"k": "v"}})
        written = out.getvalue().strip()
        if fmt == "json":
            assert json.loads(written)["k"] == "v"
        else:
            assert written == "info    hello k=v"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
