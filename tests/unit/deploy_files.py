"""Where the deployment artefacts are and how the deploy tests read them: cloudbuild.yaml rendered with its
substitutions, gcloud flags, env pairs, probe specs, and the deploy/provision dry run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLOUDBUILD = ROOT / "cloudbuild.yaml"
SERVICE_YAML = ROOT / "deploy" / "service.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROVISION = ROOT / "deploy" / "provision"
INSTALL_SCRIPT = ROOT / "docker" / "install-system.sh"

ACK_DEADLINE = 600
PROJECT = "my-proj"
# Built-ins that exist for every build, manual or triggered (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values).
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


def deploy_flags(cloudbuild: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The rendered deploy step: its gcloud flags and the env it sets."""
    rendered = render_cloudbuild(cloudbuild)
    args = step(rendered, "deploy")["args"]
    assert args[:2] == ["run", "deploy"]
    f = flags(args)
    assert len(f["--set-env-vars"]) == 1
    return f, env_pairs(f["--set-env-vars"][0])


def dry_run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """deploy/provision --dry-run for PROJECT; it prints the gcloud commands it would run."""
    env = {"PATH": path or "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["bash", str(PROVISION), "--project", PROJECT, "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
