"""Turn one local file into one PDF: sniff, stage in a private temp dir, convert on the pool, check the result.

Shared by `worker convert` and the push job so both refuse and convert exactly the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from worker import pdf_checks
from worker.errors import Reason, WorkerError
from worker.office import STOCK_EXPORT, ConversionTiming, Converter, Export
from worker.options import DEFAULT, Passwords, PdfOptions
from worker.pdf_checks import CheckFailure
from worker.sniff import Sniffed, decrypt_legacy, sniff

NO_PASSWORDS = Passwords()
STOCK_FILTER_DATA = DEFAULT.to_filter_data()  # what "nothing asked" exports; compared, never sent


class VerificationFailed(WorkerError):
    """The exported PDF does not carry what its options asked for: a permanent failure naming each check."""

    def __init__(self, failures: list[CheckFailure]) -> None:
        self.failures = failures
        super().__init__(Reason.VERIFICATION_FAILED, "the PDF does not meet the options asked for: "
                         + "; ".join(f"{f.reason.value} ({f.detail})" for f in failures))


@dataclass(frozen=True)
class Converted:
    sniffed: Sniffed
    timing: ConversionTiming
    pdf_bytes: int


def convert_file(
    pool: Converter, src: Path, dst: Path, name_hint: str, work_root: Path | None = None,
    sniffed: Sniffed | None = None, *, options: PdfOptions = DEFAULT, passwords: Passwords = NO_PASSWORDS,
    expected_pages: int | None = None,
) -> Converted:
    """Convert src to dst (a PDF); raise WorkerError with a reason from the closed set on anything else.

    Every job gets its own temp dir with fixed names, so no object name ever becomes a path, and a lock file left
    by an office killed mid-write can never block a later conversion. Pass `sniffed` when the caller already has it
    (sniffed with `password=passwords.input_password`). Options other than the defaults are exported with their
    FilterData and then verified in the PDF (VerificationFailed); the defaults cost nothing extra.
    """
    sniffed = sniffed or sniff(src, name_hint, password=passwords.input_password)
    export = export_for(options, passwords)
    with tempfile.TemporaryDirectory(prefix="job-", dir=work_root) as tmp:
        staged = Path(tmp) / ("input" + sniffed.extension)
        out = Path(tmp) / "output.pdf"
        if sniffed.encrypted and sniffed.kind == "ppt" and passwords.input_password:
            decrypt_legacy(src, passwords.input_password, staged)  # LibreOffice 7.4 cannot open it (sniff.py)
            export = replace(export, load_password=None)
        else:
            try:
                staged.symlink_to(src.resolve())
            except OSError:
                shutil.copyfile(src, staged)
        timing = pool.convert(staged, out, sniffed.import_filter, export)
        check_pdf(out)
        if export.filter_data is not None:
            failures = pdf_checks.check_pdf(out, options, passwords, expected_pages=expected_pages)
            if failures:
                raise VerificationFailed(failures)
        size = out.stat().st_size
        shutil.move(str(out), dst)
    return Converted(sniffed, timing, size)


def export_for(options: PdfOptions, passwords: Passwords) -> Export:
    """The stock export unless the FilterData differs from the stock one (an option, or output passwords however
    they came: secrets or Gotenberg's literal fields); no FilterData means LibreOffice's configured defaults."""
    filter_data = options.to_filter_data(passwords)
    exported = filter_data != STOCK_FILTER_DATA
    if not exported and passwords.input_password is None and options.update_indexes is None:
        return STOCK_EXPORT
    return Export(filter_data if exported else None, passwords.input_password, options.update_indexes)


def check_pdf(path: Path) -> None:
    """LibreOffice can report success without writing a usable file; never ship one that is not a PDF."""
    try:
        with path.open("rb") as f:
            head = f.read(5)
            f.seek(-1024, 2) if path.stat().st_size > 1024 else f.seek(0)
            tail = f.read()
    except OSError as exc:
        raise WorkerError(Reason.CONVERSION_FAILED, "LibreOffice produced no output file") from exc
    if head != b"%PDF-" or b"%%EOF" not in tail:
        raise WorkerError(Reason.CONVERSION_FAILED, "LibreOffice produced an incomplete or non-PDF file")
