"""The local chain the end-to-end tests and the demo stand on: fake-gcs-server -> Pub/Sub emulator -> push."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness.waiting import wait_for
from worker import emulators
from worker.events import ObjectEvent, parse_push
from worker.storage import Store, emulator_client

pytestmark = pytest.mark.emulators

PROJECT = "test-project"


class Receiver:
    """A push endpoint on 127.0.0.1 that fails the first `fail_first` POSTs with 500, then answers 204."""

    def __init__(self, fail_first: int = 1) -> None:
        self.fail_first = fail_first
        self.posts: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    status = 500 if len(receiver.posts) < receiver.fail_first else 204
                    receiver.posts.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 20) -> list[tuple[int, dict[str, Any]]]:
        """The posts once there are at least `count` of them."""

        def enough() -> list[tuple[int, dict[str, Any]]]:
            with self.lock:
                return list(self.posts) if len(self.posts) >= count else []

        return wait_for(f"{count} pushes to the receiver", enough, timeout_s)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver(fail_first=1)
    yield rx
    rx.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing left in its process group either


def test_upload_is_pushed_and_redelivered_after_500(tmp_path: Path, receiver: Receiver) -> None:
    """Start and stop both emulators here (not the session fixtures) to prove stop() leaves nothing behind."""
    try:
        pubsub = emulators.start_pubsub_emulator(tmp_path)
    except emulators.EmulatorMissing as exc:
        pytest.fail(str(exc))
    gcs = None
    try:
        emulators.create_topic_and_push_subscription(
            pubsub.host, PROJECT, "gcs-finalize", "convert-push", receiver.url, ack_deadline_s=600
        )
        gcs = emulators.start_fake_gcs(
            tmp_path, pubsub_host=pubsub.host, project=PROJECT, topic="gcs-finalize", event_bucket="in-bucket"
        )
        emulators.create_bucket(gcs.url, "in-bucket")
        info = Store(emulator_client(gcs.url)).create(
            "in-bucket",
            "incoming/report.docx",
            b"PK fake docx",
            content_type="application/octet-stream",
            metadata={"requested-by": "alice", "Docworker-PDFA": "2b"},
        )
        assert info is not None

        (first_status, first), (second_status, second) = receiver.wait_for(2)
        assert (first_status, second_status) == (500, 204)
        assert first == second  # the same message, redelivered
        message = second["message"]
        assert second["subscription"] == f"projects/{PROJECT}/subscriptions/convert-push"
        assert message["attributes"]["bucketId"] == "in-bucket"
        assert message["attributes"]["objectId"] == "incoming/report.docx"
        assert message["attributes"]["objectGeneration"] == str(info.generation)
        assert message["attributes"]["eventType"] == "OBJECT_FINALIZE"
        data = json.loads(base64.b64decode(message["data"]))
        assert data["name"] == "incoming/report.docx"
        # the object's custom metadata rides in the payload, keys as written: per-document options need no read
        assert data["metadata"] == {"requested-by": "alice", "Docworker-PDFA": "2b"}
        event = parse_push({"Content-Type": "application/json"}, json.dumps(second).encode())
        assert isinstance(event, ObjectEvent) and event.metadata == data["metadata"]
    finally:
        if gcs is not None:
            emulators.stop(gcs)
        emulators.stop(pubsub)
    assert_gone(pubsub.pid)
    if gcs is not None:
        assert_gone(gcs.pid)


def test_curl_style_upload_triggers_notification_and_prefix_filters(
    pubsub_emulator: emulators.Proc, start_chain_gcs: Any, receiver: Receiver
) -> None:
    """The one-liner the demo prints must work and notify; uploads outside the prefix must not."""
    receiver.fail_first = 0
    topic = unique("topic")
    emulators.create_topic_and_push_subscription(
        pubsub_emulator.host, PROJECT, topic, unique("sub"), receiver.url
    )
    gcs = start_chain_gcs(project=PROJECT, topic=topic, event_bucket="in-bucket", event_prefix="incoming/")
    emulators.create_bucket(gcs.url, "in-bucket")
    emulators.create_bucket(gcs.url, "other-bucket")

    def upload(bucket: str, name: str) -> None:
        url = f"{gcs.url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
        if shutil.which("curl"):
            out = subprocess.run(
                ["curl", "-sS", "--fail", "-X", "POST", "--data-binary", "some bytes", url],
                check=True,
                capture_output=True,
                timeout=10,
            )
            assert json.loads(out.stdout)["name"] == name
        else:
            requests.post(url, data=b"some bytes", timeout=10).raise_for_status()

    upload("in-bucket", "ignored/x.docx")
    upload("other-bucket", "incoming/x.docx")
    upload("in-bucket", "incoming/x.docx")

    [(status, body)] = receiver.wait_for(1)
    assert status == 204
    assert body["message"]["attributes"]["objectId"] == "incoming/x.docx"
    assert body["message"]["attributes"]["bucketId"] == "in-bucket"
    time.sleep(1.5)
    assert len(receiver.posts) == 1


def test_subscription_limits_and_dead_letter(pubsub_emulator: emulators.Proc) -> None:
    """600 s is both the real and the emulator's maximum ack deadline; a dead-letter policy is stored."""
    topic, sub = unique("topic"), unique("sub")
    emulators.create_topic_and_push_subscription(
        pubsub_emulator.host, PROJECT, topic, sub, "http://127.0.0.1:9/", dead_letter_topic=unique("dlq")
    )
    got = requests.get(f"{pubsub_emulator.url}/v1/projects/{PROJECT}/subscriptions/{sub}", timeout=5).json()
    assert got["ackDeadlineSeconds"] == 600
    assert got["deadLetterPolicy"]["maxDeliveryAttempts"] == 5
    with pytest.raises(emulators.EmulatorFailed, match="out of bounds"):
        emulators.create_topic_and_push_subscription(
            pubsub_emulator.host, PROJECT, topic, unique("sub"), "http://127.0.0.1:9/", ack_deadline_s=601
        )


def test_missing_jar_is_reported_by_package_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(emulators, "PUBSUB_JAR_GLOB", str(tmp_path / "nothing-*.jar"))
    with pytest.raises(emulators.EmulatorMissing, match="google-cloud-cli-pubsub-emulator"):
        emulators.start_pubsub_emulator(tmp_path)


def test_fake_gcs_stops_by_pid(tmp_path: Path) -> None:
    proc = emulators.start_fake_gcs(tmp_path)
    assert requests.get(f"{proc.url}/storage/v1/b", timeout=2).ok
    emulators.stop(proc)
    assert_gone(proc.pid)
    assert proc.log_path.exists()
