"""Metrics with a fresh registry per test, the pool read at scrape time, and the /health /ready /metrics routes."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.harness import web_app
from tests.harness.metrics_scrape import samples_of, value
from worker.config import Config, OfficeSettings
from worker.job import Job, JobResult, Outcome
from worker.metrics import CONTENT_TYPE, STAGES, Metrics
from worker.office import RestartReason, State
from worker.office.pool import InstanceStatus
from worker.web import Lifecycle

ENVELOPES = Path(__file__).resolve().parents[1] / "data" / "envelopes"

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@dataclass
class FakePool:
    """What the collector and the routes read from the pool; the states are set by each test."""

    states: list[State] = field(default_factory=lambda: [State.IDLE, State.BUSY])
    queue_depth: int = 0
    restarts: Counter[str] = field(default_factory=Counter)
    is_ready: bool = True
    calls: int = 0
    sandbox_layers: dict[str, bool] = field(default_factory=lambda: {"network": True, "filesystem": True,
                                                                     "user": False, "profile": True})

    @property
    def size(self) -> int:
        return len(self.states)

    def status(self) -> list[InstanceStatus]:
        self.calls += 1
        return [InstanceStatus(index=i, state=s, pid=1000 + i, conversions=3 * i, rss_bytes=(i + 1) * 100 * 2**20,
                               seconds_since_ok=0.5, restarts=i) for i, s in enumerate(self.states)]

    def ready(self) -> bool:
        return self.is_ready


def converted(**durations: float) -> JobResult:
    return JobResult(Outcome.CONVERTED, "ok", output="gs://out/a.pdf", input_bytes=1000, output_bytes=5000,
                     durations=durations or {"download": 0.02, "queue_wait": 0.0, "convert": 0.3, "upload": 0.04})


# -- Metrics ---------------------------------------------------------------------------------------


def test_a_fresh_registry_has_every_family_with_the_prefix_and_no_job_yet():
    metrics = Metrics(CollectorRegistry(), FakePool())
    s = samples_of(metrics.exposition().decode())
    assert all(name.startswith("worker_") for name, _ in s)
    for stage in STAGES:  # stage series exist from the start, so rate() never sees a gap
        assert value(s, "worker_stage_duration_seconds_count", stage=stage) == 0
    assert not [k for k in s if k[0] == "worker_jobs_total"]
    build = [k for k in s if k[0] == "worker_build_info"]
    assert len(build) == 1 and {lbl for lbl, _ in build[0][1]} == {"version", "python"}


def test_observe_counts_by_outcome_and_reason_and_fills_the_histograms():
    metrics = Metrics(CollectorRegistry(), FakePool())
    metrics.observe(converted(), 204, NOW - timedelta(seconds=2), NOW, 1, total_s=0.5)
    metrics.observe(JobResult(Outcome.FAILED, "corrupt", durations={"download": 0.01}), 204, NOW, NOW, 3)
    metrics.observe(JobResult(Outcome.IGNORED, "suffix"), 204, NOW - timedelta(seconds=1), NOW, None)
    metrics.observe(JobResult(Outcome.RETRY, "queue_full"), 429, None, NOW, 2)
    s = samples_of(metrics.exposition().decode())

    assert value(s, "worker_jobs_total", outcome="converted", reason="ok") == 1
    assert value(s, "worker_jobs_total", outcome="failed", reason="corrupt") == 1
    assert value(s, "worker_jobs_total", outcome="ignored", reason="suffix") == 1
    assert value(s, "worker_jobs_total", outcome="retry", reason="queue_full") == 1
    assert value(s, "worker_stage_duration_seconds_count", stage="download") == 2
    assert value(s, "worker_stage_duration_seconds_count", stage="convert") == 1
    assert value(s, "worker_stage_duration_seconds_sum", stage="convert") == pytest.approx(0.3)
    assert value(s, "worker_stage_duration_seconds_bucket", stage="convert", le="0.25") == 0
    assert value(s, "worker_stage_duration_seconds_bucket", stage="convert", le="0.5") == 1
    # lag only for stored PDFs, from the publish time
    assert value(s, "worker_end_to_end_lag_seconds_count") == 1
    assert value(s, "worker_end_to_end_lag_seconds_sum") == pytest.approx(2.0)
    assert value(s, "worker_input_bytes_total") == 1000
    assert value(s, "worker_output_bytes_total") == 5000
    assert value(s, "worker_delivery_attempt_count") == 3  # None (no dead-letter policy) is not an attempt
    assert value(s, "worker_delivery_attempt_sum") == 6
    assert value(s, "worker_http_requests_total", code="204") == 3
    assert value(s, "worker_http_requests_total", code="429") == 1
    assert value(s, "worker_job_duration_seconds_count") == 1  # only where the caller timed a job


def test_the_memory_budget_is_exported_with_the_limit_only_when_there_is_one():
    metrics = Metrics(CollectorRegistry())
    metrics.set_memory_budget(2496, None)
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_memory_budget_bytes", kind="ceiling") == 2496 * 2**20
    assert ("worker_memory_budget_bytes", frozenset({("kind", "limit")})) not in s
    metrics.set_memory_budget(2496, 3072)
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_memory_budget_bytes", kind="limit") == 3072 * 2**20


def test_a_publish_time_in_the_future_is_not_a_negative_lag():
    metrics = Metrics(CollectorRegistry())
    metrics.observe(converted(), 204, NOW + timedelta(seconds=5), NOW, None)
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_end_to_end_lag_seconds_sum") == 0


def test_the_pool_is_read_at_scrape_time():
    pool = FakePool(states=[State.IDLE, State.IDLE])
    metrics = Metrics(CollectorRegistry(), pool)
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_office_instances", state="idle") == 2
    assert value(s, "worker_office_busy") == 0

    pool.states = [State.BUSY, State.RESTARTING]
    pool.queue_depth = 3
    pool.restarts.update({RestartReason.TIMEOUT.value: 2, RestartReason.MEMORY.value: 1})
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_office_instances", state="busy") == 1
    assert value(s, "worker_office_instances", state="restarting") == 1
    assert value(s, "worker_office_instances", state="idle") == 0
    assert value(s, "worker_office_busy") == 1
    assert value(s, "worker_office_queue_depth") == 3
    assert value(s, "worker_office_pool_size") == 2
    assert value(s, "worker_office_rss_bytes", office="1") == 200 * 2**20
    assert value(s, "worker_office_instance_conversions", office="1") == 3
    assert value(s, "worker_office_restarts_total", reason="timeout") == 2
    assert value(s, "worker_office_restarts_total", reason="memory") == 1


def test_sandbox_layers_are_one_gauge_per_layer_read_at_scrape_time():
    pool = FakePool()
    metrics = Metrics(CollectorRegistry(), pool)
    s = samples_of(metrics.exposition().decode())
    assert {layer: value(s, "worker_office_sandbox", layer=layer) for layer in ("network", "filesystem", "user",
                                                                               "profile")} == \
        {"network": 1, "filesystem": 1, "user": 0, "profile": 1}
    pool.sandbox_layers = {**pool.sandbox_layers, "network": False}
    assert value(samples_of(metrics.exposition().decode()), "worker_office_sandbox", layer="network") == 0


def test_label_sets_are_closed():
    """Every state and restart reason is always exported (0 included); no label carries free text."""
    metrics = Metrics(CollectorRegistry(), FakePool())
    s = samples_of(metrics.exposition().decode())
    states = {dict(k[1])["state"] for k in s if k[0] == "worker_office_instances"}
    assert states == {st.value for st in State}
    reasons = {dict(k[1])["reason"] for k in s if k[0] == "worker_office_restarts_total"}
    assert reasons == {r.value for r in RestartReason}
    assert {"exit", "timeout", "max_conversions", "memory"} <= reasons


def test_conversions_by_profile_and_verification_failures_by_check_have_closed_label_sets():
    from worker.metrics import PROFILES
    from worker.options import CATALOGUE, DEFAULT, PdfOptions
    from worker.pdf_checks import Failure

    # every profile PdfOptions can have is a label: one option at a time, the defaults, and PDF/A with PDF/UA
    seen = {DEFAULT.profile, PdfOptions(pdfa="2b", pdfua=True).profile, PdfOptions(pdfa="1b").profile,
            PdfOptions(pdfa="3b").profile, PdfOptions(owner_password_secret="o", pdfua=True).profile}
    seen |= {PdfOptions(**{o.field: o.parse(v)}).profile  # type: ignore[arg-type]
             for o in CATALOGUE for v in ("true", "5", "1-2", "x", "none", "2b") if _parses(o.parse, v)}
    assert seen == set(PROFILES)

    metrics = Metrics(CollectorRegistry(), FakePool())
    s = samples_of(metrics.exposition().decode())
    assert {dict(k[1])["profile"] for k in s if k[0] == "worker_conversions_total"} == set(PROFILES)
    assert {dict(k[1])["check"] for k in s if k[0] == "worker_verification_failures_total"} == \
        {f.value for f in Failure}
    metrics.observe(JobResult(Outcome.CONVERTED, "ok", profile="pdfa-2b"), 204)
    metrics.observe(JobResult(Outcome.DUPLICATE, "concurrent", profile="pdfa-2b"), 204)  # not a new PDF
    metrics.observe(JobResult(Outcome.FAILED, "verification_failed", profile="pdfa-2b",
                              checks_failed=("pdfa_metadata_missing", "font_not_embedded")), 204)
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_conversions_total", profile="pdfa-2b") == 1
    assert value(s, "worker_conversions_total", profile="default") == 0
    assert value(s, "worker_verification_failures_total", check="pdfa_metadata_missing") == 1
    assert value(s, "worker_verification_failures_total", check="font_not_embedded") == 1


def _parses(parse: Any, raw: str) -> bool:
    try:
        parse(raw)
    except ValueError:
        return False
    return True


def test_promtool_finds_no_problem():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed: the Debian package prometheus (make setup installs it)")
    pool = FakePool()
    pool.restarts["exit"] = 1
    metrics = Metrics(CollectorRegistry(), pool)
    metrics.observe(converted(), 204, NOW - timedelta(seconds=2), NOW, 1, total_s=0.5)
    metrics.observe(JobResult(Outcome.FAILED, "corrupt"), 204, NOW, NOW, None)
    check = subprocess.run([promtool, "check", "metrics"], input=metrics.exposition(), capture_output=True,
                           timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


def test_two_registries_never_collide():
    a, b = Metrics(CollectorRegistry(), FakePool()), Metrics(CollectorRegistry(), FakePool())
    a.jobs.labels("converted", "ok").inc()
    assert not [k for k in samples_of(b.exposition().decode()) if k[0] == "worker_jobs_total"]


# -- routes ----------------------------------------------------------------------------------------


class DoneJob:
    def run(self, event: Any) -> JobResult:
        return converted()


def make_app(pool: FakePool, job: Any = None, life: Lifecycle | None = None) -> tuple[Any, Metrics, Lifecycle]:
    config = Config(output_bucket="out", office=OfficeSettings(pool_size=pool.size), auth_mode="off",
                    google_cloud_project="p")
    metrics = Metrics(CollectorRegistry(), pool)
    life = life or Lifecycle()
    app = web_app.make_app(config, job=job or DoneJob(), pool=pool, metrics=metrics, lifecycle=life)
    return app.test_client(), metrics, life


def test_health_is_always_ok_and_never_asks_the_pool():
    pool = FakePool(is_ready=False, states=[State.RESTARTING])
    client, _, life = make_app(pool)
    life.draining = True
    calls = pool.calls
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    assert pool.calls == calls


def test_ready_reports_per_instance_state():
    client, _, _ = make_app(FakePool(states=[State.IDLE, State.BUSY], queue_depth=1))
    resp = client.get("/ready")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["ready"] is True and body["draining"] is False and body["queue_depth"] == 1
    assert [(i["index"], i["state"], i["pid"]) for i in body["instances"]] == [(0, "idle", 1000), (1, "busy", 1001)]
    assert set(body["instances"][0]) >= {"conversions", "rss_bytes", "seconds_since_ok", "restarts"}


def test_ready_is_false_when_no_office_is_ready():
    client, _, _ = make_app(FakePool(is_ready=False, states=[State.RESTARTING, State.STARTING]))
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert resp.get_json()["ready"] is False
    assert [i["state"] for i in resp.get_json()["instances"]] == ["restarting", "starting"]


def test_ready_is_false_while_draining_and_new_pushes_get_503():
    client, metrics, life = make_app(FakePool())
    life.drain(0)
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert resp.get_json()["ready"] is False and resp.get_json()["draining"] is True
    assert client.post("/", json={"message": {"data": ""}}).status_code == 503
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_http_requests_total", code="503") == 1


def test_drain_waits_for_the_push_in_flight():
    life = Lifecycle()
    assert life.enter()
    finished: list[bool] = []
    t = threading.Thread(target=lambda: finished.append(life.drain(5)))
    t.start()
    t.join(0.2)
    assert t.is_alive() and life.draining and not life.enter()  # new work refused while waiting
    life.leave()
    t.join(5)
    assert finished == [True]
    assert Lifecycle().drain(0) is True
    busy = Lifecycle()
    busy.enter()
    assert busy.drain(0.05) is False  # the grace ran out


def test_metrics_route_serves_the_registry_as_prometheus_text():
    client, metrics, _ = make_app(FakePool())
    metrics.jobs.labels("converted", "ok").inc()
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    s = samples_of(resp.get_data(as_text=True))
    assert value(s, "worker_jobs_total", outcome="converted", reason="ok") == 1
    assert value(s, "worker_office_pool_size") == 2


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metricz"])
def test_no_path_ends_in_z(path: str):
    client, _, _ = make_app(FakePool())
    assert client.get(path).status_code == 404


def test_an_upload_outside_the_suffix_list_is_acked_logged_with_its_suffix_and_counted(tmp_path, caplog):
    """Ignored by design, never without a trace: one log line naming the object, the reason and the suffix."""
    config = Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path), auth_mode="off")
    client, metrics, _ = make_app(FakePool(), job=Job(config, pool=None, store=None))  # type: ignore[arg-type]
    body = json.loads((ENVELOPES / "push-gcs-payload-none.json").read_text())["body"]
    body["message"]["attributes"]["objectId"] = "scans/photo.JPG"
    with caplog.at_level(logging.INFO, logger="worker"):
        assert client.post("/", json=body).status_code == 204
    lines = [r for r in caplog.records if getattr(r, "fields", {}).get("object") == "scans/photo.JPG"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert (fields["outcome"], fields["reason"], fields["suffix"]) == ("ignored", "suffix", ".jpg")
    assert ".jpg" in lines[0].getMessage() and "INPUT_SUFFIXES" in lines[0].getMessage()
    s = samples_of(metrics.exposition().decode())
    assert value(s, "worker_jobs_total", outcome="ignored", reason="suffix") == 1
