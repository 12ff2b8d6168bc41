"""Push-token checks with real RSA keys and x509 certs, real google-auth, a real loopback certs server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.oidc_fixtures import (
    CertsServer,
    FakeClock,
    SigningKey,
    closed_port_url,
    id_token_claims,
    make_signing_key,
    platform_token,
    serve_certs,
)
from worker.auth import (
    FETCH_FAILURE_BACKOFF_S,
    KID_REFETCH_INTERVAL_S,
    MIN_CERTS_TTL_S,
    AuthSettings,
    PushAuthenticator,
    _ttl,
)
from worker.errors import Reason, WorkerError

AUD = "https://docworker-abc123-ew.a.run.app"
SA = "docworker-pusher@my-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return make_signing_key("kid-current")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return make_signing_key("kid-other")


@pytest.fixture
def server(key: SigningKey) -> Iterator[CertsServer]:
    with serve_certs({key.kid: key.cert_pem}) as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(server: CertsServer, clock: FakeClock) -> PushAuthenticator:
    return PushAuthenticator(
        AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=server.url, certs_timeout_s=2.0),
        clock=clock,
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


def reason_of(auth: PushAuthenticator, header: str | None) -> Reason:
    with pytest.raises(WorkerError) as info:
        auth.check(header)
    return info.value.reason


# --- oidc: accepted -----------------------------------------------------------------------------------------


def test_valid_token_returns_email(auth: PushAuthenticator, key: SigningKey) -> None:
    assert auth.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA)))) == SA


def test_issuer_without_scheme_is_accepted(auth: PushAuthenticator, key: SigningKey) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA, issuer="accounts.google.com"))
    assert auth.check(bearer(token)) == SA


def test_bearer_scheme_is_case_insensitive(auth: PushAuthenticator, key: SigningKey) -> None:
    assert auth.check("bearer " + key.sign(id_token_claims(audience=AUD, email=SA))) == SA


def test_small_clock_skew_is_tolerated(auth: PushAuthenticator, key: SigningKey) -> None:
    now = time.time()
    just_expired = id_token_claims(audience=AUD, email=SA, iat=int(now) - 3605, exp=int(now) - 5)
    assert auth.check(bearer(key.sign(just_expired))) == SA
    slightly_early = id_token_claims(audience=AUD, email=SA, iat=int(now) + 5, exp=int(now) + 3605)
    assert auth.check(bearer(key.sign(slightly_early))) == SA


# --- oidc: 401 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer a b",
        "Bearer abc",
        "Bearer a.b.c",
        "Bearer ...",
        "Bearer ..",
        "Bearer e30.e30.",
        "Bearer !!!.@@@.###",
        "Bearer éé.éé.éé",
        "Bearer " + "a" * 9000 + ".b.c",
    ],
)
def test_missing_or_malformed_header_is_unauthenticated(
    auth: PushAuthenticator, server: CertsServer, header: str | None
) -> None:
    assert reason_of(auth, header) is Reason.UNAUTHENTICATED


def test_malformed_headers_cost_no_certs_fetch(auth: PushAuthenticator, server: CertsServer) -> None:
    for header in (None, "Basic x", "Bearer nope", "Bearer e30.e30."):
        with pytest.raises(WorkerError):
            auth.check(header)
    assert server.request_count == 0


def test_signature_by_another_key_is_unauthenticated(
    auth: PushAuthenticator, other_key: SigningKey, key: SigningKey
) -> None:
    forged = other_key.sign(id_token_claims(audience=AUD, email=SA), kid=key.kid)  # claims the served kid
    assert reason_of(auth, bearer(forged)) is Reason.UNAUTHENTICATED


def test_tampered_payload_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    header, _, signature = key.sign(id_token_claims(audience=AUD, email="someone@evil.example")).split(".")
    _, payload, _ = platform_token(id_token_claims(audience=AUD, email=SA)).split(".")
    assert reason_of(auth, bearer(f"{header}.{payload}.{signature}")) is Reason.UNAUTHENTICATED


def test_signature_removed_token_fails_full_verification(auth: PushAuthenticator) -> None:
    token = platform_token(id_token_claims(audience=AUD, email=SA))
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


def test_alg_none_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    _, payload, _ = platform_token(id_token_claims(audience=AUD, email=SA)).split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": key.kid}).encode()).rstrip(b"=")
    assert reason_of(auth, bearer(f"{header.decode()}.{payload}.")) is Reason.UNAUTHENTICATED


def test_wrong_audience_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    for audience in (AUD + "/", "https://other.example", AUD + "/pubsub/push"):
        token = key.sign(id_token_claims(audience=audience, email=SA))
        assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


def test_audience_list_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA, aud=[AUD]))
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


@pytest.mark.parametrize(
    "issuer", ["https://evil.example.com", "http://accounts.google.com", "", "Accounts.Google.com"]
)
def test_wrong_issuer_is_unauthenticated(auth: PushAuthenticator, key: SigningKey, issuer: str) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA, issuer=issuer))
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


def test_missing_issuer_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    claims = id_token_claims(audience=AUD, email=SA)
    del claims["iss"]
    assert reason_of(auth, bearer(key.sign(claims))) is Reason.UNAUTHENTICATED


def test_expired_token_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA, now=time.time() - 7200))
    with pytest.raises(WorkerError) as info:
        auth.check(bearer(token))
    assert info.value.reason is Reason.UNAUTHENTICATED
    assert "expired" in info.value.message


def test_token_issued_in_the_future_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA, now=time.time() + 120))
    with pytest.raises(WorkerError) as info:
        auth.check(bearer(token))
    assert info.value.reason is Reason.UNAUTHENTICATED
    assert "too early" in info.value.message


@pytest.mark.parametrize("claim", ["iat", "exp"])
def test_missing_time_claim_is_unauthenticated(auth: PushAuthenticator, key: SigningKey, claim: str) -> None:
    claims = id_token_claims(audience=AUD, email=SA)
    del claims[claim]
    assert reason_of(auth, bearer(key.sign(claims))) is Reason.UNAUTHENTICATED


def test_non_numeric_time_claim_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    # google-auth raises a bare TypeError here ("str" - int), not one of its own exceptions.
    token = key.sign(id_token_claims(audience=AUD, email=SA, iat="yesterday"))
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


@pytest.mark.parametrize("segment", [0, 1])
def test_deeply_nested_token_segment_is_unauthenticated_not_a_crash(
    auth: PushAuthenticator, platform: PushAuthenticator, segment: int
) -> None:
    # google-auth lets json's RecursionError escape from decode_header; it must still be a 401.
    parts = ['{"alg": "RS256", "kid": "kid-current"}', "{}"]
    parts[segment] = "[" * 3000
    token = ".".join(base64.urlsafe_b64encode(p.encode()).rstrip(b"=").decode() for p in parts) + ".eA"
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED
    # platform mode reads only the payload: nested payload -> 401; nested header + "{}" -> 403 (no email)
    expected = Reason.UNAUTHENTICATED if segment == 1 else Reason.FORBIDDEN
    assert reason_of(platform, bearer(token)) is expected


def test_token_without_kid_is_unauthenticated(auth: PushAuthenticator, key: SigningKey) -> None:
    token = key.sign(id_token_claims(audience=AUD, email=SA), kid="")
    assert reason_of(auth, bearer(token)) is Reason.UNAUTHENTICATED


# --- oidc: 403 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["other@my-project.iam.gserviceaccount.com", SA.upper(), SA + " ", None])
def test_wrong_email_is_forbidden(auth: PushAuthenticator, key: SigningKey, email: str | None) -> None:
    claims = id_token_claims(audience=AUD, email=SA)
    if email is None:
        del claims["email"]
    else:
        claims["email"] = email
    assert reason_of(auth, bearer(key.sign(claims))) is Reason.FORBIDDEN


@pytest.mark.parametrize("verified", [False, "true", 1, None])
def test_unverified_email_is_forbidden(auth: PushAuthenticator, key: SigningKey, verified: object) -> None:
    claims = id_token_claims(audience=AUD, email=SA, email_verified=verified)
    if verified is None:
        del claims["email_verified"]
    assert reason_of(auth, bearer(key.sign(claims))) is Reason.FORBIDDEN


# --- oidc: certs cache and unknown kid ----------------------------------------------------------------------


def test_certs_are_cached(auth: PushAuthenticator, key: SigningKey, server: CertsServer) -> None:
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    for _ in range(20):
        assert auth.check(token) == SA
    assert server.request_count == 1


def test_cache_honours_max_age(key: SigningKey, clock: FakeClock) -> None:
    with serve_certs({key.kid: key.cert_pem}, max_age=600) as server:
        auth = PushAuthenticator(AuthSettings("oidc", AUD, SA, certs_url=server.url), clock=clock)
        token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
        auth.check(token)
        clock.advance(590)
        auth.check(token)
        assert server.request_count == 1
        clock.advance(11)
        auth.check(token)
        assert server.request_count == 2


def test_cache_defaults_to_one_hour_without_max_age(key: SigningKey, clock: FakeClock) -> None:
    with serve_certs({key.kid: key.cert_pem}, max_age=None) as server:
        auth = PushAuthenticator(AuthSettings("oidc", AUD, SA, certs_url=server.url), clock=clock)
        token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
        auth.check(token)
        clock.advance(3599)
        auth.check(token)
        assert server.request_count == 1
        clock.advance(2)
        auth.check(token)
        assert server.request_count == 2


@pytest.mark.parametrize(
    ("cache_control", "age", "ttl"),
    [
        (None, None, 3600),
        ("public, max-age=19958, must-revalidate, no-transform", None, 19958),
        ("public, max-age=1000", "900", 100),
        ("max-age=0", None, MIN_CERTS_TTL_S),
        ("no-store", None, 3600),
        ("public, max-age=99999999", None, 86400),
        ("Max-Age=120", "abc", 120),
    ],
)
def test_ttl_from_cache_control(cache_control: str | None, age: str | None, ttl: float) -> None:
    assert _ttl(cache_control, age) == ttl


def test_unknown_kid_refetches_once_then_is_rate_limited(
    auth: PushAuthenticator, key: SigningKey, other_key: SigningKey, server: CertsServer, clock: FakeClock
) -> None:
    auth.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA))))
    assert server.request_count == 1
    stranger = bearer(other_key.sign(id_token_claims(audience=AUD, email=SA)))
    clock.advance(KID_REFETCH_INTERVAL_S)
    assert reason_of(auth, stranger) is Reason.UNAUTHENTICATED
    assert server.request_count == 2  # one refetch for the unknown kid
    for _ in range(5):
        assert reason_of(auth, stranger) is Reason.UNAUTHENTICATED
    assert server.request_count == 2  # rate-limited: a flood of bogus kids cannot hammer the certs URL


def test_key_rotation_is_picked_up_through_unknown_kid(
    auth: PushAuthenticator, key: SigningKey, other_key: SigningKey, server: CertsServer, clock: FakeClock
) -> None:
    auth.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA))))
    server.set_certs({key.kid: key.cert_pem, other_key.kid: other_key.cert_pem})
    clock.advance(KID_REFETCH_INTERVAL_S)
    assert auth.check(bearer(other_key.sign(id_token_claims(audience=AUD, email=SA)))) == SA
    assert server.request_count == 2


def test_concurrent_checks_share_one_fetch(
    auth: PushAuthenticator, key: SigningKey, server: CertsServer
) -> None:
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    results: list[str | None] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                results.append(auth.check(token))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert results == [SA] * 160
    assert server.request_count == 1


# --- oidc: certs unavailable (503) ------------------------------------------------------------------------


def _auth_for(url: str, clock: FakeClock, timeout_s: float = 2.0) -> PushAuthenticator:
    settings = AuthSettings("oidc", AUD, SA, certs_url=url, certs_timeout_s=timeout_s)
    return PushAuthenticator(settings, clock=clock)


def test_certs_server_down_is_auth_unavailable(key: SigningKey, clock: FakeClock) -> None:
    auth = _auth_for(closed_port_url(), clock)
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    with pytest.raises(WorkerError) as info:
        auth.check(token)
    assert info.value.reason is Reason.AUTH_UNAVAILABLE
    assert info.value.retryable


def test_certs_server_stopped_after_expiry_is_auth_unavailable(key: SigningKey, clock: FakeClock) -> None:
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    with serve_certs({key.kid: key.cert_pem}, max_age=600) as server:
        auth = _auth_for(server.url, clock)
        assert auth.check(token) == SA
        server.stop()
        assert auth.check(token) == SA  # still cached
        clock.advance(601)
        assert reason_of(auth, token) is Reason.AUTH_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"{}"),
        (503, b"Service Unavailable"),
        (404, b"not found"),
        (200, b"<html>captive portal</html>"),
        (200, b"{}"),
        (200, b"[]"),
        (200, b'{"kid": 42}'),
        (200, b'{"kid": "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n"}'),
        (200, b'{"kid": "not a pem"}'),
        (200, b"\xff\xfe"),
        (200, b"[" * 5000),
    ],
)
def test_bad_certs_response_is_auth_unavailable(
    key: SigningKey, server: CertsServer, clock: FakeClock, status: int, body: bytes
) -> None:
    server.set_response(status, body)
    auth = _auth_for(server.url, clock)
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    assert reason_of(auth, token) is Reason.AUTH_UNAVAILABLE


def test_slow_certs_server_times_out_as_auth_unavailable(
    key: SigningKey, server: CertsServer, clock: FakeClock
) -> None:
    server.set_response(200, b"{}", delay_s=120.0)  # the server stops before this runs out
    auth = _auth_for(server.url, clock, timeout_s=0.3)
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    assert reason_of(auth, token) is Reason.AUTH_UNAVAILABLE
    # the verifier gave up while the server was still holding its answer: the timeout, not the server, ended it
    assert (server.request_count, server.answered_count) == (1, 0)


def test_failed_fetch_backs_off_then_recovers(key: SigningKey, server: CertsServer, clock: FakeClock) -> None:
    token = bearer(key.sign(id_token_claims(audience=AUD, email=SA)))
    server.set_response(500, b"oops")
    auth = _auth_for(server.url, clock)
    assert reason_of(auth, token) is Reason.AUTH_UNAVAILABLE
    assert reason_of(auth, token) is Reason.AUTH_UNAVAILABLE
    assert server.request_count == 1  # the second answer came from the back-off, not another fetch
    server.set_certs({key.kid: key.cert_pem})
    clock.advance(FETCH_FAILURE_BACKOFF_S)
    assert auth.check(token) == SA
    assert server.request_count == 2


def test_unknown_kid_refetch_failure_is_auth_unavailable(
    auth: PushAuthenticator, key: SigningKey, other_key: SigningKey, server: CertsServer, clock: FakeClock
) -> None:
    auth.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA))))
    server.set_response(502, b"bad gateway")
    clock.advance(KID_REFETCH_INTERVAL_S)
    stranger = bearer(other_key.sign(id_token_claims(audience=AUD, email=SA)))
    assert reason_of(auth, stranger) is Reason.AUTH_UNAVAILABLE
    assert auth.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA)))) == SA  # cache still serves


# --- platform -----------------------------------------------------------------------------------------------


@pytest.fixture
def platform() -> PushAuthenticator:
    return PushAuthenticator(AuthSettings("platform", service_account=SA, certs_url=closed_port_url()))


def test_platform_accepts_signature_removed_token_with_right_email(platform: PushAuthenticator) -> None:
    assert platform.check(bearer(platform_token(id_token_claims(audience=AUD, email=SA)))) == SA


def test_platform_accepts_fully_signed_token(platform: PushAuthenticator, key: SigningKey) -> None:
    assert platform.check(bearer(key.sign(id_token_claims(audience=AUD, email=SA)))) == SA


def test_platform_does_not_recheck_what_cloud_run_checked(platform: PushAuthenticator) -> None:
    expired_other_aud = id_token_claims(audience="https://x.example", email=SA, now=time.time() - 7200)
    assert platform.check(bearer(platform_token(expired_other_aud))) == SA


def test_platform_wrong_email_is_forbidden(platform: PushAuthenticator) -> None:
    token = platform_token(id_token_claims(audience=AUD, email="intruder@other.iam.gserviceaccount.com"))
    assert reason_of(platform, bearer(token)) is Reason.FORBIDDEN
    no_email = id_token_claims(audience=AUD, email=SA)
    del no_email["email"]
    assert reason_of(platform, bearer(platform_token(no_email))) is Reason.FORBIDDEN


@pytest.mark.parametrize(
    "header",
    # no token, wrong scheme, not a JWT, payload not base64url, payload "not json", payload [1]
    [
        None,
        "",
        "Basic abc",
        "Bearer",
        "Bearer x",
        "Bearer a.!!!.c",
        "Bearer a.bm90IGpzb24.c",
        "Bearer a.WzFd.c",
    ],
)
def test_platform_missing_or_malformed_is_unauthenticated(
    platform: PushAuthenticator, header: str | None
) -> None:
    assert reason_of(platform, header) is Reason.UNAUTHENTICATED


# --- off ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer garbage", "Bearer a.b.c"])
def test_off_accepts_anything(header: str | None) -> None:
    assert PushAuthenticator(AuthSettings("off")).check(header) is None


# --- settings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (AuthSettings("oidc", audience=AUD), "service account"),
        (AuthSettings("oidc", service_account=SA), "audience"),
        (AuthSettings("platform"), "service account"),
        (AuthSettings("none"), "mode"),
        (AuthSettings("oidc", AUD, SA, certs_url="file:///etc/passwd"), "http"),
        (AuthSettings("oidc", AUD, SA, certs_timeout_s=0), "timeout"),
    ],
)
def test_bad_settings_are_bad_config(settings: AuthSettings, fragment: str) -> None:
    with pytest.raises(WorkerError) as info:
        PushAuthenticator(settings)
    assert info.value.reason is Reason.BAD_CONFIG
    assert fragment in info.value.message


def test_all_problems_are_reported_together() -> None:
    assert len(AuthSettings("oidc", certs_timeout_s=-1).problems()) == 3
    assert AuthSettings("off").problems() == []
    assert AuthSettings("platform", service_account=SA).problems() == []
