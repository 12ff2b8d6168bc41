"""Check a push request's bearer token, so only our subscription's service account can make the worker work.

Modes (Pub/Sub's token: https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions):
  off       accept everything: the Pub/Sub emulator sends no token. Never the production setting.
  platform  Cloud Run IAM already verified the token and replaced its signature with
            SIGNATURE_REMOVED_BY_GOOGLE; we only read the unverified `email` claim (defence in depth).
  oidc      full verification: Google's x509 certs (cached per Cache-Control), RS256 signature, exp/iat,
            audience, issuer, `email == service_account` and `email_verified is True`.
Failures map to reasons: bad or missing token -> UNAUTHENTICATED (401), valid token for someone else ->
FORBIDDEN (403), certs unreachable or garbage -> AUTH_UNAVAILABLE (503, Pub/Sub redelivers).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import google.auth.crypt
import google.auth.exceptions
import google.auth.jwt
import requests

from worker.errors import Reason, WorkerError

MODES = ("off", "platform", "oidc")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
CLOCK_SKEW_S = 10  # allowance on iat/exp for clock drift between Google and us
DEFAULT_CERTS_TTL_S = 3600.0  # when the certs response has no usable max-age
MIN_CERTS_TTL_S = 60.0  # never refetch more often than this, whatever max-age says
MAX_CERTS_TTL_S = 86400.0
KID_REFETCH_INTERVAL_S = 60.0  # an unknown `kid` triggers at most one refetch per interval
FETCH_FAILURE_BACKOFF_S = 5.0  # after a failed fetch, answer AUTH_UNAVAILABLE at once for this long
MAX_TOKEN_CHARS = 8192  # Google ID tokens are about 1 KB

# google-auth ships no type hints for these; pin the shapes we rely on.
_decode_header: Callable[[str], Mapping[str, object]] = google.auth.jwt.decode_header
_decode: Callable[..., Mapping[str, object]] = google.auth.jwt.decode
_load_verifier: Callable[[str], object] = google.auth.crypt.RSAVerifier.from_string

# What google-auth raises for a bad token (read in 2.63.0): InvalidValue for exp/iat/aud/alg; MalformedError
# for a bad signature, a missing claim or an unknown kid; binascii.Error (a ValueError) for bad base64;
# TypeError for a non-numeric iat/exp; RecursionError for a deeply nested JSON segment.
_TOKEN_ERRORS = (google.auth.exceptions.GoogleAuthError, ValueError, TypeError, RecursionError)

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)


@dataclass(frozen=True)
class AuthSettings:
    """How push requests are authenticated; built once from the environment by the config module."""

    mode: str  # "off" | "platform" | "oidc"
    audience: str | None = None
    service_account: str | None = None
    certs_url: str = GOOGLE_CERTS_URL
    certs_timeout_s: float = 5.0
    other_accounts: tuple[str, ...] = ()  # also accepted (the synchronous route's callers, SYNC_CALLERS)

    def problems(self) -> list[str]:
        """Every configuration mistake, so start-up can report them all at once."""
        found = []
        if self.mode not in MODES:
            found.append(f"auth mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode in ("platform", "oidc") and not self.service_account:
            found.append(f"auth mode {self.mode!r} needs the push service account email")
        if self.mode == "oidc" and not self.audience:
            found.append("auth mode 'oidc' needs the token audience")
        if self.mode == "oidc" and not self.certs_url.startswith(("https://", "http://")):
            found.append(f"certs URL must be http(s), not {self.certs_url!r}")
        if not self.certs_timeout_s > 0:
            found.append(f"certs timeout must be positive, not {self.certs_timeout_s!r}")
        return found

    def validate(self) -> None:
        """Raise WorkerError(BAD_CONFIG) listing every problem, or return quietly."""
        found = self.problems()
        if found:
            raise WorkerError(Reason.BAD_CONFIG, "; ".join(found))


class PushAuthenticator:
    """Checks the Authorization header of each push; thread-safe, one instance per process."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings.validate()
        self._settings = settings
        self._session = session if session is not None else requests.Session()
        self._clock = clock  # drives the certs cache only; google-auth checks exp/iat against the wall clock
        self._lock = threading.Lock()  # guards the fields below and serialises fetches (one at a time)
        self._certs: Mapping[str, str] = {}
        self._expires_at = float("-inf")
        self._last_fetch = float("-inf")
        self._failed_until = float("-inf")

    def check(self, authorization: str | None) -> str | None:
        """The verified caller email (None in mode off); otherwise raise WorkerError with the reason."""
        mode = self._settings.mode
        if mode == "off":
            return None
        token = _bearer_token(authorization)
        if mode == "platform":
            return self._check_platform(token)
        return self._check_oidc(token)

    def _check_platform(self, token: str) -> str:
        """Cloud Run verified the signature already; read `email` from the payload, never trust it further."""
        return self._require_email(_unverified_claims(token), check_verified=False)

    def _check_oidc(self, token: str) -> str:
        """Full verification against Google's published certs."""
        try:
            header = _decode_header(token)
        except _TOKEN_ERRORS as exc:
            raise WorkerError(Reason.UNAUTHENTICATED, "malformed bearer token") from exc
        if header.get("alg") != "RS256":
            raise WorkerError(Reason.UNAUTHENTICATED, f"token algorithm {str(header.get('alg'))[:20]!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise WorkerError(Reason.UNAUTHENTICATED, "token header has no key id")
        certs = self._certs_for(kid)
        if kid not in certs:
            raise WorkerError(Reason.UNAUTHENTICATED, f"token signed with unknown key id {kid[:64]!r}")
        try:
            claims = _decode(
                token,
                certs={kid: certs[kid]},
                audience=self._settings.audience,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except _TOKEN_ERRORS as exc:
            raise WorkerError(Reason.UNAUTHENTICATED, f"token rejected: {str(exc)[:200]}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise WorkerError(Reason.UNAUTHENTICATED, f"token issuer {str(claims.get('iss'))[:80]!r}")
        return self._require_email(claims, check_verified=True)

    def _require_email(self, claims: Mapping[str, object], *, check_verified: bool) -> str:
        """A genuine token for the wrong identity is FORBIDDEN, not UNAUTHENTICATED."""
        email = claims.get("email")
        accepted = email == self._settings.service_account or email in self._settings.other_accounts
        if not isinstance(email, str) or not accepted:
            raise WorkerError(Reason.FORBIDDEN, f"caller {str(email)[:120]!r} is not the push account")
        if check_verified and claims.get("email_verified") is not True:
            raise WorkerError(Reason.FORBIDDEN, f"caller {email!r} has no verified email")
        return email

    def _certs_for(self, kid: str) -> Mapping[str, str]:
        """The cached certs map, refreshed when expired or (rate-limited) when `kid` is unknown."""
        with self._lock:
            now = self._clock()
            expired = now >= self._expires_at
            unknown = kid not in self._certs and now - self._last_fetch >= KID_REFETCH_INTERVAL_S
            if expired or unknown:
                self._refresh(now)
            return self._certs

    def _refresh(self, now: float) -> None:
        """Replace the certs map (caller holds the lock); a failure blocks refetches for a few seconds."""
        if now < self._failed_until:
            raise WorkerError(Reason.AUTH_UNAVAILABLE, "token certs unavailable (a fetch just failed)")
        self._last_fetch = now
        try:
            certs, ttl = self._fetch()
        except WorkerError:
            self._failed_until = now + FETCH_FAILURE_BACKOFF_S
            raise
        self._certs = certs
        self._expires_at = now + ttl

    def _fetch(self) -> tuple[dict[str, str], float]:
        """GET the certs map and its freshness; any failure is AUTH_UNAVAILABLE (503), never a 401."""
        url = self._settings.certs_url
        try:
            response = self._session.get(url, timeout=self._settings.certs_timeout_s)
        except requests.RequestException as exc:
            raise WorkerError(Reason.AUTH_UNAVAILABLE, f"token certs {url}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise WorkerError(Reason.AUTH_UNAVAILABLE, f"token certs {url}: HTTP {response.status_code}")
        try:
            certs = _parse_certs(response.content)
        except ValueError as exc:
            raise WorkerError(Reason.AUTH_UNAVAILABLE, f"token certs {url}: {exc}") from exc
        return certs, _ttl(response.headers.get("Cache-Control"), response.headers.get("Age"))


def _bearer_token(authorization: str | None) -> str:
    """The token from `Authorization: Bearer <token>` (scheme case-insensitive), else UNAUTHENTICATED."""
    if not authorization or not authorization.strip():
        raise WorkerError(Reason.UNAUTHENTICATED, "missing Authorization header")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise WorkerError(Reason.UNAUTHENTICATED, "Authorization header is not 'Bearer <token>'")
    token = parts[1]
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2 or not token.isascii():
        raise WorkerError(Reason.UNAUTHENTICATED, "bearer token is not a JWT")
    return token


def _unverified_claims(token: str) -> Mapping[str, object]:
    """Base64url-decode the payload segment without looking at the signature (platform mode only)."""
    payload = token.split(".")[1]
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_", validate=True)
        claims = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WorkerError(Reason.UNAUTHENTICATED, "bearer token payload is not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise WorkerError(Reason.UNAUTHENTICATED, "bearer token payload is not a JSON object")
    return claims


def _parse_certs(content: bytes) -> dict[str, str]:
    """The v1 certs document: a non-empty {kid: PEM certificate} object whose every PEM loads."""
    try:
        doc = json.loads(content.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("certs document is nested too deeply") from exc
    if not isinstance(doc, dict) or not doc:
        raise ValueError("certs document is not a non-empty JSON object")
    certs = {}
    for kid, pem in doc.items():
        if not isinstance(pem, str):
            raise ValueError(f"certificate for key id {kid[:64]!r} is not a string")
        try:
            _load_verifier(pem)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"certificate for key id {kid[:64]!r} does not load") from exc
        certs[kid] = pem
    return certs


def _ttl(cache_control: str | None, age: str | None) -> float:
    """Seconds the certs stay fresh: max-age minus Age, default 1 h, clamped to [1 min, 1 day]."""
    match = _MAX_AGE.search(cache_control or "")
    if match is None:
        return DEFAULT_CERTS_TTL_S
    ttl = float(match.group(1))
    if age is not None and age.strip().isdigit():
        ttl -= float(age.strip())
    return min(max(ttl, MIN_CERTS_TTL_S), MAX_CERTS_TTL_S)
