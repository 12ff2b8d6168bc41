"""What every bench script measures with: the documents, the order of the sides, the client loop, the statistics.

Scripts import it as `from measure import ...` (bench/ is first on sys.path when one runs as a script). It imports
only the standard library at the top, so bench/perf.py's driver and bench/formats_typedetect.py (Debian's
/usr/bin/python3) can use it; worker code is imported inside the functions that convert, from whichever tree the
calling script put first on sys.path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from worker.office import OfficePool

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
DOC1, DOC10, DOC100 = DATA / "sample.docx", DATA / "sample-10pages.docx", DATA / "sample-100pages.docx"
FAMILY_DOCS = {"text": DOC1, "spreadsheet": DATA / "sample.xlsx", "presentation": DATA / "sample.pptx"}
# The mixed workload: the nine sample formats and the 10-page docx.
MIXED = [DATA / f"sample.{ext}" for ext in ("docx", "doc", "odt", "rtf", "xlsx", "xls", "ods", "pptx", "ppt")] + [DOC10]

S = TypeVar("S")
T = TypeVar("T")
K = TypeVar("K")

# -- the cold path: stock soffice, one process per document, as the tutorial runs it ------------------------------


def soffice_binary() -> str:
    for candidate in (shutil.which("soffice"), shutil.which("libreoffice"), "/usr/lib/libreoffice/program/soffice"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("bench: soffice not found")


def cold_soffice(soffice: str, profile: Path, src: Path, outdir: Path) -> Path:
    """One cold `soffice --convert-to pdf` of src into outdir; nothing of it outlives the call; the PDF's path."""
    cmd = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
           "--convert-to", "pdf", "--outdir", str(outdir), str(src)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    pdf = outdir / (src.stem + ".pdf")
    if proc.returncode != 0 or not pdf.exists():
        raise SystemExit(f"bench: cold soffice failed ({proc.returncode}) on {src}")
    return pdf


# -- statistics ---------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1): always one of the samples, so p99 of 100 is the second-worst."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def medians(samples: Mapping[K, Sequence[float]]) -> dict[K, float]:
    """The median of each side's samples."""
    return {key: statistics.median(values) for key, values in samples.items()}


# -- the order of the sides ----------------------------------------------------------------------------------------


def alternate(sides: Sequence[S], r: int) -> list[S]:
    """A, B, C in even rounds and C, B, A in odd ones: drift in machine load hits both ends alike."""
    return list(sides) if r % 2 == 0 else list(sides)[::-1]


def rotate(sides: Sequence[S], r: int) -> list[S]:
    """Round r starts with side r (mod n): no side always runs right after another."""
    k = r % len(sides)
    return list(sides[k:]) + list(sides[:k])


def interleaved(rounds: int, sides: Sequence[S], measure: Callable[[S, int], T],
                order: Callable[[Sequence[S], int], list[S]] = alternate) -> dict[S, list[T]]:
    """`measure(side, round)` for every side in every round, sides in `order`; the samples per side."""
    samples: dict[S, list[T]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in order(sides, r):
            samples[side].append(measure(side, r))
    return samples


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn()` took."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- conversions, as a client of the worker sends them -------------------------------------------------------------

_outputs = itertools.count(1)  # next() on a count is atomic in CPython: one PDF name per request, across threads


def convert_timed(pool: OfficePool, src: Path, jobs: Path) -> float:
    """Seconds of one `convert_file` (sniff, private temp dir, convert, PDF check) into `jobs`; the PDF is removed."""
    from worker.conversion import convert_file

    out = jobs / f"{next(_outputs)}.pdf"
    t0 = time.perf_counter()
    convert_file(pool, src, out, src.name, jobs)
    elapsed = time.perf_counter() - t0
    out.unlink()
    return elapsed


def drain(pool: OfficePool, docs: Sequence[Path], threads: int,
          jobs: Path) -> tuple[list[tuple[Path, float, float]], list[Exception]]:
    """`threads` clients take the documents from the end of the list, one request each, like concurrent pushes.

    Returns (document, start, seconds) per request that succeeded, and the failures: a failed request is a result
    of the bench, not a crash of it (the caller decides whether it may happen).
    """
    todo = list(docs)
    lock = threading.Lock()
    done: list[tuple[Path, float, float]] = []
    failures: list[Exception] = []

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                src = todo.pop()
            start = time.perf_counter()
            try:
                done.append((src, start, convert_timed(pool, src, jobs)))
            except Exception as exc:
                print(f"bench: request failed: {exc!r}", file=sys.stderr)
                failures.append(exc)

    clients = [threading.Thread(target=client) for _ in range(threads)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return done, failures


# -- setup ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the one place bench servers listen)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def module_at(revision: str, path: str, scratch: Path) -> ModuleType:
    """`path` (e.g. worker/sniff.py) as it is at git `revision`, imported under a name of its own beside the current
    one: the "before" of a side-by-side run in one process. Its own imports come from the current tree."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{path}"], capture_output=True, text=True,
                            check=True).stdout
    name = Path(path).stem + "_at_" + re.sub(r"\W", "_", revision)
    file = scratch / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
