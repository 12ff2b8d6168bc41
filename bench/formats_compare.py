"""Compare the two ways of identifying uploads (issue 12) on both corpora, and time identification of a docx.

    .venv/bin/python bench/formats_compare.py            # prints the tables committed in docs/formats.md

(a) the byte sniffer, worker.sniff.sniff; (b) LibreOffice's TypeDetection with deep detection, asked by
bench/formats_typedetect.py in a warm office, accepting only the import filters our catalogue allows.
Correct on corpus-formats means: the filter that test_formats.py shows converting like stock, or the refusal it
expects (HWP: unsupported_type naming the format). On ../shared/corpus, (b) is compared with (a)'s decision.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from measure import DOC1, interleaved, medians, module_at, percentile  # noqa: E402

from tests.corpora import ROOT  # noqa: E402
from worker.errors import Reason, WorkerError  # noqa: E402
from worker.formats import FORMATS  # noqa: E402
from worker.sniff import sniff  # noqa: E402

SHARED = ROOT
ALLOWED = {fmt.import_filter for fmt in FORMATS.values()}
# Filters LibreOffice's detection prefers where our catalogue names a sibling that loads the same file the same way
# (checked with soffice --infilter on the corpus file: same pages, same text).
# "Office Open XML Text" is the same import code as "MS Word 2007 XML" (the names differ for export); a (b) design
# would also have to swap AutoPlay for the plain PowerPoint filter, as our catalogue does.
SAME_LOAD = {
    "DosWord": "MS_Write",
    "Text": "Text (encoded)",
    "MS Excel 5.0/95": "MS Excel 95",
    "Office Open XML Text": "MS Word 2007 XML",
    "Impress MS PowerPoint 2007 XML AutoPlay": "Impress MS PowerPoint 2007 XML",
    "Impress MS PowerPoint 2007 XML VBA AutoPlay": "Impress MS PowerPoint 2007 XML VBA",
}
DOCX_REPEATS = 2000


def manifest(name: str) -> list[Path]:
    with (SHARED / name / "MANIFEST.tsv").open(newline="") as f:
        return [SHARED / name / row["relative_path"] for row in csv.DictReader(f, delimiter="\t")]


def sniff_decision(module: ModuleType, path: Path) -> tuple[str, float]:
    """(a): the import filter, or "refused:<reason>", and the milliseconds it took."""
    started = time.perf_counter()
    try:
        decision = module.sniff(path, path.name).import_filter
    except WorkerError as exc:
        decision = f"refused:{exc.reason.value}"
    return decision, (time.perf_counter() - started) * 1000


def type_detection(paths: list[Path]) -> dict[Path, tuple[str, float]]:
    """(b): LibreOffice's preferred filter for each file, or "refused:unsupported_type" when not allow-listed."""
    result = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "formats_typedetect.py")],
                            input="".join(f"{p}\n" for p in paths), capture_output=True, text=True, check=True)
    answers: dict[Path, tuple[str, float]] = {}
    for line in result.stdout.splitlines():
        path, _type, filter_name, ms = line.split("\t")
        filter_name = SAME_LOAD.get(filter_name, filter_name)
        answers[Path(path)] = (filter_name if filter_name in ALLOWED else "refused:unsupported_type", float(ms))
    return answers


def expected_on_formats_corpus(path: Path) -> str:
    return "refused:unsupported_type" if path.suffix == ".hwp" else sniff(path, path.name).import_filter


def docx_side_by_side() -> tuple[float, float]:
    """Median ms to identify tests/data/sample.docx (1 page) with main's sniffer and this one, interleaved."""
    import worker.sniff as current

    with tempfile.TemporaryDirectory() as tmp:
        sniffers = {"before": module_at("main", "worker/sniff.py", Path(tmp)), "after": current}
    times = medians(interleaved(DOCX_REPEATS, list(sniffers),
                                lambda label, _: sniff_decision(sniffers[label], DOC1)[1]))
    return times["before"], times["after"]


def main() -> None:
    import worker.sniff as current

    formats = manifest("corpus-formats")
    corpus = manifest("corpus")
    detected = type_detection(formats + corpus)
    sniffed = {p: sniff_decision(current, p) for p in formats + corpus}
    expected = {p: expected_on_formats_corpus(p) for p in formats}

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f}"

    print("| design | corpus-formats: correct of", len(formats), "| corpus: same decision as (a), of", len(corpus),
          "| corpus: files (a) refuses that (b) would load | ms per file, median / p95 |")
    print("|---|---:|---:|---:|---:|")
    a_ok = sum(sniffed[p][0] == expected[p] for p in formats)
    print(f"| (a) byte sniffer | {a_ok} | {len(corpus)} | 0 | {ms([sniffed[p][1] for p in formats + corpus])} |")
    b_ok = sum(detected[p][0] == expected[p] for p in formats)
    b_same = sum(detected[p][0] == sniffed[p][0] for p in corpus)
    b_loads = sum(sniffed[p][0].startswith("refused") and not detected[p][0].startswith("refused") for p in corpus)
    print(f"| (b) TypeDetection + allow-list | {b_ok} | {b_same} | {b_loads} |"
          f" {ms([detected[p][1] for p in formats + corpus])} (+ the byte checks of (a) for safety) |")
    print()
    print("Disagreements (file: expected or (a) -> (b)):")
    for p in formats:
        if detected[p][0] != expected[p]:
            print(f"- corpus-formats `{p.name}`: {expected[p]} -> {detected[p][0]}")
    for p in corpus:
        if detected[p][0] != sniffed[p][0]:
            print(f"- corpus `{p.relative_to(SHARED / 'corpus')}`: {sniffed[p][0]} -> {detected[p][0]}")
    print()
    before, after = docx_side_by_side()
    print(f"Identification of tests/data/sample.docx (1 page), median of {DOCX_REPEATS} interleaved calls:"
          f" main {before:.3f} ms, this branch {after:.3f} ms, difference {after - before:+.3f} ms")
    assert Reason.UNSUPPORTED_TYPE  # the decisions above use its value


if __name__ == "__main__":
    main()
