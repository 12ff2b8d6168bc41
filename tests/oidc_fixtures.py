"""Real RSA keys, x509 certs, signed ID tokens and a loopback certs server, so auth tests need no mocks.

Import from any test (run pytest as `python -m pytest` from the repo root so `tests` is importable):

    from tests.oidc_fixtures import make_signing_key, id_token_claims, serve_certs

    key = make_signing_key("kid-1")
    with serve_certs({key.kid: key.cert_pem}) as server:
        token = key.sign(id_token_claims(audience=AUD, email=SA))
        settings = AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=server.url)
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google.auth.crypt
import google.auth.jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

GOOGLE_ISSUER = "https://accounts.google.com"
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"


@dataclass(frozen=True)
class SigningKey:
    """An RSA private key with its self-signed certificate, playing one of Google's token-signing keys."""

    kid: str
    private_pem: bytes
    cert_pem: str

    def sign(
        self, claims: Mapping[str, object], *, kid: str | None = None, header: Mapping[str, str] | None = None
    ) -> str:
        """A signed RS256 JWT; `kid` overrides this key's id in the header ("" means no kid at all)."""
        signer = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
            self.private_pem, key_id=self.kid if kid is None else (kid or None)
        )
        token: bytes = google.auth.jwt.encode(  # type: ignore[no-untyped-call]
            signer, dict(claims), header=dict(header or {})
        )
        return token.decode("ascii")


def make_signing_key(kid: str = "test-kid-1") -> SigningKey:
    """Generate a 2048-bit RSA key and a one-day self-signed x509 certificate for it (about 0.1 s)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"docworker test {kid}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(kid, private_pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def id_token_claims(
    *,
    audience: str,
    email: str,
    issuer: str = GOOGLE_ISSUER,
    now: float | None = None,
    lifetime_s: int = 3600,
    **extra: object,
) -> dict[str, object]:
    """Claims shaped like a Pub/Sub push OIDC token (contract 2.1); `extra` overrides or adds claims."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "azp": "117000000000000000000",
        "sub": "117000000000000000000",
        "email": email,
        "email_verified": True,
        "iat": issued,
        "exp": issued + lifetime_s,
    }
    claims.update(extra)
    return claims


def platform_token(claims: Mapping[str, object]) -> str:
    """What Cloud Run forwards after IAM checked the token: header.payload.SIGNATURE_REMOVED_BY_GOOGLE."""
    header = {"alg": "RS256", "kid": "removed", "typ": "JWT"}
    segments = [_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode())]
    return ".".join([*segments, SIGNATURE_REMOVED])


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class CertsServer:
    """A loopback HTTP server answering every GET with a certs map; scriptable, and it counts requests."""

    def __init__(self, certs: Mapping[str, str], *, max_age: int | None = 3600) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._status = 200
        self._body = json.dumps(dict(certs)).encode()
        self._headers: dict[str, str] = {}
        self._delay_s = 0.0
        self._count = 0
        self._answered = 0
        self.set_certs(certs, max_age=max_age)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/v1/certs"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="certs-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def answered_count(self) -> int:
        """Requests whose answer has been written (a slow answer counts only once sent)."""
        with self._lock:
            return self._answered

    def set_certs(self, certs: Mapping[str, str], *, max_age: int | None = 3600) -> None:
        """Serve this {kid: PEM} map with 200 and, unless None, `Cache-Control: public, max-age=N`."""
        headers = {} if max_age is None else {"Cache-Control": f"public, max-age={max_age}, must-revalidate"}
        self.set_response(200, json.dumps(dict(certs)).encode(), headers)

    def set_response(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None, *, delay_s: float = 0.0
    ) -> None:
        """Serve exactly this (e.g. a 500, garbage, or a slow answer after `delay_s`)."""
        with self._lock:
            self._status, self._body, self._headers = status, body, dict(headers or {})
            self._delay_s = delay_s

    def stop(self) -> None:
        """Stop serving and free the port; idempotent."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner._count += 1
                    status, body, headers, delay = owner._status, owner._body, owner._headers, owner._delay_s
                if delay:
                    owner._stopping.wait(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                with owner._lock:
                    owner._answered += 1

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        return Handler


@contextmanager
def serve_certs(certs: Mapping[str, str], *, max_age: int | None = 3600) -> Iterator[CertsServer]:
    """Serve `certs` on 127.0.0.1:<free port> for the duration of the block, then shut the server down."""
    server = CertsServer(certs, max_age=max_age)
    try:
        yield server
    finally:
        server.stop()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a port just bound and released), for "certs unreachable"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/oauth2/v1/certs"


class FakeClock:
    """A settable clock for the certs cache (google-auth itself always checks exp/iat on the wall clock)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
