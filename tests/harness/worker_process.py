"""A `python -m worker serve` subprocess for end-to-end tests: started with an env against fake-gcs-server, waited
for until /ready, pushed to over HTTP, read through its JSON log, and stopped by its own PID.

It keeps one port across incarnations: `kill()` is a crash (SIGKILL), `start()` the next incarnation, so the
emulator's redeliveries reach the new process and the log of every incarnation stays readable.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from google.cloud import storage

from tests.harness.metrics_scrape import Samples, scrape
from tests.harness.processes import kill_pids, office_pids_under, processes_mentioning
from worker import emulators
from worker.storage import Store, emulator_client


def json_log_lines(path: Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a worker's log file.

    strict: every non-blank line must be one JSON object (json.loads raises otherwise). Not strict: anything else
    (a partial last line, stray output) is skipped.
    """
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if strict:
            if line:
                out.append(json.loads(line))
        elif line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


class WorkerProcess:
    """`worker serve` on a fixed loopback port with WORK_DIR=work_dir plus `env`; AUTH_MODE=off unless env says."""

    def __init__(self, log_dir: Path, work_dir: Path, gcs_url: str, *, output_bucket: str, input_buckets: Sequence[str],
                 env: Mapping[str, str], wrapper: Sequence[str] = ()) -> None:
        self.log_dir, self.work_dir, self.gcs_url = log_dir, work_dir, gcs_url
        self.out_bucket = output_bucket
        self.input_buckets = tuple(input_buckets)
        self.env = {"WORK_DIR": str(work_dir), **env}
        self.wrapper = tuple(wrapper)
        self.port = emulators.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.incarnations: list[emulators.Proc] = []
        self.store = Store(emulator_client(gcs_url), timeout_s=30, retry_deadline_s=60)
        self.client: storage.Client = emulator_client(gcs_url)

    @property
    def in_bucket(self) -> str:
        """The first input bucket (most tests watch just one)."""
        return self.input_buckets[0]

    @property
    def proc(self) -> emulators.Proc:
        """The current incarnation."""
        return self.incarnations[-1]

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    @property
    def grace_s(self) -> float:
        """The worker's SHUTDOWN_GRACE_S (its default when the env does not set it)."""
        return float(self.env.get("SHUTDOWN_GRACE_S", "8"))

    @property
    def metrics_url(self) -> str | None:
        """The side metrics port's base URL when METRICS_PORT is set."""
        port = self.env.get("METRICS_PORT")
        return f"http://127.0.0.1:{port}" if port else None

    def start(self, ready_timeout_s: float = 120.0) -> WorkerProcess:
        """Start the next incarnation and return once /ready is 200 (a start that never gets ready is stopped)."""
        log_dir = self.log_dir / f"worker-{len(self.incarnations)}"  # spawn() truncates: one dir per incarnation
        self.incarnations.append(emulators.start_worker(
            log_dir, self.gcs_url, output_bucket=self.out_bucket, input_buckets=",".join(self.input_buckets),
            port=self.port, env=self.env, wrapper=self.wrapper, ready_timeout_s=ready_timeout_s,
        ))
        return self

    def kill(self) -> None:
        """SIGKILL the worker process alone, as the kernel's OOM killer or a crash would."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(10)

    def stop(self, grace_s: float = 30.0) -> list[int]:
        """SIGTERM (drain), SIGKILL after the grace; then SIGKILL and return the office processes still alive 5 s
        later (none should be: the caller decides whether that fails the test)."""
        if self.incarnations:
            emulators.stop(self.proc, grace_s=grace_s)
        deadline = time.monotonic() + 5
        while self.office_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        return kill_pids(self.office_processes())

    def office_processes(self) -> list[int]:
        """Every live process of the office process groups: launcher, oosplash, soffice.bin (cmdline has WORK_DIR)."""
        return processes_mentioning(self.work_dir)

    def office_pids(self) -> list[int]:
        """soffice.bin processes alone."""
        return office_pids_under(self.work_dir)

    def post(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None,
             timeout: float = 300) -> requests.Response:
        """One push, as Pub/Sub would POST it."""
        return requests.post(f"{self.url}/", json=body, headers=dict(headers or {}), timeout=timeout)

    def ready(self) -> tuple[int, dict[str, Any]]:
        """/ready's status and body."""
        resp = requests.get(f"{self.url}/ready", timeout=2)
        return resp.status_code, resp.json()

    def scrape(self, url: str | None = None) -> tuple[str, Samples]:
        """/metrics of this worker (or of `url`, e.g. its metrics port), parsed once."""
        return scrape(url or self.url)

    def log_lines(self, *, strict: bool = False) -> list[dict[str, Any]]:
        """Every incarnation's JSON log lines, oldest first (see json_log_lines for `strict`)."""
        return [line for proc in self.incarnations for line in json_log_lines(proc.log_path, strict=strict)]

    def answers(self) -> list[dict[str, Any]]:
        """One line per push request the worker answered."""
        return [e for e in self.log_lines() if e.get("logger") == "worker.push" and "status" in e]

    def deliveries(self, name: str, bucket: str | None = None) -> list[dict[str, Any]]:
        """The push answers about one object (optionally in one bucket)."""
        return [e for e in self.answers() if e.get("object") == name and (bucket is None or e.get("bucket") == bucket)]
