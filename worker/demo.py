"""`worker demo`: the whole local pipeline in one command, so anyone can watch an upload become a PDF."""

from __future__ import annotations

import mimetypes
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import requests

from worker import emulators
from worker.errors import WorkerError
from worker.storage import ObjectInfo, Store, emulator_client

PROJECT = "demo-project"
TOPIC = "gcs-finalize"
SUBSCRIPTION = "convert-push"
IN_BUCKET = "in-bucket"
OUT_BUCKET = "out-bucket"
PREFIX = "incoming/"
READY_TIMEOUT_S = 120.0
OUTPUT_TIMEOUT_S = 180.0
ACKED = {102, 200, 201, 202, 204}
MAX_HAND_PUSHES = 5  # like a dead-letter policy: a message the worker keeps refusing is dropped, not looped
# The second upload: per-document options as custom metadata (docs/options.md), as `gcloud storage cp
# --custom-metadata=docworker-pdfa=2b,docworker-watermark=DEMO` would set them.
OPTIONS_EXAMPLE = {"docworker-pdfa": "2b", "docworker-watermark": "DEMO"}


class DemoFailed(Exception):
    """A step of the demo did not happen in time; the message says which log to read."""


def run_demo(sample: Path, *, keep_running: bool = True, log_dir: Path | None = None) -> int:
    """Emulators + worker, convert `sample`, show how to upload more; stop all we started on exit."""
    if not sample.is_file():
        print(f"demo: no such file: {sample}", file=sys.stderr)
        return 2
    log_dir = log_dir or Path.cwd() / "run" / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    started: list[emulators.Proc] = []
    try:
        return _run(sample, keep_running, log_dir, started, stopping)
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        return 130
    except (DemoFailed, emulators.EmulatorFailed, WorkerError) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(started):  # the worker first, so it never sees its storage vanish mid-job
            emulators.stop(proc, grace_s=15.0 if proc.name == "worker" else 3.0)
            print(f"demo: stopped {proc.name} (pid {proc.pid})")
        signal.signal(signal.SIGTERM, previous)


def _run(
    sample: Path, keep_running: bool, log_dir: Path, started: list[emulators.Proc], stopping: threading.Event
) -> int:
    """The steps in order; every process goes into `started` as soon as it exists."""
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.2f}s] {text}", flush=True)

    say(f"logs in {log_dir}")
    worker_port = emulators.free_port()
    worker_url = f"http://127.0.0.1:{worker_port}"

    pubsub, gcs = _start_emulators(log_dir, worker_url, started, say)

    say(f"worker starting on {worker_url} (log in {log_dir})")
    worker = emulators.start_worker(log_dir, gcs.url, output_bucket=OUT_BUCKET, input_buckets=IN_BUCKET,
                                    port=worker_port, ready_timeout_s=READY_TIMEOUT_S, stopping=stopping)
    started.append(worker)
    say(f"worker ready (pid {worker.pid}, log {worker.log_path})")

    store = Store(emulator_client(gcs.url), timeout_s=10, retry_deadline_s=20)
    pusher = _PushByHand(gcs.url, worker_url) if pubsub is None else None
    name = PREFIX + sample.name
    content_type = mimetypes.guess_type(sample.name)[0] or "application/octet-stream"
    uploaded = store.create(
        IN_BUCKET, name, sample, content_type=content_type, metadata={"uploaded-by": "demo"}
    )
    if uploaded is None:
        raise DemoFailed(f"gs://{IN_BUCKET}/{name} already exists")
    say(f"uploaded gs://{IN_BUCKET}/{name} (generation {uploaded.generation}, {uploaded.size} bytes)")

    ok = _wait_for_result(store, PREFIX + sample.stem, PREFIX + sample.name, log_dir, worker, pusher, stopping, say)
    if ok and not stopping.is_set():
        ok = _convert_with_options(store, sample, content_type, log_dir, worker, pusher, stopping, say)
    if ok and not stopping.is_set():
        ok = _convert_synchronously(worker_url, sample, log_dir, say)
    _print_how_to_upload_more(gcs.url, worker_url)
    if keep_running and not stopping.is_set():
        say("running; Ctrl-C (or SIGTERM) stops everything")
        while not stopping.wait(1.0):
            if worker.popen.poll() is not None:
                raise DemoFailed(f"the worker exited with {worker.popen.returncode}; see {worker.log_path}")
            if pusher is not None:
                pusher.poll()
    return 0 if ok else 1


def _start_emulators(
    log_dir: Path, worker_url: str, started: list[emulators.Proc], say: Callable[[str], None]
) -> tuple[emulators.Proc | None, emulators.Proc]:
    """Pub/Sub emulator with a push subscription to the worker, then fake-gcs-server notifying it, and the buckets.

    Without the emulator (no google-cloud-cli-pubsub-emulator) the demo posts the push envelopes itself.
    """
    pubsub: emulators.Proc | None = None
    try:
        pubsub = emulators.start_pubsub_emulator(log_dir)
        started.append(pubsub)
        say(f"Pub/Sub emulator on {pubsub.host} (pid {pubsub.pid})")
        emulators.create_topic_and_push_subscription(
            pubsub.host, PROJECT, TOPIC, SUBSCRIPTION, f"{worker_url}/", ack_deadline_s=600
        )
        say(f"topic {TOPIC}, push subscription {SUBSCRIPTION} -> {worker_url}/ (ack deadline 600 s)")
        gcs = emulators.start_fake_gcs(
            log_dir,
            pubsub_host=pubsub.host,
            project=PROJECT,
            topic=TOPIC,
            event_bucket=IN_BUCKET,
            event_prefix=PREFIX,
        )
    except emulators.EmulatorMissing as exc:
        say(f"no Pub/Sub emulator: {exc}")
        say("falling back: the demo itself will POST each new upload's push envelope to the worker")
        gcs = emulators.start_fake_gcs(log_dir)
    started.append(gcs)
    say(f"fake-gcs-server on {gcs.url} (pid {gcs.pid})")
    for bucket in (IN_BUCKET, OUT_BUCKET):
        emulators.create_bucket(gcs.url, bucket)
    say(f"buckets gs://{IN_BUCKET} (notifies for {PREFIX}*) and gs://{OUT_BUCKET}")
    return pubsub, gcs


def _convert_with_options(
    store: Store,
    sample: Path,
    content_type: str,
    log_dir: Path,
    worker: emulators.Proc,
    pusher: _PushByHand | None,
    stopping: threading.Event,
    say: Callable[[str], None],
) -> bool:
    """The same document again with per-document options: the PDF says which options it was made with."""
    stem = f"{PREFIX}{sample.stem}-pdfa"
    name = stem + sample.suffix
    uploaded = store.create(IN_BUCKET, name, sample, content_type=content_type, metadata=dict(OPTIONS_EXAMPLE))
    if uploaded is None:
        raise DemoFailed(f"gs://{IN_BUCKET}/{name} already exists")
    shown = ",".join(f"{k}={v}" for k, v in OPTIONS_EXAMPLE.items())
    say(f"uploaded gs://{IN_BUCKET}/{name} with --custom-metadata={shown}")
    return _wait_for_result(store, stem, name, log_dir, worker, pusher, stopping, say)


def _convert_synchronously(worker_url: str, sample: Path, log_dir: Path, say: Callable[[str], None]) -> bool:
    """The same document through Gotenberg's LibreOffice route, as any Gotenberg client sends it: the PDF comes back."""
    local = log_dir / "out" / (sample.stem + "-sync.pdf")
    local.parent.mkdir(exist_ok=True)
    t0 = time.monotonic()
    with sample.open("rb") as fh:
        answer = requests.post(f"{worker_url}/forms/libreoffice/convert", files={"files": (sample.name, fh)},
                               data={"pdfa": "PDF/A-2b"}, timeout=OUTPUT_TIMEOUT_S)
    elapsed_ms = (time.monotonic() - t0) * 1000
    if answer.status_code != 200:
        say(f"synchronous route FAILED: HTTP {answer.status_code}: {answer.text[:300]}")
        return False
    local.write_bytes(answer.content)
    say(f"synchronous route (Gotenberg's POST /forms/libreoffice/convert, pdfa=PDF/A-2b): HTTP 200 in "
        f"{elapsed_ms:.0f} ms, {len(answer.content)} bytes; local copy {local}")
    return True


def _wait_for_result(
    store: Store,
    stem: str,
    name: str,
    log_dir: Path,
    worker: emulators.Proc,
    pusher: _PushByHand | None,
    stopping: threading.Event,
    say: Callable[[str], None],
) -> bool:
    """Poll the output bucket for the PDF or the failure record the worker writes next to it."""
    pdf_name = stem + ".pdf"
    error_name = name + ".error.json"
    deadline = time.monotonic() + OUTPUT_TIMEOUT_S
    while time.monotonic() < deadline and not stopping.is_set():
        if pusher is not None:
            pusher.poll()
        pdf = store.get_output(OUT_BUCKET, pdf_name)
        if pdf is not None:
            say(f"PDF ready: {_describe_pdf(store, pdf, log_dir)}")
            return True
        error = store.get_output(OUT_BUCKET, error_name)
        if error is not None:
            local = log_dir / "out" / Path(error_name).name
            local.parent.mkdir(exist_ok=True)
            store.download(OUT_BUCKET, error_name, error.generation, local, max_bytes=1 << 20)
            say(f"conversion FAILED, record gs://{OUT_BUCKET}/{error_name}:")
            print(local.read_text(errors="replace"))
            return False
        if worker.popen.poll() is not None:
            raise DemoFailed(f"the worker exited with {worker.popen.returncode}; see {worker.log_path}")
        stopping.wait(0.25)
    if not stopping.is_set():
        say(f"no gs://{OUT_BUCKET}/{pdf_name} after {OUTPUT_TIMEOUT_S:.0f} s; see {worker.log_path}")
    return False


def _describe_pdf(store: Store, pdf: ObjectInfo, log_dir: Path) -> str:
    """Where the PDF is, how big, how many pages: proof it is a real document, not just an object."""
    local = log_dir / "out" / Path(pdf.name).name
    local.parent.mkdir(exist_ok=True)
    store.download(pdf.bucket, pdf.name, pdf.generation, local, max_bytes=1 << 30)
    text = f"gs://{pdf.bucket}/{pdf.name} ({pdf.size} bytes"
    try:
        import pikepdf
        from pypdf import PdfReader

        text += f", {len(PdfReader(local).pages)} page(s)"
        with pikepdf.open(local) as doc:
            xmp = doc.open_metadata()
            if xmp.get("pdfaid:part"):
                text += f", PDF/A-{xmp.get('pdfaid:part')}{xmp.get('pdfaid:conformance', '')}"
    except ImportError:
        pass
    except Exception as exc:  # a broken PDF is worth showing, not worth crashing the demo
        text += f", unreadable: {exc}"
    applied = {k: v for k, v in pdf.metadata.items() if k.startswith("docworker-")}
    if applied:
        text += ", options " + ",".join(f"{k}={v}" for k, v in sorted(applied.items()))
    return f"{text}); local copy {local}"


def _print_how_to_upload_more(gcs_url: str, worker_url: str) -> None:
    """The commands a user can paste into another terminal while the demo runs."""
    upload = f"{gcs_url}/upload/storage/v1/b/{IN_BUCKET}/o?uploadType=media&name={PREFIX}"
    listing = f"{gcs_url}/storage/v1/b/{OUT_BUCKET}/o?prefix={PREFIX}"
    download = f"{gcs_url}/download/storage/v1/b/{OUT_BUCKET}/o/{quote(PREFIX, safe='')}"
    python = (
        f'STORAGE_EMULATOR_HOST={gcs_url} python -c "import sys; from google.cloud import storage; '
        f"p = sys.argv[1]; storage.Client(project='demo').bucket('{IN_BUCKET}')"
        f".blob('{PREFIX}' + p.rsplit('/', 1)[-1]).upload_from_filename(p)\" my.docx"
    )
    print(
        "\nUpload more (another terminal; URL-encode names with spaces, e.g. %20):\n"
        f'  curl -sS -X POST -H "Content-Type: application/octet-stream" --data-binary @my.docx \\\n'
        f'       "{upload}my.docx"\n'
        f"  or: {python}\n"
        "Per-document options are the upload's custom metadata (README, 'Per-document PDF options'), e.g. on GCP:\n"
        f"  gcloud storage cp my.docx gs://BUCKET/{PREFIX} --custom-metadata=docworker-pdfa=2b\n"
        "See the results:\n"
        f'  curl -sS "{listing}"\n'
        f'  curl -sS -o my.pdf "{download}my.pdf?alt=media"\n'
        "Or convert while you wait, as any Gotenberg client does (README, 'Synchronous conversions'):\n"
        f"  curl -sS -F files=@my.docx -F pdfa=PDF/A-2b -o my.pdf {worker_url}/forms/libreoffice/convert\n",
        flush=True,
    )


class _PushByHand:
    """Without the Pub/Sub emulator, deliver what it would: one wrapped push per new generation, retried."""

    def __init__(self, gcs_url: str, worker_url: str) -> None:
        self.gcs_url = gcs_url
        self.worker_url = worker_url
        self.done: set[tuple[str, str]] = set()
        self.attempts: dict[tuple[str, str], int] = {}
        self.sent = 0

    def poll(self) -> None:
        """List the notified prefix and push anything not yet acked, like Pub/Sub redelivering a nack."""
        resp = requests.get(
            f"{self.gcs_url}/storage/v1/b/{IN_BUCKET}/o", params={"prefix": PREFIX}, timeout=10
        )
        resp.raise_for_status()
        for item in resp.json().get("items", []):
            key = (str(item["name"]), str(item["generation"]))
            if key in self.done:
                continue
            self.sent += 1
            status = self._push(item)
            print(f"demo: pushed {key[0]}#{key[1]} by hand -> HTTP {status}", flush=True)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if status in ACKED:
                self.done.add(key)
            elif self.attempts[key] >= MAX_HAND_PUSHES:
                print(f"demo: giving up on {key[0]}#{key[1]} after {MAX_HAND_PUSHES} attempts", flush=True)
                self.done.add(key)

    def _push(self, item: dict[str, Any]) -> int:
        """The envelope shape Google's emulator sends (shared fixtures: pubsub-push-gcs-finalize.json)."""
        envelope = emulators.push_envelope(item, str(self.sent),
                                           subscription=f"projects/{PROJECT}/subscriptions/{SUBSCRIPTION}")
        try:
            return requests.post(f"{self.worker_url}/", json=envelope, timeout=600).status_code
        except requests.RequestException:
            return 0
