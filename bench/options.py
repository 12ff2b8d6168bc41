"""Per-document options: parse cost per push, PDF/A-2b vs stock export with soffice, and the same through our
pool (warm office, FilterData over the launcher, verification), side by side in one run.

Run from the repo root: `.venv/bin/python bench/options.py [--rounds N]`; prints a Markdown table for
docs/options.md. The soffice variants are interleaved round by round (each round starts with the next variant) on
one private copy of the hardened profile, so drift hits all of them equally; every figure is a median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import DOC1, interleaved, medians, rotate, timed  # noqa: E402

from worker.config import OfficeSettings  # noqa: E402
from worker.conversion import convert_file, export_for  # noqa: E402
from worker.office import Export, OfficePool  # noqa: E402
from worker.office.profile import build_template  # noqa: E402
from worker.options import MountedSecrets, PdfOptions, filter_json, from_metadata, resolve_passwords  # noqa: E402
from worker.sniff import sniff  # noqa: E402

SOFFICE = "/usr/lib/libreoffice/program/soffice"
SAMPLE = DOC1
# What an upload without options typically carries: nothing, or someone else's metadata.
FOREIGN = {"goog-reserved-file-mtime": "1733140000", "uploaded-by": "batch-7", "Content-Language": "en"}
BATCH = 30
WITH_OPTIONS = {"docworker-pdfa": "2b", "docworker-pages": "1-3,5", "docworker-watermark": "DRAFT",
                "docworker-quality": "80", "docworker-max-dpi": "150"}


def per_call_us(fn: object, number: int = 20_000) -> float:
    """Median over 5 repeats of the mean time per call, in microseconds."""
    runs = timeit.repeat(fn, number=number, repeat=5)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def job_additions() -> object:
    """Everything job.py and conversion.py do per push because options exist, for an upload without any."""
    options = from_metadata(FOREIGN)
    passwords = resolve_passwords(options, None)
    return (options.digest(), options.to_metadata(), options.profile, export_for(options, passwords))


def secret_reads(jobs: int = 10_000) -> tuple[float, int]:
    """(µs per job, times the secret file was read) for `jobs` jobs naming one mounted secret, rotated halfway."""
    opened = 0
    real_open = Path.open

    def counting_open(self: Path, *args: object, **kwargs: object) -> object:
        nonlocal opened
        opened += 1
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    options = from_metadata({"docworker-password-secret": "input"})
    with tempfile.TemporaryDirectory(prefix="bench-secrets-") as tmp:
        (Path(tmp) / "input").write_text("version 1\n")
        source = MountedSecrets(Path(tmp))
        Path.open = counting_open  # type: ignore[method-assign]
        try:
            t0 = time.perf_counter()
            for i in range(jobs):
                if i == jobs // 2:
                    (Path(tmp) / "input.new").write_text("version 2\n")
                    os.replace(Path(tmp) / "input.new", Path(tmp) / "input")  # a new version: new inode
                resolve_passwords(options, source)
            elapsed = time.perf_counter() - t0
        finally:
            Path.open = real_open  # type: ignore[method-assign]
    return elapsed / jobs * 1e6, opened - 1  # minus the rotation's write, which opens a file too


def parse_costs() -> list[tuple[str, float]]:
    return [
        ("no metadata: from_metadata(None)", per_call_us(lambda: from_metadata(None))),
        ("3 foreign keys, no options", per_call_us(lambda: from_metadata(FOREIGN))),
        ("no options: parse + digest", per_call_us(lambda: from_metadata(None).digest())),
        ("no options: parse + digest + FilterData", per_call_us(
            lambda: from_metadata(None).to_filter_data() and from_metadata(None).digest())),
        ("no options: all the job adds per push (parse, secrets, digest, metadata, profile, export_for)",
         per_call_us(job_additions)),
        ("5 options: parse + digest + FilterData", per_call_us(
            lambda: (o := from_metadata(WITH_OPTIONS)).digest() and o.to_filter_data(), number=5_000)),
    ]


def soffice_export(profile: Path, out: Path, target: str, sources: list[Path]) -> float:
    """One cold soffice converting `sources`; a run that misses a PDF is a failed benchmark, not a fast one."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [SOFFICE, "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
           "--convert-to", target, "--outdir", str(out), *map(str, sources)]
    elapsed = timed(lambda: subprocess.run(cmd, check=True, capture_output=True, timeout=300))
    if len(list(out.glob("*.pdf"))) != len(sources):
        raise SystemExit(f"soffice missed PDFs for {target[:60]}")
    return elapsed


def export_costs(rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(one document per process, BATCH documents per process) seconds for each variant, interleaved."""
    variants = {
        "stock `--convert-to pdf`": "pdf",
        "complete default FilterData": "pdf:writer_pdf_Export:" + filter_json(PdfOptions().to_filter_data()),
        "PDF/A-2b FilterData": "pdf:writer_pdf_Export:" + filter_json(from_metadata(
            {"docworker-pdfa": "2b"}).to_filter_data()),
    }
    with tempfile.TemporaryDirectory(prefix="bench-options-") as tmp:
        profile = Path(tmp) / "profile"
        shutil.copytree(REPO / "uno" / "profile", profile)
        copies = []
        for i in range(BATCH):
            copies.append(Path(tmp) / f"doc{i}.docx")
            shutil.copy(SAMPLE, copies[-1])
        soffice_export(profile, Path(tmp) / "warmup", "pdf", [SAMPLE])  # the first start initialises the profile

        def both(name: str, _round: int) -> tuple[float, float]:
            return (soffice_export(profile, Path(tmp) / "out", variants[name], [SAMPLE]),
                    soffice_export(profile, Path(tmp) / "out", variants[name], copies))

        samples = interleaved(rounds, list(variants), both, order=rotate)
    return ({name: [s for s, _ in runs] for name, runs in samples.items()},
            {name: [b for _, b in runs] for name, runs in samples.items()})


PDFA = from_metadata({"docworker-pdfa": "2b"})


def pool_costs(rounds: int, per_round: int = 10) -> dict[str, list[float]]:
    """Seconds per conversion on one warm office, variants interleaved round by round: the stock export (what a
    push without options runs), the PDF/A-2b FilterData alone (the export, as stock soffice does it) and the
    whole convert_file a push with pdfa=2b runs (export + verification)."""
    with tempfile.TemporaryDirectory(prefix="bench-options-pool-") as tmp:
        work = Path(tmp)
        template = build_template(OfficeSettings(work_dir=work), work / "profile-template")
        pool = OfficePool(OfficeSettings(work_dir=work / "pool", profile_template=template, pool_size=1))
        pool.start()
        import_filter = sniff(SAMPLE, SAMPLE.name).import_filter
        exports = {"pool: stock export (no options)": Export(),
                   "pool: PDF/A-2b FilterData": Export(filter_data=PDFA.to_filter_data())}

        def one(name: str, _round: int) -> float:
            runs = []
            for i in range(per_round):
                out = work / f"{name[:4]}-{i}.pdf"
                if name in exports:
                    runs.append(timed(lambda out=out: pool.convert(SAMPLE, out, import_filter, exports[name])))
                else:
                    runs.append(timed(lambda out=out: convert_file(pool, SAMPLE, out, SAMPLE.name, work, options=PDFA)))
                out.unlink()
            return statistics.median(runs)

        try:
            for name in [*exports, "pool: convert_file pdfa=2b (export + verification)"]:
                one(name, 0)  # warm every path once
            return interleaved(rounds, [*exports, "pool: convert_file pdfa=2b (export + verification)"], one,
                               order=rotate)
        finally:
            pool.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("| Per push (no office) | median per call |\n|---|---|")
    for name, us in parse_costs():
        print(f"| {name} | {us:.2f} µs |")
    per_job, reads = secret_reads()
    print(f"| a job naming a mounted secret (10,000 jobs, the secret rotated halfway): read {reads} times "
          f"| {per_job:.2f} µs |")
    single, batch = export_costs(args.rounds)
    one_doc, batch_docs = medians(single), medians(batch)
    stock = "stock `--convert-to pdf`"
    base_single, base_batch = one_doc[stock], batch_docs[stock]
    base_doc = (base_batch - base_single) / (BATCH - 1)
    print(f"\n| sample.docx, cold soffice ({args.rounds} interleaved rounds) | 1 doc/process | vs stock "
          f"| {BATCH} docs/process | per extra doc | vs stock |")
    print("|---|---|---|---|---|---|")
    for name in single:
        one, many = one_doc[name], batch_docs[name]
        per_doc = (many - one) / (BATCH - 1)
        print(f"| {name} | {one:.3f} s | {one / base_single:.2f}x | {many:.3f} s | {per_doc * 1000:.0f} ms "
              f"| {per_doc / base_doc:.2f}x |")
    stock_pdfa = (batch_docs["PDF/A-2b FilterData"] - one_doc["PDF/A-2b FilterData"]) / (BATCH - 1)
    pool = medians(pool_costs(args.rounds))
    print(f"\n| sample.docx, warm pool of 1 ({args.rounds} interleaved rounds of 10) | per doc | vs pool stock "
          "| vs soffice PDF/A-2b per extra doc |\n|---|---|---|---|")
    base_pool = pool["pool: stock export (no options)"]
    for name, seconds in pool.items():
        print(f"| {name} | {seconds * 1000:.1f} ms | {seconds / base_pool:.2f}x | {seconds / stock_pdfa:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
