"""The stress campaign's tools: a restartable `worker serve`, an RSS sampler, and the tally of what ended where.

Reuses the chain helpers of tests/integration/test_push_chain.py (Worker, envelope, post, upload shapes) and adds
what a campaign needs on top: a worker that can be SIGKILLed and restarted on the same port (so the emulator's
redeliveries reach the new process), logs that survive restarts, /proc sampling of the worker plus every process
of its office process groups, and a report that says what was sent, what ended where, and the peak memory.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from google.cloud import storage

from tests.corpora import CORPUS, need_corpus
from tests.integration.test_push_chain import (
    DIRECT_BUCKET,
    IN_BUCKET,
    OUT_BUCKET,
    PREFIX,
    PROJECT,
    Worker,
    chain_worker_env,
    json_log_lines,
)
from tests.processes import office_pids_under, processes_mentioning
from worker import emulators
from worker.config import DEFAULT_SUFFIXES, Config, OfficeSettings
from worker.job import output_names
from worker.storage import ObjectInfo, Store, emulator_client

PAGE = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("STRESS_RESULTS", REPO / "run" / "stress-results.jsonl"))
# A corpus file LibreOffice 7.4 takes 12.7 s on an idle 2-vCPU machine and 20 s+ under load (docs/corpus-tally.md,
# docs/stress.md): poison under a short timeout, a slow but good document under a long one; plain bursts leave it out.
SLOW_CORPUS_DOC = "jodconverter/OpenDocument-v1.1.odt"
# Every process started for the campaign gets this address-space limit: a memory bomb that slips past the
# conversion timeout must hit a wall inside its own process, never the machine's OOM killer.
ADDRESS_SPACE_LIMIT = 10 * 2**30
ACKED = {102, 200, 201, 202, 204}


# -- the worker, restartable on one port ----------------------------------------------------------------------------


class StressWorker:
    """`python -m worker serve` on a fixed port; `kill()` is SIGKILL (a crash), `start()` a fresh incarnation."""

    def __init__(self, log_dir: Path, work_dir: Path, gcs_url: str, **env: str) -> None:
        self.log_dir, self.work_dir, self.gcs_url = log_dir, work_dir, gcs_url
        self.port = emulators.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.incarnations: list[emulators.Proc] = []
        self.store = Store(emulator_client(gcs_url), timeout_s=30, retry_deadline_s=60)
        self.client: storage.Client = emulator_client(gcs_url)

    @property
    def proc(self) -> emulators.Proc:
        return self.incarnations[-1]

    def as_chain_worker(self) -> Worker:
        """The test_push_chain view (for envelope() and post())."""
        return Worker(self.proc, self.work_dir, self.gcs_url, self.store, self.client)

    def start(self, ready_timeout_s: float = 120.0) -> None:
        log_dir = self.log_dir / f"worker-{len(self.incarnations)}"  # spawn() truncates: one dir per incarnation
        proc = emulators.start_worker(
            log_dir, self.gcs_url, output_bucket=OUT_BUCKET, input_buckets=f"{IN_BUCKET},{DIRECT_BUCKET}",
            port=self.port, env=chain_worker_env(self.work_dir, **self.env),
            wrapper=["prlimit", f"--as={ADDRESS_SPACE_LIMIT}", "--"], ready_timeout_s=ready_timeout_s,
        )
        self.incarnations.append(proc)

    def kill(self) -> None:
        """SIGKILL the worker process alone, as the kernel's OOM killer or a crash would."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(10)

    def office_processes(self) -> list[int]:
        """Every live process of the office process groups: launcher, oosplash, soffice.bin (cmdline has WORK_DIR)."""
        return processes_mentioning(self.work_dir)

    def soffice_pids(self) -> list[int]:
        return office_pids_under(self.work_dir)

    def stop(self) -> list[int]:
        """SIGTERM (drain), SIGKILL after the grace; return office processes that survived (and SIGKILL them)."""
        if self.incarnations:  # a start that never got ready was already stopped by start_worker
            emulators.stop(self.proc, grace_s=30.0)
        deadline = time.monotonic() + 5
        while self.office_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        return kill_pids(self.office_processes())

    def log_lines(self) -> list[dict[str, Any]]:
        """Every incarnation's JSON log lines, oldest first."""
        return [line for proc in self.incarnations for line in json_log_lines(proc.log_path)]

    def answers(self) -> list[dict[str, Any]]:
        """One line per push request the worker answered."""
        return [e for e in self.log_lines() if e.get("logger") == "worker.push" and "status" in e]

    def metric(self, name: str) -> dict[str, float]:
        """Samples of one metric family from /metrics of the current incarnation, keyed by their label string."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key[len(name):]] = float(value)
        return out


def kill_pids(pids: Iterable[int]) -> list[int]:
    """SIGKILL each PID (ours: children of a worker we started); return those that were alive."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def count_entries(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


# -- memory sampling ------------------------------------------------------------------------------------------------


class Sampler:
    """Every 0.2 s: RSS of the worker and of every process of its office groups; fds and threads of the worker."""

    def __init__(self, worker: StressWorker, interval_s: float = 0.2) -> None:
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
            soffice = max((rss_bytes(p) for p in self.worker.soffice_pids()), default=0)
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


def upload_all(worker: StressWorker, bucket: str, items: list[tuple[str, Path | bytes]],
               threads: int = 8) -> list[Upload]:
    """Create-only uploads as fast as fake-gcs-server takes them."""

    def one(item: tuple[str, Path | bytes]) -> Upload:
        name, src = item
        sent = time.time()
        info = worker.store.create(bucket, name, src, content_type="application/octet-stream", metadata={})
        assert info is not None, f"gs://{bucket}/{name} already existed"
        return Upload(name, info.generation, sent)

    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, items))


def outputs(worker: StressWorker, prefix: str) -> dict[str, storage.Blob]:
    return {b.name: b for b in worker.client.list_blobs(OUT_BUCKET, prefix=prefix)}


def ended(worker: StressWorker, uploads: list[Upload], prefix: str) -> dict[str, list[storage.Blob]]:
    """For each upload, the outputs (PDF or failure record) that belong to its generation."""
    config = Config(output_bucket=OUT_BUCKET, office=OfficeSettings())
    found = outputs(worker, prefix)
    out: dict[str, list[storage.Blob]] = {}
    for up in uploads:
        names = output_names(config, up.name)
        blobs = [found[n] for n in names if n in found]
        out[up.name] = [b for b in blobs if (b.metadata or {}).get("source-generation") == str(up.generation)]
    return out


def wait_all_ended(worker: StressWorker, uploads: list[Upload], prefix: str, timeout_s: float,
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


def tally(worker: StressWorker, uploads: list[Upload], prefix: str, report: Report,
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


def chain_env_info(worker: StressWorker) -> dict[str, str]:
    return {k: v for k, v in worker.env.items()}


def start_emulator_chain(pubsub: emulators.Proc, log_dir: Path) -> tuple[emulators.Proc, str]:
    """fake-gcs-server publishing finalize events of IN_BUCKET/incoming/ to a fresh topic; returns (gcs, topic)."""
    import uuid

    topic = f"finalize-{uuid.uuid4().hex[:8]}"
    gcs = emulators.start_fake_gcs(log_dir, pubsub_host=pubsub.host, project=PROJECT, topic=topic,
                                   event_bucket=IN_BUCKET, event_prefix=PREFIX)
    for name in (IN_BUCKET, DIRECT_BUCKET, OUT_BUCKET):
        emulators.create_bucket(gcs.url, name)
    return gcs, topic


def subscribe(pubsub: emulators.Proc, topic: str, worker: StressWorker) -> None:
    """Call after the worker is up and before the first upload (events for a topic without subscription vanish)."""
    import uuid

    emulators.create_topic_and_push_subscription(pubsub.host, PROJECT, topic, f"push-{uuid.uuid4().hex[:8]}",
                                                 f"{worker.url}/", ack_deadline_s=600)


def info_of(worker: StressWorker, bucket: str, name: str) -> ObjectInfo | None:
    return worker.store.get_output(bucket, name)
