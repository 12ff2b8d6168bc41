"""Scenario 6: thousands of conversions in a row through `worker serve` (envelopes POSTed straight to it).

Office RSS stays bounded by the restart policy (MAX_CONVERSIONS_PER_INSTANCE, MAX_OFFICE_RSS_MB); the worker's open
files and threads do not grow.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.harness.chain import DIRECT_BUCKET, IN_BUCKET, OUT_BUCKET, envelope
from tests.integration.conftest_office import DATA
from tests.stress.harness import Report, Sampler, ceiling_mb, stress_worker, tally, upload_all
from worker import emulators

pytestmark = [pytest.mark.emulators, pytest.mark.office]

SAMPLES = ("sample.docx", "sample.xlsx", "sample.pptx", "sample.odt", "sample.doc", "sample.rtf", "sample.ods",
           "sample.xls", "sample.ppt", "sample-10pages.docx")
MAX_RSS_MB = 512


@pytest.mark.parametrize(("n", "recycle"), [pytest.param(200, 40, id="ci"),
                                            pytest.param(2000, 250, id="full", marks=pytest.mark.slow)])
def test_long_run(n: int, recycle: int, logs: Path, tmp_path: Path, record: list[Report]) -> None:
    gcs = emulators.start_fake_gcs(logs)
    for name in (IN_BUCKET, DIRECT_BUCKET, OUT_BUCKET):
        emulators.create_bucket(gcs.url, name)
    worker = stress_worker(logs, tmp_path / "work", gcs.url, MAX_CONVERSIONS_PER_INSTANCE=str(recycle),
                           MAX_OFFICE_RSS_MB=str(MAX_RSS_MB), CONVERSION_TIMEOUT_S="60")
    report = Report("long-run", f"{n} conversions, recycle every {recycle}", n,
                    ceiling_mb=ceiling_mb(2, MAX_RSS_MB))
    record.append(report)
    try:
        worker.start()
        items: list[tuple[str, Path | bytes]] = [(f"long/{i:05d}-{s}", DATA / s)
                                                 for i, s in enumerate(SAMPLES[i % len(SAMPLES)] for i in range(n))]
        uploads = upload_all(worker, DIRECT_BUCKET, items)
        session = requests.Session()

        def post(i: int) -> int:
            up = uploads[i]
            body = envelope(worker, DIRECT_BUCKET, up.name, up.generation, f"l-{i}")
            up.sent_at = time.time()
            return session.post(f"{worker.url}/", json=body, timeout=300).status_code

        t0 = time.monotonic()
        with Sampler(worker, interval_s=0.5) as sampler, ThreadPoolExecutor(2) as ex:
            statuses = list(ex.map(post, range(n)))
            report.wall_s = round(time.monotonic() - t0, 1)
        warm = [s for s in sampler.samples if s[0] - sampler.samples[0][0] > report.wall_s * 0.1]
        first, last = warm[0], sampler.samples[-1]
        report.extra = {"worker_fds": [first[3], last[3]], "worker_threads": [first[4], last[4]],
                        "worker_rss_mb": [round(first[1] / 2**20), round(last[1] / 2**20)],
                        "throughput_per_s": round(n / report.wall_s, 1)}
        tally(worker, uploads, "long/", report, sampler, check_pdfs=n <= 500)
    finally:
        try:
            report.orphans_at_end = len(worker.stop())
        finally:
            emulators.stop(gcs)
    assert set(statuses) == {204}, {s: statuses.count(s) for s in set(statuses)}
    assert report.lost == 0 and report.duplicates == 0 and report.corrupt == 0, report.text()
    assert report.pdfs == n, report.text()
    assert report.restarts.get("max_conversions", 0) >= n // recycle - 2, report.restarts
    # The restart policy bounds each office: its limit plus one document's growth before the check runs.
    assert report.peak_soffice_rss_mb < MAX_RSS_MB + 256, report.text()
    assert report.peak_rss_mb < report.ceiling_mb, report.text()
    fds, threads = report.extra["worker_fds"], report.extra["worker_threads"]
    assert fds[1] <= fds[0] + 8, fds
    assert threads[1] <= threads[0] + 4, threads
    assert report.orphans_at_end == 0
