"""Operations, end to end: a real `worker serve` against fake-gcs-server, pushed to by hand (AUTH_MODE=off).

Metrics (values, `promtool check metrics`, a real Prometheus scraping them), /health and /ready telling the truth
while offices are busy, restarting and draining, one JSON log line per job with the trace of the request, and a
graceful SIGTERM. Every process started here is stopped by its own PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import storage

from tests.harness.metrics_scrape import value
from tests.harness.waiting import wait_for
from tests.harness.worker_process import WorkerProcess
from tests.integration.conftest_office import make_long_docx
from worker import emulators
from worker.config import OfficeSettings
from worker.server import container_memory_limit_mb

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
PROJECT = "ops-project"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLOUD_TRACE_ID = "105445aa7843bc8bf206b12000100000"
READY_TIMEOUT_S = 90.0


# -- helpers ---------------------------------------------------------------------------------------


def start_worker(tmp_path: Path, gcs_url: str, in_bucket: str, out_bucket: str, **env: str) -> WorkerProcess:
    """`python -m worker serve` as production runs it (JSON logs on a pipe), then wait for /ready."""
    name = uuid.uuid4().hex[:8]
    worker = WorkerProcess(tmp_path / f"logs-{name}", tmp_path / f"work-{name}", gcs_url, output_bucket=out_bucket,
                           input_buckets=(in_bucket,), env={"POOL_SIZE": "1", **env})
    return worker.start(READY_TIMEOUT_S)


def stop_worker(worker: WorkerProcess) -> None:
    # Belt and braces: an office left behind by a failed test must not outlive it (only ours, by PID).
    worker.stop(grace_s=15.0)


@pytest.fixture
def worker_factory(tmp_path: Path, fake_gcs: emulators.Proc) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(**env: str) -> WorkerProcess:
        in_bucket, out_bucket = new_bucket(fake_gcs.url), new_bucket(fake_gcs.url)
        worker = start_worker(tmp_path, fake_gcs.url, in_bucket, out_bucket, **env)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        stop_worker(worker)


def new_bucket(gcs_url: str) -> str:
    name = f"ops-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(gcs_url, name)
    return name


def upload(client: storage.Client, bucket: str, name: str, data: bytes) -> dict[str, Any]:
    """Upload and return the object resource GCS would put in the notification's data."""
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data)
    blob.reload()
    return {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(blob.generation),
            "size": str(blob.size), "contentType": blob.content_type or "application/octet-stream"}


def envelope(item: dict[str, Any], message_id: str, *, delivery_attempt: int | None = None,
             publish_time: datetime | None = None) -> dict[str, Any]:
    """A wrapped push body shaped like tests/data/pubsub-push-gcs-finalize.json."""
    return emulators.push_envelope(item, message_id, subscription=f"projects/{PROJECT}/subscriptions/convert-push",
                                   delivery_attempt=delivery_attempt, publish_time=publish_time)


def push(worker: WorkerProcess, body: dict[str, Any], headers: dict[str, str] | None = None,
         timeout: float = 120) -> requests.Response:
    return worker.post(body, headers, timeout)


# -- one worker, three deliveries: a conversion, a failure, an ignored event -------------------------


@pytest.fixture(scope="module")
def observed_run(tmp_path_factory: pytest.TempPathFactory, fake_gcs: emulators.Proc,
                 gcs_client: storage.Client) -> Iterator[tuple[WorkerProcess, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("ops-observed")
    in_bucket, out_bucket = new_bucket(fake_gcs.url), new_bucket(fake_gcs.url)
    worker = start_worker(tmp, fake_gcs.url, in_bucket, out_bucket,
                          METRICS_PORT=str(emulators.free_port()), GOOGLE_CLOUD_PROJECT=PROJECT)
    try:
        good = upload(gcs_client, in_bucket, "reports/q1.docx", (DATA / "sample.docx").read_bytes())
        bad = upload(gcs_client, in_bucket, "reports/broken.docx", b"PK\x03\x04 this is not a zip at all")
        other = upload(gcs_client, in_bucket, "reports/photo.png", b"\x89PNG\r\n\x1a\n")
        published = datetime.now(UTC)
        r_good = push(worker, envelope(good, "1001", delivery_attempt=1, publish_time=published),
                      headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        r_bad = push(worker, envelope(bad, "1002", delivery_attempt=3),
                     headers={"X-Cloud-Trace-Context": f"{CLOUD_TRACE_ID}/1;o=1"})
        r_other = push(worker, envelope(other, "1003", delivery_attempt=1))
        yield worker, {"good": good, "bad": bad, "other": other,
                       "status": (r_good.status_code, r_bad.status_code, r_other.status_code)}
    finally:
        stop_worker(worker)


@pytest.fixture(scope="module")
def observed(observed_run: tuple[WorkerProcess, dict[str, Any]]) -> WorkerProcess:
    """One worker that got a conversion, a failure and an ignored event."""
    return observed_run[0]


@pytest.fixture(scope="module")
def pushed(observed_run: tuple[WorkerProcess, dict[str, Any]]) -> dict[str, Any]:
    """What `observed` was pushed (the object resources) and the status of each answer."""
    return observed_run[1]


def test_metrics_after_a_conversion_a_failure_and_an_ignored_event(
    observed: WorkerProcess, pushed: dict[str, Any], gcs_client: storage.Client
):
    assert pushed["status"] == (204, 204, 204), observed.log_path.read_text()
    body, m = observed.scrape()

    # jobs by outcome and reason: exactly the three deliveries
    jobs = {dict(k[1])["outcome"] + "/" + dict(k[1])["reason"]: v for k, v in m.items()
            if k[0] == "worker_jobs_total"}
    assert jobs.get("converted/ok") == 1, jobs
    assert jobs.get("ignored/suffix") == 1, jobs
    failed = [key for key in jobs if key.startswith("failed/")]
    assert len(failed) == 1 and jobs[failed[0]] == 1, jobs
    assert failed[0] in ("failed/corrupt", "failed/unsupported_type"), jobs
    assert sum(jobs.values()) == 3, jobs
    assert value(m, "worker_http_requests_total", code="204") == 3

    # stage histograms: the conversion went through every stage; the failure stopped after the download
    for stage in ("queue_wait", "convert", "upload"):
        assert value(m, "worker_stage_duration_seconds_count", stage=stage) == 1, stage
        assert value(m, "worker_stage_duration_seconds_bucket", stage=stage, le="+Inf") == 1, stage
    assert value(m, "worker_stage_duration_seconds_count", stage="download") == 2
    convert_s = value(m, "worker_stage_duration_seconds_sum", stage="convert")
    assert 0 < convert_s < 30
    assert value(m, "worker_job_duration_seconds_count") == 3

    # end-to-end lag from publish time: one conversion, and it took more than the conversion itself
    assert value(m, "worker_end_to_end_lag_seconds_count") == 1
    lag = value(m, "worker_end_to_end_lag_seconds_sum")
    assert convert_s <= lag < 60

    # bytes: input of the conversion, output = the stored PDF's size
    pdf = gcs_client.bucket(observed.out_bucket).get_blob("reports/q1.pdf")
    assert pdf is not None and pdf.size
    assert value(m, "worker_output_bytes_total") == pdf.size
    assert value(m, "worker_input_bytes_total") >= int(pushed["good"]["size"])

    # delivery attempts 1, 3, 1
    assert value(m, "worker_delivery_attempt_count") == 3
    assert value(m, "worker_delivery_attempt_sum") == 5
    assert value(m, "worker_delivery_attempt_bucket", le="1.0") == 2

    # the pool, read at scrape time
    assert value(m, "worker_office_pool_size") == 1
    assert value(m, "worker_office_instances", state="idle") == 1
    assert value(m, "worker_office_instances", state="busy") == 0
    assert value(m, "worker_office_busy") == 0
    assert value(m, "worker_office_queue_depth") == 0
    assert value(m, "worker_office_rss_bytes", office="0") > 10 * 2**20
    for reason in ("exit", "timeout", "max_conversions", "memory", "crash"):
        assert value(m, "worker_office_restarts_total", reason=reason) == 0
    build = [k for k in m if k[0] == "worker_build_info"]
    assert len(build) == 1 and m[build[0]] == 1 and dict(build[0][1])["version"]
    assert value(m, "worker_draining") == 0
    # the memory budget the worker checked at start: its ceiling, and this machine's cgroup limit if it has one
    ceiling_mb = OfficeSettings(pool_size=1).memory_ceiling_mb  # POOL_SIZE=1, the other settings default
    assert value(m, "worker_memory_budget_bytes", kind="ceiling") == ceiling_mb * 2**20
    limit_mb = container_memory_limit_mb()
    if limit_mb is None:
        assert ("worker_memory_budget_bytes", frozenset({("kind", "limit")})) not in m
    else:
        assert value(m, "worker_memory_budget_bytes", kind="limit") == limit_mb * 2**20

    # every name has the prefix; promtool finds nothing to complain about
    names = {k[0] for k in m}
    assert all(n.startswith("worker_") for n in names), sorted(n for n in names if not n.startswith("worker_"))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (make system installs the Debian package prometheus)"
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (check, body)


def test_the_metrics_port_serves_the_same_registry(observed: WorkerProcess):
    assert observed.metrics_url is not None
    _, main = observed.scrape()
    _, side = observed.scrape(observed.metrics_url)
    for key in (("worker_jobs_total", frozenset({("outcome", "converted"), ("reason", "ok")})),
                ("worker_office_pool_size", frozenset())):
        assert side[key] == main[key]


def test_a_real_prometheus_scrapes_the_worker(observed: WorkerProcess, tmp_path: Path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not installed (make system installs the Debian package prometheus)"
    assert observed.metrics_url is not None
    target = observed.metrics_url.split("://", 1)[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: docworker\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = emulators.free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        result: list[dict[str, Any]] = []

        def converted_seen() -> bool:
            nonlocal result
            assert proc.poll() is None, log_path.read_text()
            try:
                resp = requests.get(f"{api}/query", params={"query": 'worker_jobs_total{outcome="converted"}'},
                                    timeout=2)
            except requests.RequestException:
                return False
            if resp.status_code != 200:
                return False
            result = resp.json()["data"]["result"]
            return bool(result)

        wait_for(f"Prometheus to scrape {target}; log:\n{log_path.read_text()}", converted_seen, 30, every_s=0.25)
        assert len(result) == 1, result
        assert result[0]["metric"]["job"] == "docworker"
        assert result[0]["metric"]["instance"] == target
        assert result[0]["metric"]["reason"] == "ok"
        assert float(result[0]["value"][1]) == 1.0
        # per-office series keep their own label: no clash with the target's `instance` (no exported_instance)
        rss = requests.get(f"{api}/query", params={"query": "worker_office_rss_bytes"}, timeout=2).json()
        series = rss["data"]["result"]
        assert [r["metric"].get("office") for r in series] == ["0"], series
        assert all("exported_instance" not in r["metric"] and float(r["value"][1]) > 0 for r in series), series
        targets = requests.get(f"{api}/targets", timeout=2).json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_job_log_line_is_json_with_the_job_fields_and_the_trace(
    observed: WorkerProcess, pushed: dict[str, Any]
):
    lines = observed.log_lines(strict=True)  # json.loads on every line: nothing but JSON objects on stdout
    assert all({"severity", "message"} <= set(line) for line in lines), lines
    by_id = {line.get("message_id"): line for line in lines if line.get("message_id")}

    good = by_id["1001"]
    assert good["severity"] == "INFO"
    assert good["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert good["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert good["logging.googleapis.com/trace_sampled"] is True
    assert good["bucket"] == observed.in_bucket
    assert good["object"] == "reports/q1.docx"
    assert good["generation"] == pushed["good"]["generation"]
    assert good["delivery_attempt"] == 1
    assert good["outcome"] == "converted" and good["reason"] == "ok"
    assert set(good["durations"]) == {"download", "queue_wait", "convert", "upload"}
    assert all(isinstance(v, float | int) and v >= 0 for v in good["durations"].values())
    assert good["status"] == 204
    assert "reports/q1.docx" in good["message"]

    bad = by_id["1002"]
    assert bad["severity"] == "ERROR"
    assert bad["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{CLOUD_TRACE_ID}"
    assert bad["logging.googleapis.com/spanId"] == f"{1:016x}"
    assert bad["outcome"] == "failed" and bad["reason"] in ("corrupt", "unsupported_type")
    assert bad["delivery_attempt"] == 3 and bad["generation"] == pushed["bad"]["generation"]
    assert "download" in bad["durations"]

    other = by_id["1003"]
    assert other["outcome"] == "ignored" and other["reason"] == "suffix"
    assert "logging.googleapis.com/trace" not in other  # no trace header, no trace field
    for line in (good, bad, other):
        for key in ("bucket", "object", "generation", "message_id", "delivery_attempt", "outcome", "reason",
                    "durations"):
            assert key in line, (key, line)


# -- health and readiness under load, restarts and drain --------------------------------------------


def test_health_answers_while_every_office_is_busy_and_ready_follows_restarts(
    worker_factory: Callable[..., WorkerProcess], gcs_client: storage.Client
):
    worker = worker_factory(POOL_SIZE="2")
    doc = (DATA / "sample-100pages.docx").read_bytes()
    # 4 pushes: 2 converting + 2 waiting never reach the default queue limit (2 x POOL_SIZE), so none gets a 429
    items = [upload(gcs_client, worker.in_bucket, f"long/{i}.docx", doc) for i in range(4)]
    # /ready is true as soon as one office answers; wait for both, or the first one would take all the work
    wait_for("both offices idle", lambda: [i["state"] for i in worker.ready()[1]["instances"]] == ["idle", "idle"],
             60, every_s=0.1)

    latencies: list[float] = []
    busy_samples = 0
    with ThreadPoolExecutor(max_workers=len(items)) as executor:
        futures = [executor.submit(push, worker, envelope(item, f"busy-{i}")) for i, item in enumerate(items)]
        # wait until both offices are converting, then sample /health until the conversions are done
        wait_for("both offices busy", lambda: sum(i["state"] == "busy" for i in worker.ready()[1]["instances"]) == 2,
                 30, every_s=0.02)
        while not all(f.done() for f in futures):
            t = time.monotonic()
            resp = requests.get(f"{worker.url}/health", timeout=5)
            latencies.append(time.monotonic() - t)
            assert resp.status_code == 200
            status, body = worker.ready()
            if sum(i["state"] == "busy" for i in body["instances"]) == 2:
                busy_samples += 1
                assert status == 200 and body["ready"] is True  # busy offices are serving, not unready
            time.sleep(0.01)
        statuses = [f.result().status_code for f in futures]
    assert statuses == [204] * len(items), worker.log_path.read_text()
    assert busy_samples >= 10 and len(latencies) >= 20, (busy_samples, len(latencies))
    # A figure for the log, not an assertion (timings flake on a loaded machine); that probes never queue behind
    # pushes is shown structurally in tests/unit/test_server.py.
    print(f"/health: {len(latencies)} samples, {busy_samples} with every office busy, "
          f"max {max(latencies) * 1000:.1f} ms")

    # every office killed -> /ready false with per-instance state, /health still fine; back to true after restart
    offices = worker.office_pids()
    assert len(offices) == 2, offices
    for pid in offices:
        os.kill(pid, signal.SIGKILL)
    wait_for("/ready to go false", lambda: worker.ready()[0] == 503, 10, every_s=0.02)
    status, body = worker.ready()
    assert status == 503 and body["ready"] is False and body["draining"] is False
    assert len(body["instances"]) == 2
    assert {i["state"] for i in body["instances"]} <= {"restarting", "starting"}, body
    assert requests.get(f"{worker.url}/health", timeout=10).status_code == 200
    wait_for("/ready to come back", lambda: worker.ready()[0] == 200, 60, every_s=0.1)
    _, m = worker.scrape()
    assert value(m, "worker_office_restarts_total", reason="exit") == 2
    assert sorted(worker.office_pids()) != sorted(offices)


def test_sigterm_finishes_the_job_in_flight_refuses_new_pushes_and_stops_every_office(
    worker_factory: Callable[..., WorkerProcess], gcs_client: storage.Client
):
    worker = worker_factory(POOL_SIZE="1", SHUTDOWN_GRACE_S="8")
    doc = (DATA / "sample-100pages.docx").read_bytes()
    long_item = upload(gcs_client, worker.in_bucket, "drain/long.docx", doc)
    late_item = upload(gcs_client, worker.in_bucket, "drain/late.docx", (DATA / "sample.docx").read_bytes())
    assert worker.office_pids()

    answers: dict[str, requests.Response] = {}
    in_flight = threading.Thread(target=lambda: answers.update(long=push(worker, envelope(long_item, "long"))))
    in_flight.start()
    wait_for("the office to be busy", lambda: worker.ready()[1]["instances"][0]["state"] == "busy", 30,
             every_s=0.02)

    signalled = time.monotonic()
    os.kill(worker.proc.pid, signal.SIGTERM)
    wait_for("/ready to go false on SIGTERM", lambda: worker.ready()[0] == 503, 10, every_s=0.02)
    status, body = worker.ready()
    assert status == 503 and body["draining"] is True and body["ready"] is False
    late = push(worker, envelope(late_item, "late"), timeout=10)
    assert late.status_code == 503
    assert requests.get(f"{worker.url}/health", timeout=10).status_code == 200  # alive while draining

    in_flight.join(30)
    assert answers["long"].status_code == 204, worker.log_path.read_text()  # the job in flight was acked
    assert worker.proc.popen.wait(timeout=worker.grace_s + 30) == 0  # a hang guard; the log shows the drain order
    print(f"exited {time.monotonic() - signalled:.2f} s after SIGTERM (grace {worker.grace_s:g} s)")
    assert gcs_client.bucket(worker.out_bucket).get_blob("drain/long.pdf") is not None
    assert gcs_client.bucket(worker.out_bucket).get_blob("drain/late.pdf") is None
    assert worker.office_processes() == [], "an office process outlived the worker"

    lines = worker.log_lines(strict=True)
    messages = [line["message"] for line in lines]
    assert "stopped" in messages
    draining = next(line for line in lines if line["message"] == "draining")
    assert draining["in_flight"] == 1 and draining["grace_s"] == 8  # the signal came during the conversion
    long_line = next(line for line in lines if line.get("message_id") == "long")
    assert long_line["outcome"] == "converted" and long_line["status"] == 204
    refused = [line for line in lines if line.get("status") == 503]
    assert refused and refused[0]["severity"] == "WARNING"


def test_the_documented_alert_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    """docs/operations.md's alert block is what operators paste: promtool must accept it as it stands."""
    text = (REPO / "docs" / "operations.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    rules = [b for b in blocks if b.startswith("groups:")]
    assert len(rules) == 1, "expected one ```yaml block of alert rules"
    path = tmp_path / "rules.yml"
    path.write_text(rules[0])
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (make system installs the Debian package prometheus)"
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("worker_memory_budget_bytes", "worker_office_restarts_total", "worker_jobs_total"):
        assert name in rules[0]


def test_a_push_beyond_the_queue_is_answered_429_at_once_and_the_queue_never_grows(
    worker_factory: Callable[..., WorkerProcess], gcs_client: storage.Client, tmp_path: Path
) -> None:
    """Backpressure over real HTTP: one office busy, one push waiting (QUEUE_SIZE=1), the next is refused with 429
    queue_full while both are still in flight, and nothing is lost: the first two end as PDFs."""
    worker = worker_factory(POOL_SIZE="1", QUEUE_SIZE="1")
    long_doc = make_long_docx(tmp_path / "long.docx", 500).read_bytes()
    long_item = upload(gcs_client, worker.in_bucket, "bp/long.docx", long_doc)
    waiting_item = upload(gcs_client, worker.in_bucket, "bp/waiting.docx", (DATA / "sample.docx").read_bytes())
    extra_item = upload(gcs_client, worker.in_bucket, "bp/extra.docx", (DATA / "sample.docx").read_bytes())
    with ThreadPoolExecutor(max_workers=2) as executor:
        running = executor.submit(push, worker, envelope(long_item, "bp-1"))
        wait_for("the office to be busy", lambda: worker.ready()[1]["instances"][0]["state"] == "busy", 30,
             every_s=0.02)
        waiting = executor.submit(push, worker, envelope(waiting_item, "bp-2"))
        wait_for("a push to queue", lambda: value(worker.scrape()[1], "worker_office_queue_depth") == 1, 30,
                 every_s=0.02)
        refused = push(worker, envelope(extra_item, "bp-3"))
        assert refused.status_code == 429, refused.text
        assert not running.done() and not waiting.done(), "the refusal must not wait for the office"
        assert value(worker.scrape()[1], "worker_office_queue_depth") == 1
        assert [running.result().status_code, waiting.result().status_code] == [204, 204]
    out = gcs_client.bucket(worker.out_bucket)
    assert out.get_blob("bp/long.pdf") is not None and out.get_blob("bp/waiting.pdf") is not None
    assert out.get_blob("bp/extra.pdf") is None  # not converted, not acked: Pub/Sub redelivers it
    # refused before the body is even parsed (no download, no auth round trip), so the line has no message_id
    refusals = [line for line in worker.log_lines(strict=True) if line.get("status") == 429]
    assert [(r["outcome"], r["reason"]) for r in refusals] == [("retry", "queue_full")], refusals
