"""The synchronous Gotenberg route (POST /forms/libreoffice/convert), side by side in one run with the in-process warm
conversion and the tutorial's cold `soffice --convert-to`; then a burst of 100 clients while pushes keep coming.

    .venv/bin/python bench/sync_route.py [--rounds 40] [--requests 300] [--burst 100] [--json out.json]

  route     a 1-page docx POSTed to a running `worker serve` (POOL_SIZE=3, SYNC_MAX_OFFICES=2: one office is kept
            for pushes), one kept-alive connection per client, timed request start -> whole PDF read.
  warm      worker.conversion.convert_file on an in-process OfficePool of 1 (sniff, temp dir, convert, PDF check):
            the same conversion without HTTP.
  cold      `soffice --headless --convert-to pdf` as a new process per document, its profile initialised once
            (the tutorial's best case).
  1. latency: `rounds` rounds of route (1 client) / warm / (every 8th round) cold, interleaved; p50 of each.
  2. throughput: `requests` 1-page conversions through the route by 2 concurrent clients; conversions/s, and the
     ratio to the cold path's 1/median.
  3. burst: `burst` clients at once (one request each, twice), while one client pushes a 1-page docx every 0.2 s:
     every answer must be 200, or 429/503 with Retry-After; nothing may hang (client timeout 120 s); every push 204.

Every process started here (fake-gcs-server, the worker and its offices, the bench pool, each soffice) is stopped
by its own PID before exit. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from measure import DOC1, cold_soffice, convert_timed, percentile, soffice_binary, timed

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worker import emulators  # noqa: E402
from worker.config import OfficeSettings  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.storage import Store, emulator_client  # noqa: E402

ROUTE = "/forms/libreoffice/convert"
IN_BUCKET, OUT_BUCKET = "sync-in", "sync-out"
TARGET_RATE, TARGET_VS_COLD, TARGET_P50_MS = 25.0, 20.0, 10.0
BODY = DOC1.read_bytes()


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

    def start(self) -> None:
        logs = self.work / "logs"
        self.gcs = emulators.start_fake_gcs(logs)
        for bucket in (IN_BUCKET, OUT_BUCKET):
            emulators.create_bucket(self.gcs.url, bucket)
        self.store = Store(emulator_client(self.gcs.url), timeout_s=30, retry_deadline_s=60)
        self.worker = emulators.start_worker(
            logs, self.gcs.url, output_bucket=OUT_BUCKET, input_buckets=IN_BUCKET,
            env={"WORK_DIR": str(self.work / "worker"), "POOL_SIZE": "3", "SYNC_MAX_OFFICES": "2",
                 "LOG_FORMAT": "json"})
        self.pool = OfficePool(OfficeSettings(work_dir=self.work / "bare", pool_size=1))
        self.pool.start()
        self.cold(DOC1)  # initialise the cold path's profile once

    def stop(self) -> None:
        if self.worker is not None:
            emulators.stop(self.worker, grace_s=20.0)
        if self.pool is not None:
            self.pool.stop()
        if self.gcs is not None:
            emulators.stop(self.gcs)

    # -- the three sides ---------------------------------------------------------------------------------------

    def route(self, session: requests.Session) -> tuple[int, float, requests.Response]:
        assert self.worker is not None
        t0 = time.perf_counter()
        r = session.post(self.worker.url + ROUTE, files={"files": ("sample.docx", BODY)}, timeout=120)
        _ = r.content
        return r.status_code, time.perf_counter() - t0, r

    def warm(self) -> float:
        assert self.pool is not None
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            return convert_timed(self.pool, DOC1, Path(tmp))

    def cold(self, doc: Path) -> float:
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            return timed(lambda: cold_soffice(self.soffice, self.cold_profile, doc, Path(tmp)))

    def push(self, session: requests.Session) -> tuple[int, float]:
        """One push of a 1-page docx (object uploaded first, not timed): push received -> 204."""
        assert self.store is not None and self.gcs is not None and self.worker is not None
        self.seq += 1
        name = f"push/{self.seq:05d}.docx"
        self.store.create(IN_BUCKET, name, DOC1, content_type="application/octet-stream", metadata={})
        item = requests.get(f"{self.gcs.url}/storage/v1/b/{IN_BUCKET}/o/{quote(name, safe='')}", timeout=10).json()
        body = emulators.push_envelope(item, str(self.seq), subscription="projects/p/subscriptions/s")
        t0 = time.perf_counter()
        r = session.post(self.worker.url + "/", json=body, timeout=120)
        return r.status_code, time.perf_counter() - t0


def latency(bench: Bench, rounds: int) -> dict[str, Any]:
    session = requests.Session()
    for _ in range(3):  # warm-up: first requests pay imports and connection set-up
        bench.route(session)
        bench.warm()
    route_s, warm_s, cold_s = [], [], []
    for r in range(rounds):
        sides = ["route", "warm"] if r % 2 == 0 else ["warm", "route"]
        for side in sides:
            if side == "route":
                status, seconds, _ = bench.route(session)
                assert status == 200, status
                route_s.append(seconds)
            else:
                warm_s.append(bench.warm())
        if r % 8 == 0:
            cold_s.append(bench.cold(DOC1))
    p50 = {k: statistics.median(v) for k, v in (("route", route_s), ("warm", warm_s), ("cold", cold_s))}
    return {"p50_s": p50, "p90_route_s": percentile(route_s, 0.9), "samples": {"route": len(route_s),
            "warm": len(warm_s), "cold": len(cold_s)}}


def throughput(bench: Bench, total: int, clients: int = 2) -> dict[str, Any]:
    todo = list(range(total))
    lock = threading.Lock()
    statuses: Counter[int] = Counter()

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            status, _, _ = bench.route(session)
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"clients": clients, "requests": total, "seconds": elapsed, "per_s": statuses[200] / elapsed,
            "statuses": dict(statuses)}


def burst(bench: Bench, clients: int, waves: int = 2) -> dict[str, Any]:
    results: list[tuple[int, float, bool]] = []
    errors: list[str] = []
    lock = threading.Lock()
    pushes: list[tuple[int, float]] = []
    stop = threading.Event()

    def pusher() -> None:
        session = requests.Session()
        while not stop.is_set():
            pushes.append(bench.push(session))
            time.sleep(0.2)

    def client(start: threading.Barrier) -> None:
        session = requests.Session()
        start.wait()
        try:
            status, seconds, r = bench.route(session)
            retry_after = "Retry-After" in r.headers
            with lock:
                results.append((status, seconds, retry_after))
        except Exception as exc:  # a hang (timeout) or a reset: a result of the bench, reported
            with lock:
                errors.append(repr(exc))

    push_thread = threading.Thread(target=pusher)
    push_thread.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    for _ in range(waves):
        barrier = threading.Barrier(clients)
        threads = [threading.Thread(target=client, args=(barrier,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)
    stop.set()
    push_thread.join()
    statuses = Counter(status for status, _, _ in results)
    unexpected = [s for s in statuses if s not in (200, 429, 503)]
    missing_retry_after = sum(1 for status, _, ra in results if status in (429, 503) and not ra)
    return {"clients": clients, "waves": waves, "seconds": elapsed, "statuses": dict(statuses),
            "max_s": max((s for _, s, _ in results), default=0.0), "errors": errors, "unexpected": unexpected,
            "missing_retry_after": missing_retry_after,
            "pushes": dict(Counter(status for status, _ in pushes)),
            "push_max_s": max((s for _, s in pushes), default=0.0),
            "push_p50_s": statistics.median([s for _, s in pushes]) if pushes else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    bench = Bench(work)
    load_before = os.getloadavg()
    try:
        bench.start()
        lat = latency(bench, args.rounds)
        tp = throughput(bench, args.requests)
        bu = burst(bench, args.burst)
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    p50 = lat["p50_s"]
    ratio = tp["per_s"] * p50["cold"]
    report = {"latency": lat, "throughput": tp, "burst": bu, "load_before": load_before, "load_after": load_after}
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f}")
    print(f"p50 route {p50['route'] * 1000:.1f} ms | warm {p50['warm'] * 1000:.1f} ms | "
          f"route - warm {(p50['route'] - p50['warm']) * 1000:+.1f} ms (target <= {TARGET_P50_MS:g}) | "
          f"cold {p50['cold'] * 1000:.0f} ms")
    print(f"throughput, 2 clients: {tp['per_s']:.1f} conv/s (target >= {TARGET_RATE:g}) = {ratio:.1f}x cold "
          f"(target >= {TARGET_VS_COLD:g}); statuses {tp['statuses']}")
    print(f"burst {bu['clients']} clients x {bu['waves']}: {bu['statuses']} in {bu['seconds']:.1f} s, slowest "
          f"{bu['max_s']:.2f} s, errors {len(bu['errors'])}, other statuses {bu['unexpected']}, 429/503 without "
          f"Retry-After {bu['missing_retry_after']}; pushes {bu['pushes']} p50 {bu['push_p50_s'] * 1000:.0f} ms "
          f"max {bu['push_max_s'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    ok = not bu["errors"] and not bu["unexpected"] and not bu["missing_retry_after"] \
        and set(bu["pushes"]) <= {204}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
