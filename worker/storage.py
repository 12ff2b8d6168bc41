"""Cloud Storage, the only user of google-cloud-storage: pinned reads and precondition-guarded writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from worker.errors import Reason, WorkerError

PERMISSION_HINT = (
    "the worker's service account needs storage.objects.get on input buckets and storage.objects.create "
    "(plus storage.objects.delete to replace an older PDF) on the output bucket"
)


@dataclass(frozen=True)
class ObjectInfo:
    """The object fields the worker decides on, detached from the client library's Blob."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectGone(Exception):
    """The pinned generation no longer exists (overwritten or deleted): a stale event, acked and ignored."""


def emulator_client(endpoint: str, project: str = "local") -> storage.Client:
    """A client for fake-gcs-server at `endpoint` without touching the process-wide STORAGE_EMULATOR_HOST."""
    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    """Turn whatever the client raises after its own retries into one retryable WorkerError."""
    try:
        yield
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as exc:
        raise WorkerError(
            Reason.STORAGE_UNAVAILABLE, f"{action}: permission denied ({exc.code}): {PERMISSION_HINT}"
        ) from exc
    except api_exceptions.RetryError as exc:
        raise WorkerError(
            Reason.STORAGE_UNAVAILABLE, f"{action}: gave up retrying: {exc.cause or exc}"
        ) from exc
    except api_exceptions.GoogleAPICallError as exc:
        raise WorkerError(Reason.STORAGE_UNAVAILABLE, f"{action}: HTTP {exc.code}: {exc.message}") from exc
    except DataCorruption as exc:
        raise WorkerError(Reason.STORAGE_UNAVAILABLE, f"{action}: checksum mismatch on download") from exc
    except (
        api_exceptions.GoogleAPIError,
        InvalidResponse,
        auth_exceptions.TransportError,
        requests.RequestException,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise WorkerError(Reason.STORAGE_UNAVAILABLE, f"{action}: {type(exc).__name__}: {exc}") from exc


def _info(blob: Any) -> ObjectInfo:
    """Copy a Blob's server-side fields, because the Blob itself is mutable and untyped."""
    return ObjectInfo(
        bucket=str(blob.bucket.name),
        name=str(blob.name),
        generation=int(blob.generation),
        size=int(blob.size or 0),
        content_type=blob.content_type,
        metadata={str(k): str(v) for k, v in (blob.metadata or {}).items()},
    )


class _CapExceeded(Exception):
    """More bytes arrived than the limit allows; raised from inside the client's download loop."""


class _CappedWriter:
    """A file that refuses to grow past `limit` bytes, so a download stops at the limit, not at the object's end."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise _CapExceeded(f"{self.written} > {self._limit}")
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class Store:
    """Generation-pinned reads and create-only/conditional writes, so every retry and redelivery is safe."""

    def __init__(
        self,
        client: storage.Client | None = None,
        *,
        timeout_s: float = 60.0,
        retry_deadline_s: float = 120.0,
    ) -> None:
        # storage.Client() honours STORAGE_EMULATOR_HOST (and then goes anonymous).
        if client is None:
            try:
                client = storage.Client()
            except auth_exceptions.DefaultCredentialsError as exc:
                raise WorkerError(
                    Reason.BAD_CONFIG,
                    "no Google credentials found: run on GCP with a service account, or set "
                    "STORAGE_EMULATOR_HOST (e.g. http://127.0.0.1:4443) for a local emulator",
                ) from exc
        self._client = client
        self._timeout = timeout_s
        self._retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline_s)
        # the client is safe to share across threads (it uses requests); idle reader threads cost nothing
        self._readers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gcs-read")

    def stat(self, bucket: str, name: str, generation: int) -> ObjectInfo:
        """Read one generation's metadata; a missing generation means the event is stale."""
        with _storage_errors(f"stat gs://{bucket}/{name}#{generation}"):
            blob = self._client.bucket(bucket).get_blob(
                name, generation=generation, timeout=self._timeout, retry=self._retry
            )
        if blob is None:
            raise ObjectGone(f"gs://{bucket}/{name}#{generation} no longer exists")
        return _info(blob)

    def download(
        self, bucket: str, name: str, generation: int, dest: Path, *, max_bytes: int, size: int | None = None
    ) -> int:
        """Fetch exactly `generation` into `dest`, checksum checked; return its size. Oversized objects are refused.

        `size` is what the event said: with it, a too-large object is refused without a request and the download
        is one round trip instead of two (a 1-page push spends ~2 ms per round trip). The byte cap while streaming
        holds whatever the event claimed, so a lying or missing size can never fill the disk.
        """
        uri = f"gs://{bucket}/{name}#{generation}"
        if size is None:
            size = self.stat(bucket, name, generation).size
        if size > max_bytes:
            raise WorkerError(Reason.TOO_LARGE, f"{uri} is {size} bytes, the limit is {max_bytes}; not downloaded")
        blob = self._client.bucket(bucket).blob(name, generation=generation)
        try:
            with _storage_errors(f"download {uri}"), dest.open("wb") as f:
                capped = _CappedWriter(f, max_bytes)
                try:
                    blob.download_to_file(capped, timeout=self._timeout, checksum="auto", retry=self._retry)
                except api_exceptions.NotFound as exc:
                    raise ObjectGone(f"{uri} no longer exists") from exc
                except _CapExceeded as exc:
                    raise WorkerError(
                        Reason.TOO_LARGE, f"{uri} is larger than the limit of {max_bytes} bytes (the event said "
                        f"{size}); stopped reading there"
                    ) from exc
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return capped.written

    def get_output(self, bucket: str, name: str) -> ObjectInfo | None:
        """The live output object, to tell a duplicate from an overwrite or a name collision."""
        with _storage_errors(f"stat gs://{bucket}/{name}"):
            blob = self._client.bucket(bucket).get_blob(name, timeout=self._timeout, retry=self._retry)
        return None if blob is None else _info(blob)

    def get_outputs(self, bucket: str, names: Sequence[str]) -> list[ObjectInfo | None]:
        """get_output for several names at once: a fresh upload misses all of them, one round trip instead of N."""
        return list(self._readers.map(lambda name: self.get_output(bucket, name), names))

    def create(
        self, bucket: str, name: str, src: Path | bytes, *, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo | None:
        """Write only if nothing is there; None means someone (maybe our own retried attempt) was first."""
        return self.replace(bucket, name, src, content_type=content_type, metadata=metadata, if_generation_match=0)

    def replace(
        self,
        bucket: str,
        name: str,
        src: Path | bytes,
        *,
        content_type: str,
        metadata: dict[str, str],
        if_generation_match: int,
    ) -> ObjectInfo | None:
        """Overwrite only the generation we saw; None means it changed under us (re-read and decide).

        The one upload path (create is the precondition 0): the precondition is what makes the client's automatic
        retries safe.
        """
        blob = self._client.bucket(bucket).blob(name)
        blob.metadata = metadata
        common: dict[str, Any] = {
            "content_type": content_type,
            "if_generation_match": if_generation_match,
            "timeout": self._timeout,
            "retry": self._retry,
            "checksum": "auto",
        }
        with _storage_errors(f"upload gs://{bucket}/{name} (if_generation_match={if_generation_match})"):
            try:
                if isinstance(src, Path):
                    blob.upload_from_filename(str(src), **common)
                else:
                    blob.upload_from_string(src, **common)
            except api_exceptions.PreconditionFailed:
                return None
        return _info(blob)
