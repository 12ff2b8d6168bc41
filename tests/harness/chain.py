"""The emulator chain the push tests and the stress campaign share: fake-gcs-server publishing finalize events of
IN_BUCKET/incoming/ to a Pub/Sub emulator topic whose push subscription targets a `worker serve`.

DIRECT_BUCKET has no notifications: tests POST envelopes for it by hand (`envelope()`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from tests.harness.worker_process import WorkerProcess
from worker import emulators
from worker.storage import ObjectInfo

PROJECT = "chain-project"
IN_BUCKET = "chain-in"  # notifies the worker (prefix incoming/)
DIRECT_BUCKET = "chain-direct"  # no notifications: the tests POST envelopes for it by hand
OUT_BUCKET = "chain-out"
PREFIX = "incoming/"
ACKED = {102, 200, 201, 202, 204}


def chain_worker(log_dir: Path, work_dir: Path, gcs_url: str, *, wrapper: tuple[str, ...] = (),
                 **extra: str) -> WorkerProcess:
    """A worker (not started) as the chain tests and the stress harness run it: 2 offices, 3 attempts, JSON logs."""
    env = {"POOL_SIZE": "2", "MAX_DELIVERY_ATTEMPTS": "3", "LOG_FORMAT": "json", **extra}
    return WorkerProcess(log_dir, work_dir, gcs_url, output_bucket=OUT_BUCKET,
                         input_buckets=(IN_BUCKET, DIRECT_BUCKET), env=env, wrapper=wrapper)


def start_emulator_chain(pubsub: emulators.Proc, log_dir: Path) -> tuple[emulators.Proc, str]:
    """fake-gcs-server publishing finalize events of IN_BUCKET/incoming/ to a fresh topic; returns (gcs, topic)."""
    topic = f"finalize-{uuid.uuid4().hex[:8]}"
    gcs = emulators.start_fake_gcs(log_dir, pubsub_host=pubsub.host, project=PROJECT, topic=topic,
                                   event_bucket=IN_BUCKET, event_prefix=PREFIX)
    try:
        for name in (IN_BUCKET, DIRECT_BUCKET, OUT_BUCKET):
            emulators.create_bucket(gcs.url, name)
    except BaseException:
        emulators.stop(gcs)
        raise
    return gcs, topic


def subscribe(pubsub: emulators.Proc, topic: str, worker: WorkerProcess) -> None:
    """Call after the worker is up and before the first upload (events for a topic without subscription vanish)."""
    emulators.create_topic_and_push_subscription(pubsub.host, PROJECT, topic, f"push-{uuid.uuid4().hex[:8]}",
                                                 f"{worker.url}/", ack_deadline_s=600)


def envelope(worker: WorkerProcess, bucket: str, name: str, generation: int, message_id: str) -> dict[str, Any]:
    """The wrapped push Google's emulator sends for a GCS notification (JSON_API_V1), for one generation."""
    resp = requests.get(f"{worker.gcs_url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
                        params={"generation": str(generation)}, timeout=10)
    resp.raise_for_status()
    return emulators.push_envelope(resp.json(), message_id, subscription=f"projects/{PROJECT}/subscriptions/by-hand")


def upload(worker: WorkerProcess, bucket: str, name: str, src: Path | bytes, *, overwrite: bool = False,
           metadata: dict[str, str] | None = None) -> ObjectInfo:
    """Create-only upload (or a plain overwrite, which makes a new generation of the same object), with the custom
    metadata `gcloud storage cp --custom-metadata=...` would set (per-document options)."""
    if overwrite:
        blob = worker.client.bucket(bucket).blob(name)
        blob.metadata = metadata
        if isinstance(src, Path):
            blob.upload_from_filename(str(src))
        else:
            blob.upload_from_string(src)
        info = worker.store.get_output(bucket, name)
        assert info is not None
        return info
    info = worker.store.create(bucket, name, src, content_type="application/octet-stream", metadata=metadata or {})
    assert info is not None, f"gs://{bucket}/{name} already existed"
    return info
