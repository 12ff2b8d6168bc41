"""Turn one local file into one PDF: sniff, stage in a private temp dir, convert on the pool, check the result.

Shared by `worker convert` and the push job so both refuse and convert exactly the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from worker.errors import Reason, WorkerError
from worker.office import ConversionTiming, Converter
from worker.sniff import Sniffed, sniff


@dataclass(frozen=True)
class Converted:
    sniffed: Sniffed
    timing: ConversionTiming
    pdf_bytes: int


def convert_file(
    pool: Converter, src: Path, dst: Path, name_hint: str, work_root: Path | None = None,
    sniffed: Sniffed | None = None,
) -> Converted:
    """Convert src to dst (a PDF); raise WorkerError with a reason from the closed set on anything else.

    Every job gets its own temp dir with fixed names, so no object name ever becomes a path, and a lock file left
    by an office killed mid-write can never block a later conversion. Pass `sniffed` when the caller already has it.
    """
    sniffed = sniffed or sniff(src, name_hint)
    with tempfile.TemporaryDirectory(prefix="job-", dir=work_root) as tmp:
        staged = Path(tmp) / ("input" + sniffed.extension)
        out = Path(tmp) / "output.pdf"
        try:
            staged.symlink_to(src.resolve())
        except OSError:
            shutil.copyfile(src, staged)
        timing = pool.convert(staged, out, sniffed.import_filter)
        check_pdf(out)
        size = out.stat().st_size
        shutil.move(str(out), dst)
    return Converted(sniffed, timing, size)


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
