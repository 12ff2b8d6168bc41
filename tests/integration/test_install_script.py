"""Acceptance 1: docker/install-system.sh, the image's install step, on this Debian 12 host.

No container can run here, so this proves what can be proven on the host CI runs on:
* resolvability from nothing: `apt-get install -s` of the package list against an EMPTY dpkg status (a clean
  root) resolves every package from the configured Debian 12 archive, and pulls in no build tool;
* the script's interface (`--list`, `--dev`, bad arguments);
* idempotency: after one run, a second run installs nothing, says so, and leaves dpkg's package set as it was;
* what it installed works: python3 can `import uno`, soffice starts, tini runs, the fonts are known to
  fontconfig. (`worker convert` on top of these is proven by the office tests.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "install-system.sh"
BUILD_TOOLS = {
    "gcc",
    "gcc-12",
    "g++",
    "g++-12",
    "cpp",
    "cpp-12",
    "make",
    "binutils",
    "libc6-dev",
    "build-essential",
    "dpkg-dev",
    "python3-dev",
    "python3.11-dev",
    "python3-pip",
    "libtool",
    "autoconf",
    "automake",
    "cmake",
}

def test_host_is_debian_with_dpkg_and_apt():
    """The install script targets Debian 12 (the image's base and CI's machine); anything else is a failure."""
    assert shutil.which("dpkg-query") and shutil.which("apt-get") and Path("/etc/debian_version").exists()


def listed(*flags: str) -> list[str]:
    res = subprocess.run(["sh", str(SCRIPT), "--list", *flags], capture_output=True, text=True, check=True)
    return res.stdout.split()


def installed_set() -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def can_install() -> bool:
    return os.geteuid() == 0 or (
        shutil.which("sudo") is not None
        and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    )


def test_list_interface():
    runtime, dev = listed(), listed("--dev")
    assert runtime and set(runtime) < set(dev)
    node = set() if shutil.which("npm") else {"nodejs", "npm"}  # Debian's, only when no npm is on the PATH
    assert set(dev) - set(runtime) == {"poppler-utils", "prometheus"} | node
    for needed in (
        "libreoffice-writer-nogui",
        "libreoffice-calc-nogui",
        "libreoffice-impress-nogui",
        "libreoffice-draw-nogui",
        "bubblewrap",
        "python3-uno",
        "tini",
        "fonts-liberation",
        "fonts-liberation2",
        "fonts-crosextra-carlito",
        "fonts-crosextra-caladea",
        "fonts-dejavu-core",
        "fonts-noto-cjk",
        "ca-certificates",
    ):
        assert needed in runtime
    assert not set(runtime) & BUILD_TOOLS
    assert listed("--dev") == listed("--dev")  # stable order
    bad = subprocess.run(["sh", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


def test_resolves_from_an_empty_root_without_build_tools(tmp_path):
    lists = Path("/var/lib/apt/lists")
    if not any(
        p.name.endswith(("_Packages", "_Packages.lz4", "_Packages.gz", "_Packages.xz"))
        for p in lists.iterdir()
    ):
        pytest.fail("no apt package lists: run apt-get update (make setup does when it installs)")
    status = tmp_path / "status"
    status.write_text("")
    (tmp_path / "cache").mkdir()
    pkgs = listed()
    res = subprocess.run(
        [
            "apt-get",
            "install",
            "-s",
            "--no-install-recommends",
            f"-o=Dir::State::status={status}",
            f"-o=Dir::Cache={tmp_path / 'cache'}",
            "-o=Debug::NoLocking=1",
            *pkgs,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C"},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    would_install = {m.group(1) for m in re.finditer(r"(?m)^Inst (\S+)", res.stdout)}
    assert set(pkgs) <= would_install, set(pkgs) - would_install
    assert not would_install & BUILD_TOOLS, would_install & BUILD_TOOLS
    assert "python3.11" in would_install, "python3-uno brings Debian's python3 (the worker's interpreter)"


def test_second_run_installs_nothing_and_says_so():
    if not can_install():
        pytest.fail("the install script needs root or passwordless sudo")
    first = subprocess.run(["sh", str(SCRIPT), "--dev"], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    before = installed_set()
    second = subprocess.run(["sh", str(SCRIPT), "--dev"], capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to install" in second.stdout
    assert "installing" not in second.stdout
    assert installed_set() == before
    for pkg in listed("--dev"):
        status = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg], capture_output=True, text=True)
        assert status.stdout == "install ok installed", pkg


def test_what_it_installed_works():
    missing = [
        p
        for p in listed()
        if subprocess.run(["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True, text=True).stdout
        != "install ok installed"
    ]
    if missing:
        pytest.fail(f"run docker/install-system.sh first (missing: {missing})")
    uno = subprocess.run(
        ["/usr/bin/python3", "-c", "import uno, unohelper; print(uno.__file__)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert uno.returncode == 0, uno.stderr
    soffice = shutil.which("soffice") or "/usr/lib/libreoffice/program/soffice"
    version = subprocess.run([soffice, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "LibreOffice" in version.stdout, version.stdout + version.stderr
    tini = subprocess.run(["/usr/bin/tini", "--version"], capture_output=True, text=True, timeout=10)
    assert tini.returncode == 0 and "tini" in tini.stdout
    families = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True, timeout=60).stdout
    for family in (
        "Liberation Serif",
        "Liberation Sans",
        "Carlito",
        "Caladea",
        "DejaVu Sans",
        "Noto Sans CJK",
    ):
        assert family in families, family
