"""Every real-world corpus document ends as a PDF or a recorded refusal, and the pool survives all of them.

`DOCWORKER_WRITE_TALLY=1 .venv/bin/python -m pytest -p no:cacheprovider tests/integration/test_corpus.py` also
rewrites docs/corpus-tally.md from this run.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.corpora import CORPUS, need_corpus
from tests.harness.processes import office_pids_under
from tests.integration.conftest_office import (
    DATA,
    REPO,
    initialised_template,
    office_settings,
    pdf_pages,
    pdf_text,
    running_pool,
    stale_tmp_leftovers,
    tmp_leftovers,
)
from worker.conversion import convert_file
from worker.errors import Reason, WorkerError
from worker.office import OfficePool

pytestmark = pytest.mark.office

CORPUS_FILES = 258
CONVERSION_TIMEOUT_S = 20.0
TALLY = REPO / "docs" / "corpus-tally.md"
COMMAND = "DOCWORKER_WRITE_TALLY=1 .venv/bin/python -m pytest -p no:cacheprovider tests/integration/test_corpus.py"

# Coarse groups over the manifest's free-text notes (a file can fall in several); first match order is irrelevant.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "encrypted / password": ("encrypt", "password", "xor obfuscation"),
    "corrupt / malformed": (
        "corrupt", "malformed", "invalid", "broken", "missing", "unrecognised", "without", "renamed",
        "non-standard", "bad ",
    ),
    "macros / VBA / ActiveX": ("macro", "vba", "activex", "add-in"),
    "external links": ("external", "linked", "links to", "outside the package", "link in"),
    "DDE": ("dde",),
    "non-Latin text": ("cjk", "rtl", "arabic", "hebrew", "cyrillic", "greek"),
    "tracked changes / comments": ("track", "comment"),
    "charts / SmartArt / equations": ("chart", "smartart", "equation", "formula", "mathml"),
    "images / embedded objects": ("image", "embedded", "ole", "movie", "picture"),
    "flat / Strict / legacy variants": ("flat", "strict", "biff", "rtf fragment", "2003", "apple pages"),
    "large": ("large",),
    "odd file names": ("filename",),
    "empty / minimal": ("empty", "zero slides", "tiny", "minimal", "no slides"),
}


@dataclass(frozen=True)
class Entry:
    path: Path
    relative: str
    notes: str

    @property
    def extension(self) -> str:
        return self.path.suffix.lower().lstrip(".") or "(none)"

    @property
    def categories(self) -> list[str]:
        if not self.notes.strip():
            return ["(no notes)"]
        notes = self.notes.lower()
        found = [name for name, words in CATEGORIES.items() if any(w in notes for w in words)]
        return found or ["other"]


@dataclass(frozen=True)
class Outcome:
    entry: Entry
    result: str  # "converted", "timeout", a Reason value, or "UNEXPECTED: ..."
    seconds: float
    detail: str = ""
    queue_wait_s: float | None = None  # known only for conversions that finished
    convert_s: float | None = None


def read_manifest() -> list[Entry]:
    with (CORPUS / "MANIFEST.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Entry(CORPUS / row["relative_path"], row["relative_path"], row["notes"] or "") for row in rows]


def convert_one(pool: OfficePool, entry: Entry, out_dir: Path, work_root: Path) -> Outcome:
    """Convert like the job does; anything but a PDF or a WorkerError is recorded as UNEXPECTED."""
    out = out_dir / (entry.relative.replace("/", "__") + ".pdf")
    t0 = time.monotonic()
    try:
        converted = convert_file(pool, entry.path, out, entry.path.name, work_root)
        if pdf_pages(out) < 1:
            return Outcome(entry, "UNEXPECTED: PDF without pages", time.monotonic() - t0)
        timing = converted.timing
        return Outcome(entry, "converted", time.monotonic() - t0, "", timing.queue_wait_s, timing.convert_s)
    except WorkerError as exc:
        result = "timeout" if exc.reason is Reason.CONVERSION_TIMEOUT else exc.reason.value
        return Outcome(entry, result, time.monotonic() - t0, exc.message)
    except Exception as exc:
        return Outcome(entry, f"UNEXPECTED: {exc!r}", time.monotonic() - t0)


@pytest.mark.timeout(900)
def test_every_corpus_file_becomes_a_pdf_or_a_refusal(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    need_corpus(CORPUS)
    entries = read_manifest()
    assert len(entries) == CORPUS_FILES
    assert all(e.path.is_file() for e in entries)
    template = initialised_template(tmp_path_factory.getbasetemp() / "office-template")
    settings = office_settings(
        tmp_path / "work", template, pool_size=2, conversion_timeout_s=CONVERSION_TIMEOUT_S, queue_wait_s=120
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = tmp_leftovers()
    t0 = time.monotonic()
    with running_pool(settings) as pool:
        with ThreadPoolExecutor(max_workers=2) as executor:  # one client per instance, like two push requests
            outcomes = list(executor.map(lambda e: convert_one(pool, e, out_dir, settings.work_dir), entries))
        sample_pdf = tmp_path / "after.pdf"
        convert_file(pool, DATA / "sample.docx", sample_pdf, "sample.docx", settings.work_dir)
        healthy = pool.ready() and "docworker sample docx" in pdf_text(sample_pdf)[1]
        restarts = dict(pool.restarts)
        leftover_jobs = sorted(p.name for p in settings.work_dir.glob("job-*"))
    wall = time.monotonic() - t0
    orphans = office_pids_under(settings.work_dir)
    new_tmp = stale_tmp_leftovers(before)
    office_dirs = sorted(p.name for p in (settings.work_dir / "office").iterdir())

    if os.environ.get("DOCWORKER_WRITE_TALLY") == "1":
        TALLY.parent.mkdir(exist_ok=True)
        TALLY.write_text(render_tally(outcomes, wall, restarts))

    unexpected = [(o.entry.relative, o.result) for o in outcomes if o.result.startswith("UNEXPECTED")]
    assert unexpected == []
    assert healthy, "the pool did not convert a sample after the corpus"
    assert leftover_jobs == []
    assert orphans == []
    assert office_dirs == []
    assert new_tmp == [], "LibreOffice left stale files in /tmp"
    print(f"corpus: {len(outcomes)} files in {wall:.1f} s, restarts {restarts}")


def render_tally(outcomes: list[Outcome], wall: float, restarts: dict[str, int]) -> str:
    """The markdown report: totals, then by extension and by manifest category, then every non-PDF file."""
    results = sorted({o.result for o in outcomes}, key=lambda r: (r != "converted", r != "timeout", r))
    totals = Counter(o.result for o in outcomes)
    by_ext: dict[str, Counter[str]] = defaultdict(Counter)
    by_cat: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        by_ext[o.entry.extension][o.result] += 1
        for cat in o.entry.categories:
            by_cat[cat][o.result] += 1

    def table(title: str, rows: dict[str, Counter[str]]) -> list[str]:
        head = [f"| {title} | files | " + " | ".join(results) + " |", "|---|---:|" + "---:|" * len(results)]
        body = [
            f"| {key} | {sum(c.values())} | " + " | ".join(str(c[r] or "") for r in results) + " |"
            for key, c in sorted(rows.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        ]
        return head + body

    slowest = sorted(outcomes, key=lambda o: -o.seconds)[:10]
    lines = [
        "# Corpus tally",
        "",
        f"Generated by the test run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `nproc` = {os.cpu_count()}:",
        "",
        "```",
        COMMAND,
        "```",
        "",
        f"{len(outcomes)} files from `$DOCWORKER_CORPUS_DIR/corpus` (MANIFEST.tsv) through `convert_file`, pool of 2,",
        f"conversion timeout {CONVERSION_TIMEOUT_S:g} s, two client threads. Wall time {wall:.0f} s.",
        f"Office restarts during the run: {dict(sorted(restarts.items())) or 'none'}.",
        "Columns: `converted` = a PDF that pypdf parses; `timeout` = stopped at the timeout; any other column is",
        "the refusal reason (`worker.errors.Reason`). Categories are keyword groups over the manifest's notes; a",
        "file can be in several.",
        "",
        "## Totals",
        "",
        "| outcome | files |",
        "|---|---:|",
        *[f"| {r} | {totals[r]} |" for r in results],
        "",
        "## By extension",
        "",
        *table("extension", by_ext),
        "",
        "## By manifest note category",
        "",
        *table("category", by_cat),
        "",
        "## Files that did not become a PDF",
        "",
        "| file | outcome | seconds | message |",
        "|---|---|---:|---|",
        *[
            f"| `{o.entry.relative}` | {o.result} | {o.seconds:.1f} | {o.detail.replace('|', '/')[:120]} |"
            for o in sorted(outcomes, key=lambda o: (o.result, o.entry.relative))
            if o.result != "converted"
        ],
        "",
        "## Slowest ten",
        "",
        "Seconds are wall time per call, including the wait for a free instance (the other may be restarting).",
        "",
        "| file | outcome | seconds | of which queue wait | convert |",
        "|---|---|---:|---:|---:|",
        *[
            f"| `{o.entry.relative}` | {o.result} | {o.seconds:.1f} | {_secs(o.queue_wait_s)} | {_secs(o.convert_s)} |"
            for o in slowest
        ],
        "",
    ]
    return "\n".join(lines)


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
