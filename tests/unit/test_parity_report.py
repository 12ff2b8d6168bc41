"""bench/parity.py's verdicts and report, on made-up outcomes (the real run is tests/integration/test_parity.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.parity import CONVERTED, UNEXPECTED, Entry, Row, Run, Side, render, similarity

WHEN = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)


def row(relative: str, stock: str, ours: str, notes: str = "", corpus: str = "corpus", **compared: object) -> Row:
    entry = Entry(corpus, relative, notes, Path("/nowhere") / relative)
    return Row(entry, Side(stock, 1.0, "stock said"), Side(ours, 0.1, f"ours said {ours}"), **compared)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stock", "ours", "notes", "category", "policy", "failure"),
    [
        (CONVERTED, CONVERTED, "", "both", False, False),
        (CONVERTED, "corrupt", "", "only stock", False, True),  # the Works file: not damaged, a failure
        (CONVERTED, "unsupported_type", "", "only stock", False, True),
        (CONVERTED, "conversion_timeout", "", "only stock", False, True),
        (CONVERTED, "encrypted", "", "only stock", True, False),  # Excel's VelvetSweatshop would be one
        (CONVERTED, "zip_bomb", "", "only stock", True, False),
        (CONVERTED, "hostile", "", "only stock", True, False),
        (CONVERTED, "too_large", "", "only stock", True, False),
        (CONVERTED, "empty", "", "only stock", True, False),
        (CONVERTED, "corrupt", "XML entity bomb (billion laughs)", "only stock", True, False),
        (CONVERTED, "unsupported_type", "hostile: renamed PNG", "only stock", True, False),
        ("no PDF", CONVERTED, "", "only us", False, False),
        ("no PDF", "encrypted", "", "neither", False, False),
        ("timeout", "corrupt", "", "neither", False, False),
        ("no PDF", UNEXPECTED, "", "neither", False, True),  # our bug, whatever stock did
    ],
)
def test_verdicts(stock: str, ours: str, notes: str, category: str, policy: bool, failure: bool) -> None:
    r = row("a/x.doc", stock, ours, notes)
    assert (r.category, r.policy_refusal, r.failure) == (category, policy, failure)


def test_stock_printing_the_files_source_as_text_is_no_conversion_we_owe() -> None:
    """An RTF fragment without its header, a Flat OPC package: stock shows the raw bytes, we say what it is."""
    printed = row("pandoc/tables.rtf", CONVERTED, "unsupported_type", stock_printed_source=True)
    assert (printed.category, printed.policy_refusal, printed.failure) == ("only stock", True, False)
    damaged = row("pandoc/tables.rtf", CONVERTED, "corrupt", stock_printed_source=False)
    assert damaged.failure


def test_similarity_is_one_for_the_same_words_and_lower_otherwise() -> None:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    assert similarity(words, list(words)) == 1.0
    assert 0.8 < similarity(words, words[:-1]) < 1.0
    assert similarity(words, ["nothing", "alike"]) < 0.2


def test_report_is_sorted_and_the_same_for_the_same_results() -> None:
    rows = [
        row("b/works.wps", CONVERTED, "corrupt", corpus="corpus-formats"),
        row("a/enc.docx", CONVERTED, "encrypted"),
        row("a/ok.docx", CONVERTED, CONVERTED, stock_pages=2, our_pages=2, text_equal=True, similarity=1.0),
        row("a/drift.docx", CONVERTED, CONVERTED, stock_pages=3, our_pages=4, text_equal=False, similarity=0.5),
        row("a/hwp.hwp", "no PDF", "unsupported_type"),
    ]
    run = Run(rows, 10.0, 6.0, 4.0, 60.0, 2)
    first = render(run, "make parity", WHEN, "LibreOffice 7.4")
    assert first == render(Run(list(reversed(rows)), 10.0, 6.0, 4.0, 60.0, 2), "make parity", WHEN, "LibreOffice 7.4")
    assert "2026-12-02 13:00 UTC by `make parity`" in first
    assert "| corpus | 4 | 2 | 1 | 1 | 0 | 1 | 1 | 1 | 1 |" in first
    assert "| corpus-formats | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 |" in first
    failures = first.split("## Failures")[1].split("## Policy")[0]
    assert "`corpus-formats/b/works.wps` | converted | corrupt" in failures and "enc.docx" not in failures
    assert "`corpus/a/enc.docx` | converted | encrypted" in first.split("## Policy refusals")[1].split("##")[0]
    assert "| `corpus/a/drift.docx` | 3 / 4 | 0.500 | pages text |  |" in first
    assert [r.entry.key for r in run.failures] == ["corpus-formats/b/works.wps"]
