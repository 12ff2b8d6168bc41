"""End-to-end latency of one push, side by side with the bare warm conversion and the tutorial's cold path.

    .venv/bin/python bench/e2e.py [--rounds 15] [--docs 1,10,100] [--json out.json]

Per document, each round runs the three measurements back to back (interleaved, so machine noise hits all three):

  e2e   POST a wrapped push envelope to a running `worker serve` (pool of 1, fake-gcs-server on loopback) over one
        kept-alive connection, as Pub/Sub's pusher keeps its connections, and time request start -> 204. The
        worker answers 204 only after the PDF is stored, so this is push received -> PDF durable: parse,
        download, sniff, convert, create-only upload (first delivery: no idempotency reads).
  bare  the bare warm conversion: stock `unoserver` (the PyPI server, its own profile, nothing of ours) converting
        the same file on a warm office, one XML-RPC `convert` call per document with the import filter given and
        no index update, as the worker asks (its own client would add an `info()` round trip per call).
  proto the same server with one change, loads with Hidden=True: the conversion of the issue's prototype
        ("unoserver with Hidden=True, no pool, no metrics"). Without Hidden, LibreOffice also builds a view.
  warm  our own warm conversion in this process: a started OfficePool (pool of 1) and
        worker.conversion.convert_file (sniff, private temp dir, convert, PDF check), no storage, no HTTP.
  cold  the tutorial's way (zdenulo/gcp-docx2pdf, cloud_run_pubsub): download from GCS,
        `soffice --headless --convert-to pdf` as a new process, upload the PDF. Its profile is initialised
        once before the run (the tutorial's ~/.config/libreoffice persists between requests too), so this is
        its best case. `cold-cli` is the
        conversion process alone.

Every process started here (fake-gcs-server, the worker and its offices, the bench pool, stock unoserver, each
soffice) is stopped by its own PID/process group before exit. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xmlrpc.client import ServerProxy

import requests
from measure import DOC1, DOC10, DOC100, cold_soffice, convert_timed, medians, rotate, soffice_binary

REPO = Path(__file__).resolve().parent.parent
# The worker tree under test (bench/perf.py runs this script against an older tree too); documents come from REPO.
TREE = Path(os.environ.get("DOCWORKER_TREE") or REPO).resolve()
sys.path.insert(0, str(TREE))

from worker import emulators  # noqa: E402
from worker.config import OfficeSettings  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.storage import Store, emulator_client  # noqa: E402

DOCS = {"1": DOC1, "10": DOC10, "100": DOC100}
IN_BUCKET, OUT_BUCKET = "bench-in", "bench-out"
WARMUP_ROUNDS = 2
TARGET_VS_BARE = 1.1
TARGET_VS_COLD = 12.0


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.gcs: emulators.Proc | None = None
        self.worker: emulators.Proc | None = None
        self.pool: OfficePool | None = None
        self.store: Store | None = None
        self.soffice = soffice_binary()
        self.cold_profile = work / "cold-profile"
        self.seq = 0
        self.conn: http.client.HTTPConnection | None = None
        self.unoserver: emulators.Proc | None = None
        self.proto: emulators.Proc | None = None

    # -- setup / teardown ----------------------------------------------------------------------------------------

    def start(self) -> None:
        logs = self.work / "logs"
        self.gcs = emulators.start_fake_gcs(logs)
        for bucket in (IN_BUCKET, OUT_BUCKET):
            emulators.create_bucket(self.gcs.url, bucket)
        self.store = Store(emulator_client(self.gcs.url), timeout_s=30, retry_deadline_s=60)
        port = emulators.free_port()
        env = dict(os.environ)
        env.pop("PUBSUB_EMULATOR_HOST", None)
        env.update(HOST="127.0.0.1", PORT=str(port), OUTPUT_BUCKET=OUT_BUCKET, INPUT_BUCKETS=IN_BUCKET,
                   AUTH_MODE="off", STORAGE_EMULATOR_HOST=self.gcs.url, WORK_DIR=str(self.work / "worker"),
                   POOL_SIZE="1", LOG_FORMAT="json", PYTHONUNBUFFERED="1", PYTHONPATH=str(TREE))
        self.worker = emulators.spawn("worker", [sys.executable, "-m", "worker", "serve"], logs,
                                      f"http://127.0.0.1:{port}", env)
        self.pool = OfficePool(OfficeSettings(work_dir=self.work / "bare", pool_size=1))
        self.pool.start()
        deadline = time.monotonic() + 120
        while requests_status(f"{self.worker.url}/ready") != 200:
            if self.worker.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: worker not ready; see {self.worker.log_path}")
            time.sleep(0.1)
        split = urlsplit(self.worker.url)
        self.conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=600)
        # Initialise the cold path's profile once, like a tutorial instance that already served a request.
        self._soffice(DOCS["1"], self.work / "cold-init")
        # its own copy: two offices on one profile would hand the cold conversions to the running one
        shutil.copytree(self.cold_profile, self.work / "unoserver-profile")
        self.unoserver = start_stock_unoserver(self.work, logs, self.work / "unoserver-profile")
        shutil.copytree(self.cold_profile, self.work / "proto-profile")
        self.proto = start_stock_unoserver(self.work, logs, self.work / "proto-profile", hidden=True)

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        for server in (self.unoserver, self.proto):
            if server is not None:
                emulators.stop(server, grace_s=5.0)
        if self.worker is not None:
            emulators.stop(self.worker, grace_s=20.0)
        if self.pool is not None:
            self.pool.stop()
        if self.gcs is not None:
            emulators.stop(self.gcs)

    # -- the three measurements ------------------------------------------------------------------------------------

    def e2e(self, doc: Path) -> tuple[float, dict[str, float]]:
        assert self.store is not None and self.worker is not None and self.gcs is not None
        self.seq += 1
        name = f"bench/{self.seq:04d}-{doc.name}"
        info = self.store.create(IN_BUCKET, name, doc, content_type="application/octet-stream", metadata={})
        assert info is not None
        item = requests.get(f"{self.gcs.url}/storage/v1/b/{IN_BUCKET}/o/{quote(name, safe='')}", timeout=10).json()
        body = json.dumps(envelope(item, str(self.seq))).encode()
        assert self.conn is not None
        t0 = time.perf_counter()
        self.conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 204:
            raise SystemExit(f"bench: push answered {resp.status}; see {self.worker.log_path}")
        return elapsed, self._worker_durations(name)

    def bare(self, doc: Path, server: emulators.Proc | None) -> float:
        """One warm conversion by a unoserver: its XML-RPC `convert`, the import filter given, no index update."""
        assert server is not None
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            out = Path(tmp) / "out.pdf"
            t0 = time.perf_counter()
            with ServerProxy(server.url, allow_none=True) as proxy:
                proxy.convert(str(doc), None, str(out), None, None, [], False, "MS Word 2007 XML")
            elapsed = time.perf_counter() - t0
            if not out.read_bytes().startswith(b"%PDF"):
                raise SystemExit("bench: stock unoserver wrote no PDF")
            return elapsed

    def warm(self, doc: Path) -> float:
        assert self.pool is not None
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            return convert_timed(self.pool, doc, Path(tmp))

    def cold(self, doc: Path) -> tuple[float, float]:
        """(download + soffice + upload, soffice alone), like the tutorial's request handler."""
        assert self.store is not None
        self.seq += 1
        name = f"cold/{self.seq:04d}-{doc.name}"
        info = self.store.create(IN_BUCKET, name, doc, content_type="application/octet-stream", metadata={})
        assert info is not None
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            src = Path(tmp) / doc.name
            client = self.store._client  # the plain library calls a tutorial handler makes, one request each
            t0 = time.perf_counter()
            client.bucket(IN_BUCKET).blob(name, generation=info.generation).download_to_filename(str(src))
            t1 = time.perf_counter()
            pdf = self._soffice(src, Path(tmp))
            t2 = time.perf_counter()
            client.bucket(OUT_BUCKET).blob(name[: -len(doc.suffix)] + ".pdf").upload_from_filename(
                str(pdf), content_type="application/pdf")
            t3 = time.perf_counter()
        return t3 - t0, t2 - t1

    def _soffice(self, src: Path, outdir: Path) -> Path:
        return cold_soffice(self.soffice, self.cold_profile, src, outdir)

    def _worker_durations(self, name: str) -> dict[str, float]:
        assert self.worker is not None
        for line in reversed(self.worker.log_path.read_text(errors="replace").splitlines()):
            if name in line and '"status"' in line:
                entry = json.loads(line)
                durations: dict[str, float] = entry.get("durations") or {}
                return {**durations, "total": float(entry.get("total_s", 0.0))}
        return {}


# Makes a stock unoserver load hidden, as the prototype did: wraps the Desktop its converter uses.
HIDDEN_PATCH = """
import unoserver.converter as c
from com.sun.star.beans import PropertyValue
_init = c.UnoConverter.__init__
class _Hidden:
    def __init__(self, d): self._d = d
    def loadComponentFromURL(self, url, target, flags, props):
        hidden = (PropertyValue(Name="Hidden", Value=True),)
        return self._d.loadComponentFromURL(url, target, flags, tuple(props) + hidden)
    def __getattr__(self, name): return getattr(self._d, name)
def _init_hidden(self, *a, **k):
    _init(self, *a, **k)
    self.desktop = _Hidden(self.desktop)
c.UnoConverter.__init__ = _init_hidden
"""


def start_stock_unoserver(work: Path, logs: Path, profile: Path, *, hidden: bool = False) -> emulators.Proc:
    """The PyPI `unoserver` server as its README runs it (hidden: loading with Hidden=True), on loopback."""
    import unoserver

    port, uno_port = emulators.free_port(), emulators.free_port()
    site = str(Path(unoserver.__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.append({site!r})\n" + (HIDDEN_PATCH if hidden else "")
            + "from unoserver.server import main; sys.exit(main())")
    (work / "unoserver-tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(work / "unoserver-tmp"), HOME=str(work))
    env.pop("PYTHONPATH", None)
    args = ["--interface", "127.0.0.1", "--port", str(port), "--uno-interface", "127.0.0.1", "--uno-port",
            str(uno_port), "--user-installation", str(profile)]
    proc = emulators.spawn("unoserver-hidden" if hidden else "unoserver", ["/usr/bin/python3", "-c", code, *args],
                           logs, f"http://127.0.0.1:{port}", env)
    deadline = time.monotonic() + 120  # it sleeps 5 s before it serves
    while True:
        try:
            with ServerProxy(proc.url, allow_none=True) as proxy:
                proxy.info()
            return proc
        except OSError:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                emulators.stop(proc)
                raise SystemExit(f"bench: stock unoserver did not start; see {proc.log_path}") from None
            time.sleep(0.2)


def requests_status(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0


def envelope(item: dict[str, Any], message_id: str) -> dict[str, Any]:
    # deploy/provision sets a dead-letter policy, so Pub/Sub numbers every delivery
    return emulators.push_envelope(item, message_id, subscription="projects/bench/subscriptions/push",
                                   delivery_attempt=1)


def measure(bench: Bench, doc: Path, rounds: int) -> dict[str, Any]:
    """Warm-up, then `rounds` interleaved rounds of e2e / bare / proto / warm / cold; medians and ratios."""
    samples: dict[str, list[float]] = {"e2e": [], "bare": [], "proto": [], "warm": [], "cold": [], "cold-cli": []}
    stages: list[dict[str, float]] = []

    def do_e2e() -> None:
        t, d = bench.e2e(doc)
        samples["e2e"].append(t)
        stages.append(d)

    def do_warm() -> None:
        samples["warm"].append(bench.warm(doc))

    def do_bare() -> None:
        samples["bare"].append(bench.bare(doc, bench.unoserver))

    def do_proto() -> None:
        samples["proto"].append(bench.bare(doc, bench.proto))

    def do_cold() -> None:
        total, cli = bench.cold(doc)
        samples["cold"].append(total)
        samples["cold-cli"].append(cli)

    steps: list[Callable[[], None]] = [do_e2e, do_bare, do_proto, do_warm, do_cold]
    for _ in range(WARMUP_ROUNDS):  # first conversions of a kind are slower on every path
        bench.e2e(doc)
        bench.bare(doc, bench.unoserver)
        bench.bare(doc, bench.proto)
        bench.warm(doc)
    for i in range(rounds):
        for step in rotate(steps, i):
            step()
    med = medians(samples)
    stage_med = {k: statistics.median(s[k] for s in stages if k in s) for k in stages[0]} if stages else {}
    return {"rounds": rounds, "median_s": med, "samples_s": samples, "worker_stage_median_s": stage_med,
            "e2e_vs_bare": med["e2e"] / med["bare"], "e2e_vs_proto": med["e2e"] / med["proto"],
            "e2e_vs_warm": med["e2e"] / med["warm"],
            "cold_vs_e2e": med["cold"] / med["e2e"],
            "cold_cli_vs_e2e": med["cold-cli"] / med["e2e"]}


def run(rounds_by_doc: dict[str, int], out_json: Path | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="docworker-bench-"))
    bench = Bench(work)
    results: dict[str, dict[str, Any]] = {}
    try:
        t_start = time.monotonic()
        bench.start()
        print(f"bench: started in {time.monotonic() - t_start:.1f} s (work dir {work})", file=sys.stderr)
        for pages, rounds in rounds_by_doc.items():
            results[pages] = measure(bench, DOCS[pages], rounds)
            print(f"bench: {pages}-page done", file=sys.stderr)
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if out_json is not None:
        out_json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"| doc | rounds | e2e push->stored | bare warm (stock unoserver) | prototype's warm (unoserver + Hidden) "
          f"| our warm `convert_file` | cold + GCS I/O | e2e / bare (target <= {TARGET_VS_BARE}) | e2e / prototype's "
          f"| e2e / our warm | cold+I/O / e2e (target >= {TARGET_VS_COLD:g}) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for pages, r in results.items():
        m = r["median_s"]
        print(f"| {pages}-page docx | {r['rounds']} | {m['e2e'] * 1000:.0f} ms | {m['bare'] * 1000:.0f} ms "
              f"| {m['proto'] * 1000:.0f} ms | {m['warm'] * 1000:.0f} ms | {m['cold'] * 1000:.0f} ms "
              f"| **{r['e2e_vs_bare']:.2f}x** | **{r['e2e_vs_proto']:.2f}x** | {r['e2e_vs_warm']:.2f}x "
              f"| **{r['cold_vs_e2e']:.1f}x** |")
    print()
    print("Worker-side stage medians (from its JSON log):")
    for pages, r in results.items():
        stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["worker_stage_median_s"].items())
        print(f"- {pages}-page: {stages}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds for the 1-page document")
    parser.add_argument("--docs", default="1,10,100", help="which documents: 1,10,100 (pages)")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    chosen = [d.strip() for d in args.docs.split(",") if d.strip()]
    # Longer documents get fewer rounds: the cold path alone costs seconds each.
    rounds = {d: max(3, args.rounds // {"1": 1, "10": 2, "100": 3}[d]) for d in chosen}
    return run(rounds, args.json)


if __name__ == "__main__":
    sys.exit(main())
