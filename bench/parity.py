"""Parity with stock LibreOffice: does the worker convert every document a plain `soffice --convert-to pdf` does?

    make parity                                  # = .venv/bin/python bench/parity.py, writes docs/parity.md
    .venv/bin/python bench/parity.py --subset    # the handful of files tests/integration/test_parity.py runs

Over `$DOCWORKER_CORPUS_DIR/corpus` and `$DOCWORKER_CORPUS_DIR/corpus-formats` (default: `shared` beside the
checkout), each document is converted twice:

  stock  a cold `soffice --headless --convert-to pdf` per file, on a throwaway profile of its own, without network
         (bubblewrap --unshare-net: the corpus holds documents that fetch links), killed at the timeout. Stock
         soffice exits 0 even when it cannot load a file, so "converted" means: a PDF with at least one page.
  ours   worker.conversion.convert_file, the code path of `worker convert` and of the push job (sniff, then the
         warm pool), on one pool of 2 with the same timeout.

Both-converted files are compared by page count (pdfinfo) and text (pdftotext, whitespace normalised; similarity
is difflib's ratio over words, flagged below FLAG_BELOW). The run exits 1 when stock produced a PDF and we did
not, unless we refused on purpose: a reason in POLICY_REASONS, or a file the manifest notes as a bomb or hostile.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.corpora import ROOT, missing_reason  # noqa: E402
from worker.config import office_from_env  # noqa: E402
from worker.conversion import convert_file  # noqa: E402
from worker.errors import Reason, WorkerError  # noqa: E402
from worker.office import OfficePool  # noqa: E402

CORPORA = ("corpus", "corpus-formats")
DOC = REPO / "docs" / "parity.md"
COMMAND = "make parity"
# The worker's own CONVERSION_TIMEOUT_S default: four offices share two cores here (a pool of 2 beside 2 stock
# runs), and the corpus' slowest real document (jodconverter/OpenDocument-v1.1.odt, 12.7 s alone) passed 60 s.
TIMEOUT_S = 120.0
FLAG_BELOW = 0.9  # text similarity under this is flagged in the table (not a failure)
# We refuse these on purpose even when stock LibreOffice would print something: an encrypted file has no readable
# content without its password, a bomb or hostile file would hurt the service, a file over MAX_INPUT_BYTES is never
# downloaded, and a 0-byte upload has no document (stock prints a blank page).
POLICY_REASONS = frozenset({Reason.ENCRYPTED, Reason.PASSWORD_REQUIRED, Reason.HOSTILE, Reason.ZIP_BOMB,
                            Reason.TOO_LARGE, Reason.EMPTY})
POLICY_NOTES = ("bomb", "hostile")  # manifest notes that mark a file as refused on purpose, whatever the reason
# Differences explained by the document itself, checked by hand; shown beside the numbers, never hiding them.
KNOWN_DIFFERENCES = {
    "corpus/Open-XML-SDK/PerformanceArabic.xlsx":
        "cells are RANDBETWEEN(1,100), recalculated on every load: two stock runs differ as much",
}
CONVERTED = "converted"
UNEXPECTED = "UNEXPECTED"  # our side raised something other than a WorkerError
# A few files per corpus covering the families (text, sheet, slides; OOXML, ODF, binary, RTF) and a policy
# refusal; `--subset` and tests/integration/test_parity.py run only these.
SUBSET = {
    "corpus": (
        "jodconverter/test.doc", "jodconverter/test.docx", "jodconverter/test.odp", "jodconverter/test.ods",
        "jodconverter/test.odt", "jodconverter/test.ppt", "jodconverter/test.pptx", "jodconverter/test.rtf",
        "jodconverter/test.xls", "jodconverter/test.xlsx", "oletools/encrypted.docx",
        "pandoc/tables.rtf", "Open-XML-SDK/HelloWorldFlatOpc.xml",
    ),
    "corpus-formats": (
        "tika/testEXCEL.xlsb",
        "tika/testOptionalHyphen.ppt",
        "tika/testHWP-v5b.hwp",
        "tika/testWORD6.doc",
        "tika/testWORKS.wps",
        "tika/testLotus123.wk1",
        "tika/testVISIO.vsd",
        "tika/testKeynote.key",
    ),
}


@dataclass(frozen=True)
class Entry:
    corpus: str
    relative: str
    notes: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.corpus}/{self.relative}"

    @property
    def policy_note(self) -> bool:
        return any(word in self.notes.lower() for word in POLICY_NOTES)


@dataclass(frozen=True)
class Side:
    outcome: str  # CONVERTED, a Reason value (ours), or what stopped stock ("no PDF", "timeout", ...)
    seconds: float
    detail: str = ""
    pdf: Path | None = None


@dataclass(frozen=True)
class Row:
    entry: Entry
    stock: Side
    ours: Side
    stock_pages: int | None = None
    our_pages: int | None = None
    text_equal: bool | None = None
    similarity: float | None = None
    stock_printed_source: bool = False  # stock's "PDF" is the file's own bytes shown as plain text

    @property
    def category(self) -> str:
        s, o = self.stock.outcome == CONVERTED, self.ours.outcome == CONVERTED
        return {(True, True): "both", (True, False): "only stock", (False, True): "only us",
                (False, False): "neither"}[(s, o)]

    @property
    def policy_refusal(self) -> bool:
        return self.category == "only stock" and (self.ours.outcome in POLICY_REASONS or self.entry.policy_note
                                                  or self.stock_printed_source)

    @property
    def failure(self) -> bool:
        """Stock made a PDF, we did not, and not on purpose; or our side broke without a reason (a bug)."""
        return (self.category == "only stock" and not self.policy_refusal) or self.ours.outcome == UNEXPECTED


# -- inputs --------------------------------------------------------------------------------------------------------


def read_entries(root: Path, subset: bool = False) -> list[Entry]:
    """Every manifest row of both corpora (or only SUBSET), sorted by corpus and path."""
    entries = []
    for corpus in CORPORA:
        with (root / corpus / "MANIFEST.tsv").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                relative = row["relative_path"]
                if subset and relative not in SUBSET[corpus]:
                    continue
                entries.append(Entry(corpus, relative, row.get("notes") or "", root / corpus / relative))
    if subset:
        found = {e.key for e in entries}
        wanted = {f"{c}/{r}" for c, names in SUBSET.items() for r in names}
        if wanted - found:
            raise SystemExit(f"parity: subset files missing from the manifests: {sorted(wanted - found)}")
    return sorted(entries, key=lambda e: (e.corpus, e.relative))


# -- stock LibreOffice ---------------------------------------------------------------------------------------------


def network_isolation() -> list[str]:
    """A command prefix that runs stock soffice without network: bubblewrap, else `unshare -n` (root)."""
    candidates = (["bwrap", "--unshare-net", "--dev-bind", "/", "/", "--die-with-parent", "--"], ["unshare", "-n"])
    for prefix in candidates:
        if shutil.which(prefix[0]) is None:
            continue
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return prefix
    raise SystemExit("parity: cannot run stock soffice without network (neither `bwrap --unshare-net` nor "
                     "`unshare -n` works here); the corpus holds documents that fetch their links")


def convert_stock(entry: Entry, out_root: Path, timeout_s: float, isolation: list[str],
                  soffice: str = "soffice") -> Side:
    """One cold `soffice --headless --convert-to pdf` on a fresh profile, killed with its process group at timeout."""
    run_dir = Path(tempfile.mkdtemp(prefix="stock-", dir=out_root))
    out_dir = run_dir / "out"
    out_dir.mkdir()
    cmd = [*isolation, soffice, f"-env:UserInstallation=file://{run_dir}/profile", "--headless", "--norestore",
           "--convert-to", "pdf", "--outdir", str(out_dir), str(entry.path)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run_dir), "TMPDIR": str(run_dir),
           "LANG": os.environ.get("LANG", "C.UTF-8")}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Side("timeout", time.monotonic() - t0, f"no PDF within {timeout_s:g} s")
    finally:
        shutil.rmtree(run_dir / "profile", ignore_errors=True)
    seconds = time.monotonic() - t0
    pdfs = sorted(out_dir.glob("*.pdf"))
    said = " ".join(line for line in output.decode(errors="replace").splitlines() if "Error" in line)[:200]
    if not pdfs:
        return Side("no PDF", seconds, said or f"exit {proc.returncode}")
    if pdf_pages(pdfs[0]) < 1:
        return Side("no PDF", seconds, "a PDF without pages")
    return Side(CONVERTED, seconds, pdf=pdfs[0])


# -- ours ----------------------------------------------------------------------------------------------------------


def convert_ours(pool: OfficePool, entry: Entry, out_root: Path, work_root: Path) -> Side:
    """convert_file exactly as `worker convert` calls it; anything but a PDF or a WorkerError is UNEXPECTED."""
    dst = out_root / "ours" / (entry.key.replace("/", "__") + ".pdf")
    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        convert_file(pool, entry.path, dst, entry.path.name, work_root)
    except WorkerError as exc:
        return Side(exc.reason.value, time.monotonic() - t0, exc.message)
    except Exception as exc:
        return Side(UNEXPECTED, time.monotonic() - t0, repr(exc))
    seconds = time.monotonic() - t0
    if pdf_pages(dst) < 1:
        return Side(UNEXPECTED, seconds, "a PDF without pages")
    return Side(CONVERTED, seconds, pdf=dst)


# -- comparison ----------------------------------------------------------------------------------------------------


def pdf_pages(pdf: Path) -> int:
    """Page count from poppler's pdfinfo (0 when it cannot read the file)."""
    done = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"^Pages:\s+(\d+)", done.stdout, re.MULTILINE)
    return int(match.group(1)) if match else 0


def pdf_words(pdf: Path) -> list[str]:
    """The PDF's text as poppler's pdftotext reads it, split on any whitespace."""
    done = subprocess.run(["pdftotext", "-q", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, timeout=120,
                          check=False)
    return done.stdout.decode("utf-8", errors="replace").split()


def similarity(a: list[str], b: list[str]) -> float:
    """difflib's ratio over words: 1.0 for the same text; fast enough for the corpus' 300-page RTF spec."""
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def printed_source(entry: Entry, stock_pdf: Path) -> bool:
    """Whether stock only printed the file's bytes as plain text (an RTF fragment without its header, a Flat OPC
    package): its PDF holds the source, not the document, so our unsupported_type refusal is the truthful one."""
    shown = "".join(" ".join(pdf_words(stock_pdf)).split())[:5000]
    source = "".join(entry.path.read_bytes()[:400_000].decode("utf-8", errors="replace").split())[:5000]
    return bool(shown) and difflib.SequenceMatcher(None, shown, source, autojunk=False).ratio() >= 0.95


def compare(entry: Entry, stock: Side, ours: Side) -> Row:
    if stock.pdf is not None and ours.outcome == Reason.UNSUPPORTED_TYPE:
        return Row(entry, stock, ours, stock_printed_source=printed_source(entry, stock.pdf))
    if stock.pdf is None or ours.pdf is None:
        return Row(entry, stock, ours)
    a, b = pdf_words(stock.pdf), pdf_words(ours.pdf)
    return Row(entry, stock, ours, pdf_pages(stock.pdf), pdf_pages(ours.pdf), a == b, similarity(a, b))


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rows: list[Row]
    wall_s: float
    stock_s: float
    ours_s: float
    timeout_s: float
    jobs: int

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.failure]


def run_parity(entries: list[Entry], work: Path, *, timeout_s: float = TIMEOUT_S, jobs: int = 2,
               progress: Callable[[str], None] = lambda line: None) -> Run:
    """Ours first on one warm pool, then stock, never both at once (they would slow each other down)."""
    t0 = time.monotonic()
    settings = replace(office_from_env(), work_dir=work / "pool", pool_size=jobs, conversion_timeout_s=timeout_s,
                       queue_wait_s=timeout_s * len(entries) + 60)
    ours: dict[str, Side] = {}
    pool = OfficePool(settings)
    try:
        pool.start(give_up_on_failure=True)
        with ThreadPoolExecutor(max_workers=jobs) as executor:
            for entry, side in zip(entries, executor.map(
                    lambda e: convert_ours(pool, e, work, settings.work_dir), entries), strict=True):
                ours[entry.key] = side
                progress(f"ours  {side.outcome:>18} {side.seconds:6.1f} s  {entry.key}")
    finally:
        pool.stop()
    ours_s = time.monotonic() - t0
    isolation = network_isolation()
    t1 = time.monotonic()
    stock: dict[str, Side] = {}
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        for entry, side in zip(entries, executor.map(
                lambda e: convert_stock(e, work, timeout_s, isolation), entries), strict=True):
            stock[entry.key] = side
            progress(f"stock {side.outcome:>18} {side.seconds:6.1f} s  {entry.key}")
    stock_s = time.monotonic() - t1
    rows = [compare(e, stock[e.key], ours[e.key]) for e in entries]
    return Run(rows, time.monotonic() - t0, stock_s, ours_s, timeout_s, jobs)


# -- the document --------------------------------------------------------------------------------------------------


def _cell(text: str, limit: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render(run: Run, command: str, when: datetime, office_version: str) -> str:
    """docs/parity.md: every table sorted by corpus and path, so two runs differ only where results differ."""
    rows = sorted(run.rows, key=lambda r: (r.entry.corpus, r.entry.relative))
    both = [r for r in rows if r.category == "both"]
    lines = [
        "# Parity with stock LibreOffice",
        "",
        f"Generated {when:%Y-%m-%d %H:%M} UTC by `{command}` (bench/parity.py) on {office_version}, "
        f"`nproc` = {os.cpu_count()}.",
        f"{len(rows)} files; wall time {run.wall_s:.0f} s (ours {run.ours_s:.0f} s, stock {run.stock_s:.0f} s), "
        f"{run.jobs} at a time on each side, timeout {run.timeout_s:g} s on both; median per file: stock "
        f"{statistics.median(r.stock.seconds for r in rows):.1f} s, "
        f"ours {statistics.median(r.ours.seconds for r in rows):.2f} s.",
        "",
        "- **stock**: a cold `soffice --headless --convert-to pdf` per file on a throwaway profile, no network",
        "  (bubblewrap `--unshare-net`); converted = a PDF with at least one page (stock exits 0 when it cannot load).",
        "- **ours**: `worker.conversion.convert_file`, the code path of `worker convert` and of every push job,",
        "  on one warm pool.",
        "- **pages** from `pdfinfo`; **text** from `pdftotext`, whitespace normalised; **similarity** = difflib's",
        f"  ratio over words (1.000 = same words in the same order), flagged below {FLAG_BELOW}.",
        "- **failure** = stock made a PDF and we did not, except on purpose: our reason is one of "
        + ", ".join(f"`{r.value}`" for r in sorted(POLICY_REASONS)) + ", or the manifest notes the file as "
        + " / ".join(POLICY_NOTES) + ", or stock only printed the file's source as plain text (its PDF text is the"
        " file's own bytes) and we said `unsupported_type`; or our side raised an error without a reason."
        " `make parity` exits 1 on any.",
        "",
        "## Summary",
        "",
        "| corpus | files | both | only stock | of which policy refusals | only us | neither | same pages | "
        "same text | text flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus in [*CORPORA, "all"]:
        mine = [r for r in rows if corpus in ("all", r.entry.corpus)]
        if not mine:
            continue
        cats = Counter(r.category for r in mine)
        mine_both = [r for r in mine if r.category == "both"]
        lines.append(
            f"| {corpus} | {len(mine)} | {cats['both']} | {cats['only stock']} | "
            f"{sum(r.policy_refusal for r in mine)} | {cats['only us']} | {cats['neither']} | "
            f"{sum(r.stock_pages == r.our_pages for r in mine_both)} | {sum(bool(r.text_equal) for r in mine_both)} | "
            f"{sum((r.similarity or 0) < FLAG_BELOW for r in mine_both)} |"
        )
    failures = [r for r in rows if r.failure]
    lines += ["", f"## Failures: stock converts, we do not; or an unexpected error ({len(failures)})", ""]
    lines += _outcome_table(failures) if failures else ["None."]
    policy = [r for r in rows if r.policy_refusal]
    lines += ["", f"## Policy refusals: stock converts, we refuse on purpose ({len(policy)})", ""]
    lines += _outcome_table(policy) if policy else ["None."]
    only_us = [r for r in rows if r.category == "only us"]
    lines += ["", f"## Only we convert ({len(only_us)})", ""]
    lines += _outcome_table(only_us) if only_us else ["None."]
    neither = [r for r in rows if r.category == "neither"]
    lines += ["", f"## Neither converts ({len(neither)})", ""]
    lines += _outcome_table(neither) if neither else ["None."]
    differ = [r for r in both if r.stock_pages != r.our_pages or not r.text_equal]
    lines += ["", f"## Both convert: pages or text differ ({len(differ)} of {len(both)})", ""]
    if differ:
        lines += ["| file | pages stock / ours | text similarity | flag | known cause |", "|---|---:|---:|---|---|"]
        lines += [
            f"| `{r.entry.key}` | {r.stock_pages} / {r.our_pages} | {_ratio(r.similarity)} | "
            + " ".join(f for f, bad in (("pages", r.stock_pages != r.our_pages),
                                        ("text", (r.similarity or 0) < FLAG_BELOW)) if bad)
            + f" | {KNOWN_DIFFERENCES.get(r.entry.key, '')} |"
            for r in differ
        ]
    else:
        lines.append("None: every file both convert has the same pages and the same text.")
    lines.append("")
    return "\n".join(lines)


def _outcome_table(rows: Iterable[Row]) -> list[str]:
    out = ["| file | stock | ours | our message / stock's |", "|---|---|---|---|"]
    for r in rows:
        message = r.ours.detail if r.ours.outcome != CONVERTED else r.stock.detail
        stock = "printed the file's source as text" if r.stock_printed_source else r.stock.outcome
        out.append(f"| `{r.entry.key}` | {stock} | {r.ours.outcome} | {_cell(message)} |")
    return out


def office_version() -> str:
    try:
        done = subprocess.run(["soffice", "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "LibreOffice (version unknown)"
    return " ".join(done.stdout.split()[:2]) or "LibreOffice (version unknown)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path, default=ROOT, help="holds corpus/ and corpus-formats/")
    parser.add_argument("--subset", action="store_true", help="only the SUBSET files (what `make test` runs)")
    parser.add_argument("--out", type=Path, default=None, help=f"markdown report (default {DOC}; none for --subset)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per file, both sides")
    parser.add_argument("--jobs", type=int, default=2, help="conversions at a time on each side")
    args = parser.parse_args(argv)
    for corpus in CORPORA:
        reason = missing_reason(args.corpus_dir / corpus)
        if reason is not None:
            print(f"parity: {reason}", file=sys.stderr)
            return 2
    entries = read_entries(args.corpus_dir, args.subset)
    out = args.out if args.out is not None else (None if args.subset else DOC)
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        run = run_parity(entries, Path(tmp), timeout_s=args.timeout, jobs=args.jobs,
                         progress=lambda line: print(line, flush=True))
        if out is not None:
            command = COMMAND if not args.subset else "bench/parity.py --subset"
            out.write_text(render(run, command, datetime.now(UTC), office_version()))
            print(f"wrote {out}")
    cats = Counter(r.category for r in run.rows)
    print(f"parity: {len(run.rows)} files in {run.wall_s:.0f} s (ours {run.ours_s:.0f} s, stock {run.stock_s:.0f} s): "
          + ", ".join(f"{k} {cats[k]}" for k in ("both", "only stock", "only us", "neither"))
          + f"; policy refusals {sum(r.policy_refusal for r in run.rows)}; failures {len(run.failures)}")
    for row in run.failures:
        print(f"parity: FAILURE {row.entry.key}: stock converts, ours {row.ours.outcome}: {row.ours.detail}",
              file=sys.stderr)
    # the closing line CI reads, one check per file: every file that is not a failure passed
    print(f"parity: {len(run.rows) - len(run.failures)} passed, {len(run.failures)} failed", flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
