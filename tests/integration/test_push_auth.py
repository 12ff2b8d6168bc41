"""The push route with real token checks: the Flask app from create_app() + a real PushAuthenticator + a loopback
certs server with real RSA keys. The job runner is a stub that records calls: auth is what is under test, and a
refused request must never reach it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.harness.web_app import RecordingJob, make_app
from tests.oidc_fixtures import (
    CertsServer,
    SigningKey,
    closed_port_url,
    id_token_claims,
    make_signing_key,
    platform_token,
    serve_certs,
)
from worker.auth import AuthSettings, PushAuthenticator
from worker.config import Config, OfficeSettings
from worker.job import JobResult, Outcome

AUD = "https://docworker-abc123-ew.a.run.app/"
SA = "docworker-pusher@my-project.iam.gserviceaccount.com"
ENVELOPE = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "envelopes" / "push-fake-gcs-numeric-generation.json").read_text()
)["body"]


def make_client(settings: AuthSettings, tmp_path: Path) -> tuple[FlaskClient, RecordingJob]:
    config = Config(output_bucket="out", office=OfficeSettings(work_dir=tmp_path), auth_mode=settings.mode)
    runner = RecordingJob(JobResult(Outcome.CONVERTED, "ok", output="gs://out/x.pdf"))
    app = make_app(config, job=runner, authenticator=PushAuthenticator(settings))
    return app.test_client(), runner


def push(client: FlaskClient, token: str | None, scheme: str = "Bearer") -> int:
    headers = {"Content-Type": "application/json", "User-Agent": "APIs-Google"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return client.post("/", data=json.dumps(ENVELOPE), headers=headers).status_code


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return make_signing_key("kid-google-1")


@pytest.fixture(scope="module")
def certs(key: SigningKey) -> Iterator[CertsServer]:
    with serve_certs({key.kid: key.cert_pem}) as server:
        yield server


@pytest.fixture
def oidc(certs: CertsServer, tmp_path: Path) -> tuple[FlaskClient, RecordingJob]:
    return make_client(AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=certs.url), tmp_path)


def test_valid_token_reaches_the_job(oidc: tuple[FlaskClient, RecordingJob], key: SigningKey) -> None:
    client, runner = oidc
    assert push(client, key.sign(id_token_claims(audience=AUD, email=SA))) == 204
    assert [(e.bucket, e.name) for e in runner.events] == [("in-bucket", "incoming/a b/../c.docx")]
    # the scheme is case-insensitive (RFC 7235)
    assert push(client, key.sign(id_token_claims(audience=AUD, email=SA)), scheme="bearer") == 204
    assert len(runner.events) == 2


def _forged(key: SigningKey) -> str:
    """Signed by an attacker's key that claims Google's key id."""
    return make_signing_key(key.kid).sign(id_token_claims(audience=AUD, email=SA))


REFUSALS: dict[str, tuple[Any, int]] = {
    "missing token": (lambda k: None, 401),
    "not a bearer scheme": (lambda k: ("Basic", "dXNlcjpwYXNz"), 401),
    "not a JWT": (lambda k: "not-a-jwt", 401),
    "bad signature": (_forged, 401),
    "signature removed (platform token in oidc mode)": (
        lambda k: platform_token(id_token_claims(audience=AUD, email=SA)), 401),
    "unknown key id": (lambda k: k.sign(id_token_claims(audience=AUD, email=SA), kid="kid-nobody"), 401),
    "wrong audience": (lambda k: k.sign(id_token_claims(audience="https://evil.example/", email=SA)), 401),
    "wrong issuer": (lambda k: k.sign(id_token_claims(audience=AUD, email=SA, issuer="https://evil.example")), 401),
    "expired": (lambda k: k.sign(id_token_claims(audience=AUD, email=SA, now=time.time() - 7200)), 401),
    "issued in the future": (lambda k: k.sign(id_token_claims(audience=AUD, email=SA, now=time.time() + 3600)), 401),
    "wrong email": (lambda k: k.sign(id_token_claims(audience=AUD, email="someone@evil.example")), 403),
    "unverified email": (lambda k: k.sign(id_token_claims(audience=AUD, email=SA, email_verified=False)), 403),
    "no email claim": (lambda k: k.sign({c: v for c, v in id_token_claims(audience=AUD, email=SA).items()
                                         if c != "email"}), 403),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_tokens_never_reach_the_job(case: str, oidc: tuple[FlaskClient, RecordingJob], key: SigningKey) -> None:
    client, runner = oidc
    make, status = REFUSALS[case]
    token = make(key)
    if isinstance(token, tuple):
        assert push(client, token[1], scheme=token[0]) == status
    else:
        assert push(client, token) == status
    assert runner.events == []


def test_certs_outage_is_503_and_not_acked(key: SigningKey, tmp_path: Path) -> None:
    """Unreachable or broken certs are our problem, not the caller's: Pub/Sub must redeliver."""
    token = key.sign(id_token_claims(audience=AUD, email=SA))
    client, runner = make_client(
        AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=closed_port_url()), tmp_path)
    assert push(client, token) == 503
    with serve_certs({key.kid: key.cert_pem}) as broken:
        broken.set_response(500, b"oops")
        client2, runner2 = make_client(
            AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=broken.url), tmp_path)
        assert push(client2, token) == 503
        assert broken.request_count == 1
        broken.set_response(200, b"<html>not json</html>")
        client3, runner3 = make_client(
            AuthSettings("oidc", audience=AUD, service_account=SA, certs_url=broken.url), tmp_path)
        assert push(client3, token) == 503
    assert runner.events == runner2.events == runner3.events == []


def test_platform_mode_checks_the_email_of_the_verified_token(tmp_path: Path) -> None:
    client, runner = make_client(AuthSettings("platform", service_account=SA), tmp_path)
    assert push(client, platform_token(id_token_claims(audience=AUD, email=SA))) == 204
    assert len(runner.events) == 1
    assert push(client, platform_token(id_token_claims(audience=AUD, email="other@evil.example"))) == 403
    assert push(client, None) == 401
    assert push(client, "garbage") == 401
    assert len(runner.events) == 1


def test_off_mode_accepts_the_emulator_push_without_a_token(tmp_path: Path) -> None:
    client, runner = make_client(AuthSettings("off"), tmp_path)
    assert push(client, None) == 204
    assert len(runner.events) == 1
