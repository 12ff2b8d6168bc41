"""deploy/provision, run with --dry-run (order and flags) and against a fake gcloud that keeps state (idempotency).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy_files import (
    ACK_DEADLINE,
    CLOUDBUILD,
    PROJECT,
    PROVISION,
    deploy_flags,
    dry_run,
)


@pytest.fixture(scope="module")
def deploy_step() -> tuple[dict[str, list[str]], dict[str, str]]:
    """The deploy step of cloudbuild.yaml: its flags and its env, which provision must agree with."""
    return deploy_flags(yaml.safe_load(CLOUDBUILD.read_text()))


# ---------------------------------------------------------------------------------------- deploy/provision
def no_gcloud_path(tmp_path: Path) -> str:
    """PATH whose gcloud/gsutil fail loudly: a dry run must not call them."""
    bindir = tmp_path / "nogcloud"
    bindir.mkdir(exist_ok=True)
    for name in ("gcloud", "gsutil"):
        p = bindir / name
        p.write_text(f"#!/bin/sh\necho 'dry-run called {name}' >&2\nexit 99\n")
        p.chmod(0o755)
    return f"{bindir}:/usr/bin:/bin"


SEPARATORS = {"||", "|", "&&", ";", "if", "then", "else", "fi"}


def commands(out: str) -> list[list[str]]:
    """The printed lines split into simple commands, in order (assignments unwrapped)."""
    cmds: list[list[str]] = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r'([A-Z_]+)="\$\((.*)\)"', line)
        if m:
            line = m.group(2)
        cur: list[str] = []
        for tok in shlex.split(line):
            if tok in SEPARATORS:
                if cur:
                    cmds.append(cur)
                cur = []
            else:
                cur.append(tok)
        if cur:
            cmds.append(cur)
    return cmds


def find(cmds: list[list[str]], *prefix: str) -> list[int]:
    return [i for i, c in enumerate(cmds) if c[: len(prefix)] == list(prefix)]


def opt(cmd: list[str], name: str) -> str | None:
    vals = [a.split("=", 1)[1] for a in cmd if a.startswith(name + "=")]
    assert len(vals) <= 1
    return vals[0] if vals else None


@pytest.fixture(scope="module")
def dry(tmp_path_factory) -> tuple[str, list[list[str]]]:
    res = dry_run(path=no_gcloud_path(tmp_path_factory.mktemp("p")))
    assert res.returncode == 0, res.stderr
    assert "dry-run called" not in res.stderr
    return res.stdout, commands(res.stdout)


def test_dry_run_prints_only_gcloud_commands(dry):
    out, cmds = dry
    assert cmds
    for c in cmds:
        assert c[0] in {"gcloud", "grep", "printf"}, c
    for line in out.splitlines():
        assert line.startswith(
            ("gcloud ", "#", "if gcloud ", 'PROJECT_NUMBER="$(gcloud ', 'SERVICE_URL="$(gcloud ')
        ), line


def test_dry_run_needs_no_gcloud_at_all(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    for name in ("bash", "sed", "cat"):
        found = shutil.which(name)
        assert found
        (empty / name).symlink_to(found)
    res = dry_run(path=str(empty))
    assert res.returncode == 0, res.stderr


def test_every_create_is_guarded(dry):
    out, _ = dry
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        if re.search(r"\bcreate\b", line):
            assert re.search(r"\b(describe|list)\b", line.split(" create ")[0]), line


def test_notification_on_the_input_bucket_only_and_last(dry):
    _, cmds = dry
    notif = find(cmds, "gcloud", "storage", "buckets", "notifications", "create")
    assert len(notif) == 1
    n = cmds[notif[0]]
    assert n[5] == f"gs://{PROJECT}-docworker-in"
    assert not any(f"{PROJECT}-docworker-out" in a for a in n)
    assert opt(n, "--event-types") == "OBJECT_FINALIZE"
    assert opt(n, "--payload-format") == "json"
    assert opt(n, "--topic") == f"projects/{PROJECT}/topics/docworker-finalize"
    # after the subscription (no upload is published to a topic nobody reads) and after the invoker grant
    sub_create = find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")
    invoker = [
        i
        for i in find(cmds, "gcloud", "run", "services", "add-iam-policy-binding")
        if opt(cmds[i], "--role") == "roles/run.invoker"
    ]
    assert sub_create and invoker
    assert invoker[0] < sub_create[0] < notif[0]
    assert notif[0] == max(i for i, c in enumerate(cmds) if "create" in c)


@pytest.mark.parametrize("verb", ["create", "update"])
def test_push_subscription_oidc_deadline_dead_letter_retry(dry, verb):
    _, cmds = dry
    idx = find(cmds, "gcloud", "pubsub", "subscriptions", verb, "docworker-push")
    assert len(idx) == 1
    s = cmds[idx[0]]
    url = "${SERVICE_URL}"
    assert opt(s, "--push-endpoint") == url + "/pubsub/push"
    assert opt(s, "--push-auth-service-account") == f"docworker-push@{PROJECT}.iam.gserviceaccount.com"
    assert opt(s, "--push-auth-token-audience") == url, "explicit audience: the service URL"
    assert int(opt(s, "--ack-deadline") or 0) == ACK_DEADLINE
    assert opt(s, "--dead-letter-topic") == f"projects/{PROJECT}/topics/docworker-dlq"
    assert 5 <= int(opt(s, "--max-delivery-attempts") or 0) <= 100
    assert opt(s, "--min-retry-delay") == "10s" and opt(s, "--max-retry-delay") == "600s"
    assert opt(s, "--expiration-period") == "never"
    if verb == "create":
        assert opt(s, "--topic") == "docworker-finalize"
    # the service URL is read before it is used
    describe = find(cmds, "gcloud", "run", "services", "describe", "docworker")
    assert describe and describe[0] < idx[0]


def test_max_delivery_attempts_matches_the_worker(dry, deploy_step):
    _, cmds = dry
    _, env = deploy_step
    s = cmds[find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")[0]]
    assert opt(s, "--max-delivery-attempts") == env["MAX_DELIVERY_ATTEMPTS"]


def test_cloud_run_timeout_covers_the_ack_deadline(dry, deploy_step):
    _, cmds = dry
    f, _ = deploy_step
    s = cmds[find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")[0]]
    assert int(f["--timeout"][0]) >= int(opt(s, "--ack-deadline") or 0)


def test_dead_letter_topic_subscription_and_agent_roles(dry):
    _, cmds = dry
    dlq_topic = find(cmds, "gcloud", "pubsub", "topics", "create", "docworker-dlq")
    dlq_sub = find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-dlq-sub")
    push_sub = find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")
    assert dlq_topic and dlq_sub and push_sub
    assert dlq_topic[0] < dlq_sub[0] < push_sub[0]
    assert opt(cmds[dlq_sub[0]], "--topic") == "docworker-dlq"
    assert opt(cmds[dlq_sub[0]], "--expiration-period") == "never"
    agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    pub = [
        i
        for i in find(cmds, "gcloud", "pubsub", "topics", "add-iam-policy-binding", "docworker-dlq")
        if opt(cmds[i], "--member") == agent and opt(cmds[i], "--role") == "roles/pubsub.publisher"
    ]
    ack = [
        i
        for i in find(cmds, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding", "docworker-push")
        if opt(cmds[i], "--member") == agent and opt(cmds[i], "--role") == "roles/pubsub.subscriber"
    ]
    assert pub and ack and ack[0] > push_sub[0]
    number = find(cmds, "gcloud", "projects", "describe", PROJECT)
    assert number and number[0] < pub[0]


def test_invoker_only_for_the_push_account(dry):
    out, cmds = dry
    assert "allUsers" not in out and "allAuthenticatedUsers" not in out
    push = f"serviceAccount:docworker-push@{PROJECT}.iam.gserviceaccount.com"
    grants = [(c, opt(c, "--member"), opt(c, "--role")) for c in cmds if "add-iam-policy-binding" in c]
    invokers = [(m, r) for _, m, r in grants if r == "roles/run.invoker"]
    assert invokers == [(push, "roles/run.invoker")]
    assert [r for _, m, r in grants if m == push] == ["roles/run.invoker"], "the push SA gets nothing else"
    # runtime SA: least privilege on the buckets, never project-wide storage or invoker
    runtime = f"serviceAccount:docworker-run@{PROJECT}.iam.gserviceaccount.com"
    runtime_grants = {(c[4] if c[1] == "storage" else c[1], r) for c, m, r in grants if m == runtime}
    assert runtime_grants == {
        (f"gs://{PROJECT}-docworker-in", "roles/storage.objectViewer"),
        (f"gs://{PROJECT}-docworker-out", "roles/storage.objectUser"),
        ("projects", "roles/monitoring.metricWriter"),
        ("secrets", "roles/secretmanager.secretAccessor"),
    }


def test_buckets_are_private_and_uniform(dry):
    _, cmds = dry
    creates = [cmds[i] for i in find(cmds, "gcloud", "storage", "buckets", "create")]
    assert len(creates) == 3
    for c in creates:
        assert "--uniform-bucket-level-access" in c and "--public-access-prevention" in c


def test_names_and_prefixes_flow_through():
    res = dry_run(
        "--service",
        "conv",
        "--region",
        "us-central1",
        "--input-bucket",
        "gs://shared",
        "--output-bucket",
        "shared",
        "--input-prefix",
        "incoming/",
        "--output-prefix",
        "pdf/",
        "--max-delivery-attempts",
        "7",
    )
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    n = cmds[find(cmds, "gcloud", "storage", "buckets", "notifications", "create")[0]]
    assert n[5] == "gs://shared" and opt(n, "--object-prefix") == "incoming/"
    assert len(find(cmds, "gcloud", "storage", "buckets", "create", "gs://shared")) == 1
    assert find(cmds, "gcloud", "run", "services", "add-iam-policy-binding", "conv")
    s = cmds[find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")[0]]
    assert opt(s, "--max-delivery-attempts") == "7"


@pytest.mark.parametrize(
    "args",
    [
        ("--input-bucket", "b", "--output-bucket", "b"),
        ("--input-bucket", "b", "--output-bucket", "b", "--input-prefix", "in/"),
        (
            "--input-bucket",
            "b",
            "--output-bucket",
            "b",
            "--input-prefix",
            "in/",
            "--output-prefix",
            "in/pdf/",
        ),
        (
            "--input-bucket",
            "b",
            "--output-bucket",
            "b",
            "--input-prefix",
            "docs/",
            "--output-prefix",
            "docs/",
        ),
        ("--ack-deadline", "700"),
        ("--max-delivery-attempts", "3"),
        ("--bogus", "x"),
    ],
)
def test_refuses_unsafe_or_invalid_settings(args):
    res = dry_run(*args)
    assert res.returncode == 2, res.stdout
    assert res.stdout == "", "nothing is printed (or run) before validation"


FAKE_GCLOUD = textwrap.dedent('''\
    #!/usr/bin/env python3
    """A stateful stand-in for gcloud: resources exist once created; every call is logged."""
    import json, os, sys
    state_file = os.environ["FAKE_GCLOUD_STATE"]
    state = json.load(open(state_file)) if os.path.exists(state_file) else {"res": [], "secret": None}
    args = [a for a in sys.argv[1:] if not a.startswith("--project=")]
    with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    words = [a for a in args if not a.startswith("-")]
    def save():
        json.dump(state, open(state_file, "w"))
    if words[:2] == ["projects", "describe"]:
        print("123456789012"); sys.exit(0)
    if words[:3] == ["run", "services", "describe"]:
        if any(a.startswith("--format") for a in args):
            print("https://docworker-123456789012.europe-west1.run.app")
        sys.exit(0)
    if words[:4] == ["storage", "buckets", "notifications", "list"]:
        print(json.dumps([{"topic": r} for r in state["res"] if r.startswith("//pubsub")])); sys.exit(0)
    if words[:4] == ["storage", "buckets", "notifications", "create"]:
        topic = next(a.split("=", 1)[1] for a in args if a.startswith("--topic="))
        state["res"].append("//pubsub.googleapis.com/" + topic); save(); sys.exit(0)
    if words[:3] == ["secrets", "versions", "access"]:
        sys.stdout.write(state["secret"] or ""); sys.exit(0)
    if words[:2] == ["secrets", "create"] or words[:3] == ["secrets", "versions", "add"]:
        state["secret"] = sys.stdin.read()
    verb = next((w for w in words if w in ("describe", "create", "update")), None)
    if verb:
        key = " ".join(words[: words.index(verb)] + words[words.index(verb) + 1:][:1])
        if key.startswith("iam service-accounts") and verb == "describe":
            key = "iam service-accounts " + words[-1].split("@")[0]
        if verb == "describe":
            sys.exit(0 if key in state["res"] else 1)
        if verb == "create":
            if key in state["res"]:
                print("ALREADY_EXISTS", file=sys.stderr); sys.exit(1)
            state["res"].append(key); save()
    sys.exit(0)
''')


def test_real_run_is_idempotent_against_a_stateful_fake_gcloud(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "gcloud"
    fake.write_text(FAKE_GCLOUD.replace("/usr/bin/env python3", sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_GCLOUD_STATE": str(tmp_path / "state.json"),
        "FAKE_GCLOUD_LOG": str(log),
    }

    def run() -> list[list[str]]:
        log.write_text("")
        res = subprocess.run(
            ["bash", str(PROVISION), "--project", PROJECT],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in log.read_text().splitlines()]

    first = run()
    creates = [c for c in first if "create" in c]
    assert any(c[:4] == ["pubsub", "subscriptions", "create", "docworker-push"] for c in creates)
    assert any(c[:4] == ["storage", "buckets", "notifications", "create"] for c in creates)
    second = run()
    assert [c for c in second if "create" in c or c[:3] == ["secrets", "versions", "add"]] == []
    updates = [c for c in second if c[:3] == ["pubsub", "subscriptions", "update"]]
    assert len(updates) == 1, "an existing push subscription is converged, not skipped"


def test_pdf_secrets_get_an_accessor_binding_each_and_are_mounted_one_directory_each():
    res = dry_run("--pdf-secret", "reports-open", "--pdf-secret", "reports-owner")
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    runtime = f"serviceAccount:docworker-run@{PROJECT}.iam.gserviceaccount.com"
    bindings = [c for c in cmds if c[:3] == ["gcloud", "secrets", "add-iam-policy-binding"]]
    by_secret = {c[3]: (opt(c, "--member"), opt(c, "--role")) for c in bindings}
    for name in ("reports-open", "reports-owner"):  # on the secret itself: the runtime SA reads exactly these
        assert by_secret[name] == (runtime, "roles/secretmanager.secretAccessor")
    assert not [c for c in cmds if "projects" in c and opt(c, "--role") == "roles/secretmanager.secretAccessor"]
    [update] = [cmds[i] for i in find(cmds, "gcloud", "run", "services", "update", "docworker")]
    assert opt(update, "--update-secrets") == ("/secrets/reports-open/value=reports-open:latest,"
                                               "/secrets/reports-owner/value=reports-owner:latest")
    assert opt(update, "--update-env-vars") == "SECRETS_DIR=/secrets"
    # mounted only after the service exists and before anything can push to it
    assert find(cmds, "gcloud", "run", "services", "describe")[0] < cmds.index(update)
    assert cmds.index(update) < find(cmds, "gcloud", "pubsub", "subscriptions", "create", "docworker-push")[0]


def test_without_pdf_secrets_nothing_is_mounted(dry):
    _, cmds = dry
    assert not find(cmds, "gcloud", "run", "services", "update")


@pytest.mark.parametrize("args", [("--pdf-secret", "../etc/passwd"), ("--pdf-secret", "a.b"),
                                  ("--pdf-secret", "docworker-rungmp"), ("--secrets-dir", "relative")])
def test_refuses_secret_names_the_worker_would_refuse(args):
    res = dry_run(*args)
    assert res.returncode == 2, res.stdout
    assert res.stdout == ""
