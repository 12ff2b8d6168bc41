"""The only user of prometheus_client: job counters and histograms, plus pool gauges read at scrape time.

The registry is passed in (prometheus/client_python's advice), so every test gets a fresh one.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker import __version__
from worker.outcome import Outcome
from worker.pdf_checks import Failure

if TYPE_CHECKING:
    from worker.office import PoolView
    from worker.outcome import JobResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
STAGES = ("download", "queue_wait", "convert", "upload")
PROFILES = ("default", "pdfa-1b", "pdfa-2b", "pdfa-3b", "pdfua", "encrypted", "custom")  # PdfOptions.profile


class Metrics:
    """Everything the worker exports, prefix `worker_`, base units, closed label sets."""

    def __init__(self, registry: CollectorRegistry, pool: PoolView | None = None) -> None:
        self.registry = registry
        self.jobs = Counter("worker_jobs", "Push deliveries handled, by outcome and reason.",
                            ["outcome", "reason"], registry=registry)
        self.requests = Counter("worker_http_requests", "HTTP answers to push requests, by status code.",
                                ["code"], registry=registry)
        self.stage = Histogram("worker_stage_duration_seconds", "Time spent in each stage of a job.",
                               ["stage"], buckets=STAGE_BUCKETS, registry=registry)
        self.job_duration = Histogram("worker_job_duration_seconds", "Time from push received to answer.",
                                      buckets=STAGE_BUCKETS, registry=registry)
        self.lag = Histogram("worker_end_to_end_lag_seconds", "Time from the message's publish time to the PDF stored.",
                             buckets=LAG_BUCKETS, registry=registry)
        self.input_bytes = Counter("worker_input_bytes", "Bytes of documents downloaded.", registry=registry)
        self.output_bytes = Counter("worker_output_bytes", "Bytes of PDFs stored.", registry=registry)
        self.attempts = Histogram("worker_delivery_attempt", "Pub/Sub deliveryAttempt of each push (DLQ only).",
                                  buckets=(1, 2, 3, 5, 10, 20, 50, 100), registry=registry)
        self.draining = Gauge("worker_draining", "1 while the worker drains after SIGTERM.", registry=registry)
        self.memory = Gauge("worker_memory_budget_bytes", "ceiling: worst-case RSS of the worker and its offices "
                            "for these settings; limit: the container's memory limit (absent when unlimited).",
                            ["kind"], registry=registry)
        # Per-document options (docs/options.md): bounded label sets, every value present from the start.
        self.conversions = Counter("worker_conversions", "PDFs stored, by option profile (PdfOptions.profile).",
                                   ["profile"], registry=registry)
        self.verification_failures = Counter("worker_verification_failures", "PDFs refused because they miss "
                                             "what their options asked, by check (pdf_checks.Failure).",
                                             ["check"], registry=registry)
        for profile in PROFILES:
            self.conversions.labels(profile)
        for check in Failure:
            self.verification_failures.labels(check.value)
        # The synchronous routes (worker/sync_route.py): the same facts as a push's, labelled by route.
        self.route_requests = Counter("worker_route_requests", "Synchronous conversion requests answered, by route, "
                                      "status code and reason.", ["route", "code", "reason"], registry=registry)
        self.route_duration = Histogram("worker_route_duration_seconds", "Time from a synchronous request received "
                                        "to its answer, by route.", ["route"], buckets=STAGE_BUCKETS,
                                        registry=registry)
        self.route_stage = Histogram("worker_route_stage_duration_seconds", "Time spent in each stage of a "
                                     "synchronous request (upload, queue_wait, convert, assemble).",
                                     ["route", "stage"], buckets=STAGE_BUCKETS, registry=registry)
        self.route_bytes = Counter("worker_route_bytes", "Bytes of documents received (in) and of PDFs or zips "
                                   "answered (out) by the synchronous routes.", ["route", "direction"],
                                   registry=registry)
        self.route_offices = Gauge("worker_route_offices_in_use", "Offices converting for a synchronous route now "
                                   "(at most SYNC_MAX_OFFICES).", ["route"], registry=registry)
        info = Gauge("worker_build_info", "Build information; always 1.", ["version", "python"], registry=registry)
        info.labels(__version__, platform.python_version()).set(1)
        for stage in STAGES:
            self.stage.labels(stage)
        if pool is not None:
            registry.register(PoolCollector(pool))

    def observe(self, result: JobResult, status: int, publish_time: datetime | None = None,
                now: datetime | None = None, delivery_attempt: int | None = None,
                total_s: float | None = None) -> None:
        """Every metric of one push, refusals included; `total_s` only when a job ran (the job duration)."""
        self.jobs.labels(result.outcome.value, result.reason.value).inc()
        self.requests.labels(str(status)).inc()
        for stage, seconds in result.durations.items():
            self.stage.labels(stage).observe(seconds)
        self.input_bytes.inc(result.input_bytes)
        self.output_bytes.inc(result.output_bytes)
        if delivery_attempt:
            self.attempts.observe(delivery_attempt)
        if publish_time is not None and now is not None and result.outcome == Outcome.CONVERTED:
            self.lag.observe(max(0.0, (now - publish_time).total_seconds()))
        if total_s is not None:
            self.job_duration.observe(total_s)
        if result.outcome == Outcome.CONVERTED and result.profile in PROFILES:
            self.conversions.labels(result.profile).inc()
        for check in result.checks_failed:
            self.verification_failures.labels(Failure(check).value).inc()

    def observe_route(self, route: str, status: int, reason: str, total_s: float, stages: dict[str, float],
                      input_bytes: int, output_bytes: int) -> None:
        """Every metric of one synchronous request, refusals included (`reason` "ok" when it converted)."""
        self.route_requests.labels(route, str(status), reason).inc()
        self.route_duration.labels(route).observe(total_s)
        for stage, seconds in stages.items():
            self.route_stage.labels(route, stage).observe(seconds)
        self.route_bytes.labels(route, "in").inc(input_bytes)
        self.route_bytes.labels(route, "out").inc(output_bytes)

    def set_memory_budget(self, ceiling_mb: int, limit_mb: int | None) -> None:
        """Exported so an alert can compare the offices' RSS with the limit, not only the start-up warning."""
        self.memory.labels("ceiling").set(ceiling_mb * 2**20)
        if limit_mb is not None:
            self.memory.labels("limit").set(limit_mb * 2**20)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class PoolCollector(Collector):
    """Reads the pool at scrape time, so the office module never imports prometheus_client."""

    def __init__(self, pool: PoolView) -> None:
        self.pool = pool

    def collect(self) -> Iterable[Metric]:
        from worker.office import RestartReason, State

        status = self.pool.status()
        states = GaugeMetricFamily("worker_office_instances", "Office instances by state.", labels=["state"])
        for state in State:
            states.add_metric([state.value], sum(1 for s in status if s.state == state))
        yield states
        yield GaugeMetricFamily("worker_office_busy", "Office instances converting now.",
                                value=sum(1 for s in status if s.state == State.BUSY))
        yield GaugeMetricFamily("worker_office_queue_depth", "Conversions waiting for a free office.",
                                value=self.pool.queue_depth)
        yield GaugeMetricFamily("worker_office_pool_size", "Configured office instances.", value=self.pool.size)
        # The label is `office` (the slot index), not `instance`: Prometheus and the Cloud Run sidecar own that name
        # for the scrape target and would rename ours to `exported_instance`.
        rss = GaugeMetricFamily("worker_office_rss_bytes", "Resident memory of each soffice.bin.", labels=["office"])
        conv = GaugeMetricFamily("worker_office_instance_conversions", "Conversions since the instance's last start.",
                                 labels=["office"])
        for s in status:
            rss.add_metric([str(s.index)], s.rss_bytes)
            conv.add_metric([str(s.index)], s.conversions)
        yield rss
        yield conv
        sandbox = GaugeMetricFamily("worker_office_sandbox", "1 for each layer between a document and the machine "
                                    "that is on (docs/operations.md, threat model); 0 when the platform refused it.",
                                    labels=["layer"])
        for layer, on in self.pool.sandbox_layers.items():
            sandbox.add_metric([layer], 1 if on else 0)
        yield sandbox
        restarts = CounterMetricFamily("worker_office_restarts", "Office restarts by reason.", labels=["reason"])
        for reason in RestartReason:
            restarts.add_metric([reason.value], self.pool.restarts.get(reason.value, 0))
        yield restarts


def serve_metrics(port: int, registry: CollectorRegistry, host: str = "0.0.0.0") -> None:
    """A separate metrics port, so scrapes never go through the public (push) URL; same interface as the app."""
    start_http_server(port, addr=host, registry=registry)
