"""The stress campaign's tools: a restartable `worker serve`, an RSS sampler, and the tally of what ended where.

The worker is tests/harness' WorkerProcess on the shared chain (tests/harness/chain.py): SIGKILLed and restarted on
the same port, so the emulator's redeliveries reach the new process, with logs that survive restarts. Added here:
the campaign's address-space limit, /proc sampling of the worker plus every process of its office process groups,
and a report that says what was sent, what ended where, and the peak memory.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import storage

from tests.corpora import CORPUS, need_corpus
from tests.harness.chain import OUT_BUCKET, chain_worker, upload
from tests.harness.processes import count_entries
from tests.harness.worker_process import WorkerProcess
from worker.config import DEFAULT_SUFFIXES, Config, OfficeSettings
from worker.job import output_names
from worker.office.procfs import rss_bytes

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("STRESS_RESULTS", REPO / "run" / "stress-results.jsonl"))
# A corpus file LibreOffice 7.4 takes 12.7 s on an idle 2-vCPU machine and 20 s+ under load (docs/corpus-tally.md,
# docs/stress.md): poison under a short timeout, a slow but good document under a long one; plain bursts leave it out.
SLOW_CORPUS_DOC = "jodconverter/OpenDocument-v1.1.odt"
# Every process started for the campaign gets this address-space limit: a memory bomb that slips past the
# conversion timeout must hit a wall inside its own process, never the machine's OOM killer.
ADDRESS_SPACE_LIMIT = 10 * 2**30


# -- the worker, restartable on one port ----------------------------------------------------------------------------


def stress_worker(log_dir: Path, work_dir: Path, gcs_url: str, **env: str) -> WorkerProcess:
    """The chain's worker (not started), under the campaign's address-space limit."""
    return chain_worker(log_dir, work_dir, gcs_url, wrapper=("prlimit", f"--as={ADDRESS_SPACE_LIMIT}", "--"), **env)


# -- memory sampling ------------------------------------------------------------------------------------------------


class Sampler:
    """Every 0.2 s: RSS of the worker and of every process of its office groups; fds and threads of the worker."""

    def __init__(self, worker: WorkerProcess, interval_s: float = 0.2) -> None:
        self.worker = worker
        self.interval_s = interval_s
        self.peak_total = self.peak_worker = self.peak_office = self.peak_soffice = 0
        self.samples: list[tuple[float, int, int, int, int]] = []  # (t, worker rss, office rss, fds, threads)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            pid = self.worker.proc.pid
            worker = rss_bytes(pid)
            office_pids = self.worker.office_processes()
            office = sum(rss_bytes(p) for p in office_pids)
            soffice = max((rss_bytes(p) for p in self.worker.office_pids()), default=0)
            fds, threads = count_entries(f"/proc/{pid}/fd"), count_entries(f"/proc/{pid}/task")
            self.samples.append((time.monotonic(), worker, office, fds, threads))
            self.peak_worker = max(self.peak_worker, worker)
            self.peak_office = max(self.peak_office, office)
            self.peak_soffice = max(self.peak_soffice, soffice)
            self.peak_total = max(self.peak_total, worker + office)


def ceiling_mb(pool_size: int, max_office_rss_mb: int) -> int:
    """The ceiling the worker itself documents and checks at start (OfficeSettings.memory_ceiling_mb)."""
    return OfficeSettings(pool_size=pool_size, max_rss_mb=max_office_rss_mb).memory_ceiling_mb


# -- uploads and the tally ------------------------------------------------------------------------------------------


@dataclass
class Upload:
    name: str
    generation: int
    sent_at: float  # wall clock, compared with the output's timeCreated


def corpus_docs(n: int, seed: int = 7, exclude: tuple[str, ...] = (SLOW_CORPUS_DOC,)) -> list[Path]:
    """n corpus documents (repeating when n > corpus), shuffled with a fixed seed, office suffixes only."""
    rows = (need_corpus(CORPUS) / "MANIFEST.tsv").read_text().splitlines()[1:]
    paths = [CORPUS / row.split("\t")[0] for row in rows if row.strip()]
    paths = [p for p in paths if p.suffix.lower() in DEFAULT_SUFFIXES and p.is_file()
             and str(p.relative_to(CORPUS)) not in exclude]
    paths.sort()
    rnd = random.Random(seed)
    out: list[Path] = []
    while len(out) < n:
        batch = paths[:]
        rnd.shuffle(batch)
        out.extend(batch)
    return out[:n]


def upload_all(worker: WorkerProcess, bucket: str, items: list[tuple[str, Path | bytes]],
               threads: int = 8) -> list[Upload]:
    """Create-only uploads as fast as fake-gcs-server takes them."""

    def one(item: tuple[str, Path | bytes]) -> Upload:
        name, src = item
        sent = time.time()
        return Upload(name, upload(worker, bucket, name, src).generation, sent)

    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, items))


def outputs(worker: WorkerProcess, prefix: str) -> dict[str, storage.Blob]:
    return {b.name: b for b in worker.client.list_blobs(OUT_BUCKET, prefix=prefix)}


def ended(worker: WorkerProcess, uploads: list[Upload], prefix: str) -> dict[str, list[storage.Blob]]:
    """For each upload, the outputs (PDF or failure record) that belong to its generation."""
    config = Config(output_bucket=OUT_BUCKET, office=OfficeSettings())
    found = outputs(worker, prefix)
    out: dict[str, list[storage.Blob]] = {}
    for up in uploads:
        names = output_names(config, up.name)
        blobs = [found[n] for n in names if n in found]
        out[up.name] = [b for b in blobs if (b.metadata or {}).get("source-generation") == str(up.generation)]
    return out


def wait_all_ended(worker: WorkerProcess, uploads: list[Upload], prefix: str, timeout_s: float,
                   during: Any = None) -> float:
    """Poll until every upload has an output; returns the seconds waited. `during()` runs each lap (chaos)."""
    t0 = time.monotonic()
    while True:
        done = ended(worker, uploads, prefix)
        if all(done.values()):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            return time.monotonic() - t0
        if during is not None:
            during()
        time.sleep(0.5)


@dataclass
class Report:
    scenario: str
    size: str
    sent: int
    pdfs: int = 0
    failure_records: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    both: int = 0  # a PDF AND a failure record for one generation: must never happen
    duplicates: int = 0  # outcome converted logged more than once for one (object, generation)
    duplicate_deliveries: int = 0  # redeliveries answered "already done" (fine: idempotency at work)
    corrupt: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    worker_restarts: int = 0
    office_kills: int = 0
    orphans_after_worker_kill: int = 0
    orphans_at_end: int = 0
    peak_rss_mb: float = 0.0
    peak_worker_rss_mb: float = 0.0
    peak_office_rss_mb: float = 0.0
    peak_soffice_rss_mb: float = 0.0
    ceiling_mb: int = 0
    p50_s: float = 0.0
    p99_s: float = 0.0
    max_s: float = 0.0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"[{self.scenario} / {self.size}] sent {self.sent} in {self.wall_s:.1f} s"]
        fr = sum(self.failure_records.values())
        lines.append(f"  ended: {self.pdfs} PDFs, {fr} failure records {dict(self.failure_records)}; "
                     f"lost {self.lost}, both {self.both}, duplicates {self.duplicates} "
                     f"(redeliveries answered as already done: {self.duplicate_deliveries}), corrupt {self.corrupt}")
        lines.append(f"  answers {dict(sorted(self.statuses.items()))}; office restarts {dict(self.restarts)}; "
                     f"office kills {self.office_kills}; worker restarts {self.worker_restarts}")
        lines.append(f"  peak RSS {self.peak_rss_mb:.0f} MB (worker {self.peak_worker_rss_mb:.0f}, office groups "
                     f"{self.peak_office_rss_mb:.0f}, largest soffice.bin {self.peak_soffice_rss_mb:.0f}); "
                     f"ceiling {self.ceiling_mb} MB")
        lines.append(f"  latency upload->stored p50 {self.p50_s:.2f} s, p99 {self.p99_s:.2f} s, max {self.max_s:.2f} s")
        if self.orphans_after_worker_kill or self.orphans_at_end:
            lines.append(f"  office processes alive after the worker's SIGKILL: {self.orphans_after_worker_kill}; "
                         f"at the end: {self.orphans_at_end}")
        if self.extra:
            lines.append(f"  {json.dumps(self.extra, sort_keys=True, default=str)}")
        return "\n".join(lines)

    def save(self) -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        record = asdict(self) | {"at": datetime.now(UTC).isoformat(timespec="seconds")}
        with RESULTS.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def tally(worker: WorkerProcess, uploads: list[Upload], prefix: str, report: Report,
          sampler: Sampler | None = None, check_pdfs: bool = True) -> dict[str, list[storage.Blob]]:
    """Fill `report` from the output bucket, the worker's JSON log and the sampler; returns what ended where."""
    done = ended(worker, uploads, prefix)
    latencies = []
    sent = {u.name: u for u in uploads}
    for name, blobs in done.items():
        kinds = {"pdf" if b.name.endswith(".pdf") else "record" for b in blobs}
        if not blobs:
            report.lost += 1
        elif kinds == {"pdf", "record"}:
            report.both += 1
        for b in blobs:
            latencies.append(b.time_created.timestamp() - sent[name].sent_at)
            if b.name.endswith(".pdf"):
                report.pdfs += 1
            else:
                reason = json.loads(b.download_as_bytes()).get("reason", "?")
                report.failure_records[reason] = report.failure_records.get(reason, 0) + 1
    if check_pdfs:
        pdfs = [b for blobs in done.values() for b in blobs if b.name.endswith(".pdf")]
        with ThreadPoolExecutor(4) as ex:
            report.corrupt = sum(1 for ok in ex.map(pdf_is_whole, pdfs) if not ok)
    answers = worker.answers()
    names = set(sent)
    ours = [a for a in answers if a.get("object") in names]
    report.statuses = dict(Counter(str(a["status"]) for a in answers))
    converted = Counter((a["object"], a.get("generation")) for a in ours if a.get("outcome") == "converted")
    report.duplicates = sum(n - 1 for n in converted.values() if n > 1)
    report.duplicate_deliveries = sum(1 for a in ours if a.get("outcome") == "duplicate")
    restarts: Counter[str] = Counter()
    for e in worker.log_lines():
        msg = str(e.get("message", ""))
        # a restart after the fact, or a planned recycle where a warm spare took over (both are restarts)
        if msg.startswith("restarting office") or " replaced by its spare: " in msg:
            restarts[msg.rsplit(":", 1)[-1].strip()] += 1
    report.restarts = dict(restarts)
    report.worker_restarts = len(worker.incarnations) - 1
    latencies.sort()
    report.p50_s, report.p99_s = round(percentile(latencies, 50), 3), round(percentile(latencies, 99), 3)
    report.max_s = round(latencies[-1], 3) if latencies else 0.0
    if sampler is not None:
        report.peak_rss_mb = round(sampler.peak_total / 2**20, 1)
        report.peak_worker_rss_mb = round(sampler.peak_worker / 2**20, 1)
        report.peak_office_rss_mb = round(sampler.peak_office / 2**20, 1)
        report.peak_soffice_rss_mb = round(sampler.peak_soffice / 2**20, 1)
    return done


def pdf_is_whole(blob: storage.Blob) -> bool:
    """A stored PDF is complete: the header, an %%EOF trailer, and pypdf can read every page count."""
    from io import BytesIO

    from pypdf import PdfReader

    data = blob.download_as_bytes()
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-2048:]:
        return False
    try:
        return len(PdfReader(BytesIO(data)).pages) > 0
    except Exception:
        return False
