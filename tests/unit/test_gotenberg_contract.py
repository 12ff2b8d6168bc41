"""Gotenberg's LibreOffice-route contract (worker/gotenberg.py): form validation in Gotenberg's words, every field we
cannot honour refused by name, merge order, output names, the status of each failure, the /health body."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.errors import Reason, WorkerError
from worker.gotenberg import (
    SyncError,
    Upload,
    build_plan,
    failure,
    health_body,
    output_name,
    parse_metadata,
    sanitize_filename,
)

DOCX = Upload("a.docx", "/tmp/x", 10)


def problems_of(form: dict[str, list[str]], uploads: list[Upload] | None = None,
                file_fields: tuple[str, ...] = ()) -> str:
    with pytest.raises(SyncError) as caught:
        build_plan(form, [DOCX] if uploads is None else uploads, file_fields)
    assert caught.value.status == 400
    assert caught.value.reason is Reason.BAD_OPTION
    assert caught.value.message.startswith("Invalid form data: ")
    return caught.value.message


def test_fields_map_onto_the_options_and_passwords() -> None:
    plan = build_plan({"pdfa": ["PDF/A-2b"], "nativePageRanges": ["1-2"], "quality": ["50"],
                       "reduceImageResolution": ["true"], "maxImageResolution": ["150"],
                       "password": ["in-secret"], "exportBookmarks": ["false"]}, [DOCX])
    assert (plan.options.pdfa, plan.options.pages, plan.options.quality) == ("2b", "1-2", 50)
    assert (plan.options.max_dpi, plan.options.bookmarks) == (150, False)
    assert plan.passwords.input_password == "in-secret"
    assert plan.passwords.open_password is None
    assert not plan.merge and plan.metadata == {}


def test_every_bad_or_unsupported_field_is_named_at_once() -> None:
    message = problems_of({"pdfa": ["PDF/A-9z"], "quality": ["0"], "nativePageRanges": ["x"],
                           "landscape": ["true"], "initialView": ["1"], "merge": ["maybe"]})
    for name in ("pdfa", "quality", "nativePageRanges", "landscape", "initialView", "merge"):
        assert f"form field '{name}' is invalid" in message
    assert "strconv.ParseBool" in message  # merge: Gotenberg's own wording for a bad boolean


def test_a_field_at_gotenbergs_default_is_accepted_even_when_we_cannot_set_it() -> None:
    plan = build_plan({"landscape": ["false"], "skipEmptyPages": ["false"], "flatten": ["false"],
                       "nativePdfFormats": ["true"], "splitMode": [""]}, [DOCX])
    assert plan.options.pdfa is None
    assert "'nativePdfFormats' is invalid" in problems_of({"nativePdfFormats": ["false"]})
    assert "'splitMode' is invalid" in problems_of({"splitMode": ["pages"]})


def test_other_file_fields_and_missing_or_duplicate_files_are_refused() -> None:
    assert "form file field 'watermark'" in problems_of({}, [DOCX], ("files", "watermark"))
    assert "no form file found" in problems_of({}, [])
    assert "sent more than once" in problems_of({}, [DOCX, Upload("a.docx", "/tmp/y", 1)])


def test_combinations_we_would_not_honour_exactly_are_refused() -> None:
    two = [DOCX, Upload("b.docx", "/tmp/y", 1)]
    assert "'merge'" in problems_of({"userPassword": ["u"], "merge": ["true"]}, two)
    assert "'metadata'" in problems_of({"ownerPassword": ["o"], "metadata": ['{"Title": "x"}']})
    assert "'pdfua'" in problems_of({"pdfua": ["true"], "merge": ["true"]}, two)
    assert "form field 'pdfa'" in problems_of({"pdfa": ["PDF/A-2b"], "userPassword": ["u"]})
    assert "form field 'allowPrinting'" in problems_of({"allowPrinting": ["false"]})  # needs an owner password


def test_merge_order_is_the_natural_order_of_the_file_names() -> None:
    names = ["page10.docx", "page2.docx", "page1.docx", "b.docx", "a.docx"]
    plan = build_plan({"merge": ["true"]}, [Upload(n, "/tmp/" + n, 1) for n in names])
    assert [u.filename for u in plan.uploads] == ["a.docx", "b.docx", "page1.docx", "page2.docx", "page10.docx"]
    assert plan.merge and not plan.several


def test_metadata_keys_and_values_are_checked() -> None:
    doc, problems = parse_metadata('{"Title": "T", "Author": ["A", "B"], "CreationDate": "2006-09-18T16:27:50-04:00"}')
    assert doc["Author"] == ["A", "B"] and problems == []
    assert "unmarshal metadata" in parse_metadata("foo")[1][0]
    _, problems = parse_metadata('{"Marked": true, "Title": 5, "ModDate": "yesterday", "Trapped": "Maybe"}')
    assert [p.split("'")[1] for p in problems] == ["Marked", "Title", "ModDate", "Trapped"]


def test_output_names_follow_the_header_sanitised() -> None:
    assert output_name("foo", several=False) == "foo.pdf"
    assert output_name("foo", several=True) == "foo.zip"
    assert output_name("C:\\Windows\\Temp\\foo", several=False) == "foo.pdf"
    assert output_name("/tmp/foo", several=False) == "foo.pdf"
    assert output_name(None, several=False).endswith(".pdf") and len(output_name(None, several=False)) == 40
    assert sanitize_filename("../../etc/pa\x00ss\x1fwd.docx") == "passwd.docx"


@pytest.mark.parametrize(("reason", "status", "retry_after"), [
    (Reason.QUEUE_FULL, 429, 1), (Reason.OFFICE_UNAVAILABLE, 503, 5), (Reason.OFFICE_CRASHED, 503, 5),
    (Reason.CONVERSION_TIMEOUT, 503, 5), (Reason.CORRUPT, 400, None), (Reason.UNSUPPORTED_TYPE, 400, None),
    (Reason.PASSWORD_REQUIRED, 400, None), (Reason.PASSWORD_WRONG, 400, None), (Reason.TOO_LARGE, 413, None),
    (Reason.VERIFICATION_FAILED, 400, None), (Reason.CONVERSION_FAILED, 400, None),
])
def test_each_failure_has_gotenbergs_status_and_names_the_file(reason: Reason, status: int,
                                                                retry_after: int | None) -> None:
    answer = failure(WorkerError(reason, "why"), "report.docx")
    assert (answer.status, answer.retry_after_s, answer.reason) == (status, retry_after, reason)
    assert "'report.docx'" in answer.message or reason is Reason.QUEUE_FULL


def test_password_failures_use_gotenbergs_sentences() -> None:
    assert failure(WorkerError(Reason.PASSWORD_REQUIRED, ""), "p.docx").message == (
        "The document 'p.docx' is password-protected. Provide its password in the 'password' form field.")
    assert failure(WorkerError(Reason.PASSWORD_WRONG, ""), "p.docx").message == (
        "The password for the document 'p.docx' is incorrect. Check the 'password' form field.")


def test_health_body_is_gotenbergs_shape() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert health_body(True, now) == {"status": "up", "details": {"libreoffice": {
        "status": "up", "timestamp": "2026-01-02T03:04:05.006000Z"}}}
    assert health_body(False, now)["details"]["libreoffice"]["status"] == "down"
