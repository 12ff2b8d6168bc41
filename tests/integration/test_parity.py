"""A fast slice of `make parity` inside `make test`: real stock LibreOffice and our pool on a few files per family.

The whole run (every corpus document, docs/parity.md) is `make parity`, which `.ci/run` runs after `make test`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.parity import CONVERTED, FLAG_BELOW, SUBSET, read_entries, run_parity
from tests.corpora import CORPUS, FORMATS, ROOT, need_corpus

pytestmark = pytest.mark.office


@pytest.mark.timeout(600)
def test_subset_converts_like_stock_libreoffice(tmp_path: Path) -> None:
    need_corpus(CORPUS)
    need_corpus(FORMATS)
    entries = read_entries(ROOT, subset=True)
    assert len(entries) == sum(len(names) for names in SUBSET.values())

    run = run_parity(entries, tmp_path, timeout_s=60, jobs=2)

    assert [(r.entry.key, r.ours.outcome, r.ours.detail) for r in run.failures] == []
    both = [r for r in run.rows if r.category == "both"]
    assert len(both) >= 10  # every family converted by both sides, so the comparison below means something
    drift = [(r.entry.key, r.stock_pages, r.our_pages, r.similarity) for r in both
             if r.stock_pages != r.our_pages or (r.similarity or 0) < FLAG_BELOW]
    assert drift == []  # page for page, and (almost) word for word
    by_key = {r.entry.key: r for r in run.rows}
    encrypted = by_key["corpus/oletools/encrypted.docx"]
    assert (encrypted.stock.outcome, encrypted.ours.outcome) == ("no PDF", "password_required")
    assert by_key["corpus-formats/tika/testEXCEL.xlsb"].ours.outcome == CONVERTED
