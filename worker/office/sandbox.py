"""The boundary around LibreOffice: which layers this machine allows (probed once at start) and the command that
applies them to an office's process tree.

A hostile document is parsed by LibreOffice, so the office is treated as compromised: it gets no network (its own
network namespace with only loopback), sees only its install, its own instance directory and the one input it
converts (a mount namespace), cannot see the worker's processes or environment (a pid namespace, a cleared
environment), and runs as a user that owns none of the worker's files. bubblewrap builds the namespaces; where the
platform refuses them the worker says so at start and keeps what it can (docs/operations.md, threat model).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from worker.errors import Reason, WorkerError

# The office's user when the worker runs as root: owns nothing of the worker's, cannot read its 0600 files or
# mounted secrets. 65534 is nobody/nogroup on Debian; only instance directories are ever given to it.
OFFICE_UID = OFFICE_GID = 65534
LAYERS = ("network", "filesystem", "user", "profile")
# What LibreOffice and the launcher's Python read from /etc; nothing else of /etc is visible inside.
ETC_ENTRIES = ("fonts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
               "libreoffice", "mime.types")
# LibreOffice links /usr/lib/libreoffice/share/prereg and uno_packages here; fontconfig's cache saves start time.
VAR_ENTRIES = ("/var/lib/libreoffice", "/var/spool/libreoffice", "/var/cache/fontconfig")
# No --die-with-parent: it fires when the worker *thread* that started bwrap ends; the launcher's lifeline pipe
# (uno/launcher.py) ends the sandbox with the worker process instead.
NAMESPACES = ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


class SandboxMode(StrEnum):
    AUTO = "auto"  # bubblewrap if this machine allows it, otherwise the fallback, said at start
    BWRAP = "bwrap"  # bubblewrap or refuse to start
    OFF = "off"  # no sandbox at all (debugging only), said loudly at start


@dataclass(frozen=True)
class Sandbox:
    """How every office process tree is confined on this machine; decided once by probe()."""

    mode: SandboxMode
    bwrap: str | None = None  # None: no namespaces
    unshare_user: bool = False  # bwrap creates a user namespace first (the worker is not root, or root lacks caps)
    office_uid: int | None = None  # the uid the office runs as, when not the worker's (the worker runs as root)
    start_as: int | None = None  # the worker starts bwrap as office_uid (else the launcher drops to it itself)
    why_off: str = ""  # for the start-up log line: why a layer is missing

    @property
    def namespaced(self) -> bool:
        return self.bwrap is not None

    def as_worker(self) -> Sandbox:
        """The same namespaces, the worker's own uid: for the profile initialiser, which loads no document."""
        return replace(self, office_uid=None, start_as=None)

    def popen_user(self) -> dict[str, Any]:
        """subprocess.Popen arguments that start the sandbox as the office user (empty: as the worker)."""
        if self.start_as is None:
            return {}
        return {"user": self.start_as, "group": OFFICE_GID, "extra_groups": []}

    def layers(self, profile_hardened: bool) -> dict[str, bool]:
        """Which layers are on: the start-up log line and the worker_office_sandbox metric say the same."""
        return {"network": self.namespaced, "filesystem": self.namespaced, "user": self.office_uid is not None,
                "profile": profile_hardened}

    def env(self, instance_dir: Path) -> dict[str, str]:
        """The office's whole environment: nothing of the worker's (no credentials, no tokens, no $HOME secrets)."""
        return {"HOME": str(instance_dir), "TMPDIR": str(instance_dir / "tmp"), "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8", "SAL_USE_VCLPLUGIN": "svp"}

    def command(self, inner: Sequence[str], instance_dir: Path, readonly: Sequence[Path],
                writable: Sequence[Path] = ()) -> list[str]:
        """`inner` (the launcher) wrapped so that it and its soffice.bin run inside the sandbox.

        Paths keep their names inside (the instance directory and the read-only files are bound at the same
        path), so the worker and the office agree on every path they exchange.
        """
        if self.bwrap is None:
            return list(inner)
        cmd = [self.bwrap, *(("--unshare-user",) if self.unshare_user else ()), *NAMESPACES, "--cap-drop", "ALL"]
        if self.run_as():  # the launcher needs these two for its one setuid(), then has no capabilities at all
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        cmd += ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        for top in ("bin", "lib", "lib64", "sbin"):  # merged /usr: the symlinks, else the directories read-only
            path = Path("/") / top
            if path.is_symlink():
                cmd += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                cmd += ["--ro-bind", str(path), str(path)]
        binds = [("--ro-bind-try", Path("/etc") / name) for name in ETC_ENTRIES]
        binds += [("--ro-bind-try", Path(path)) for path in VAR_ENTRIES]
        binds += [("--bind", path) for path in (instance_dir, *writable)]
        binds += [("--ro-bind", path) for path in readonly]
        # bwrap would create the directories leading to a bind 0700 (root's only): the office user must pass them
        parents = sorted({p for _, path in binds for p in path.parents if p not in (Path("/"), Path("/tmp"))},
                         key=lambda p: len(p.parts))
        for parent in parents:
            cmd += ["--perms", "0755", "--dir", str(parent)]
        for option, path in binds:
            cmd += [option, str(path), str(path)]
        cmd += ["--chdir", str(instance_dir), "--clearenv"]
        for key, value in self.env(instance_dir).items():
            cmd += ["--setenv", key, value]
        return [*cmd, "--", *inner]

    def run_as(self) -> list[str]:
        """Launcher arguments that make it drop to the office user before it starts anything."""
        if self.office_uid is None or self.start_as is not None:
            return []
        return ["--run-as", f"{self.office_uid}:{OFFICE_GID}"]

    def give(self, path: Path) -> None:
        """Hand a directory tree the office must write (its profile, tmp, jobs area) to the office user."""
        if self.office_uid is None:
            return
        os.chown(path, self.office_uid, OFFICE_GID)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.office_uid, OFFICE_GID, follow_symlinks=False)

    def give_fd(self, dir_fd: int) -> None:
        """Hand one fresh directory (opened by the worker) to the office user, so the office may write its PDF."""
        if self.office_uid is not None:
            os.fchown(dir_fd, self.office_uid, OFFICE_GID)

    def office_can_only_read(self, st: os.stat_result) -> bool:
        """Whether a hard link to this file gives the office read access and nothing more (else stage a copy)."""
        if self.office_uid is None or st.st_uid == self.office_uid or not stat.S_ISREG(st.st_mode):
            return False
        return bool(st.st_mode & stat.S_IROTH) and not st.st_mode & (stat.S_IWOTH | stat.S_IWGRP)


def probe(mode: SandboxMode, uno_python: str, work_dir: Path, readonly: Sequence[Path] = ()) -> Sandbox:
    """Decide once, with a trivial sandboxed command per candidate (same binds as the launcher's), what works here.

    As root, in this order: bubblewrap without a user namespace, the launcher dropping to OFFICE_UID inside (all
    layers); bubblewrap started as OFFICE_UID with a user namespace (all layers; for a root without
    CAP_SYS_ADMIN, as Docker's default capabilities leave it; needs WORK_DIR and the launcher reachable by that
    uid); bubblewrap as root with a user namespace (no separate user: a user namespace maps only the uid that
    created it). Unprivileged, only the user-namespace path exists.
    """
    root = os.geteuid() == 0
    if mode is SandboxMode.OFF:
        return Sandbox(mode, why_off="OFFICE_SANDBOX=off")
    bwrap = shutil.which("bwrap")
    errors: list[str] = []
    if bwrap is not None:
        candidates = [Sandbox(mode, bwrap, False, OFFICE_UID), Sandbox(mode, bwrap, True, OFFICE_UID, OFFICE_UID),
                      Sandbox(mode, bwrap, True)] if root else [Sandbox(mode, bwrap, True)]
        for candidate in candidates:
            error = _try(candidate, uno_python, work_dir, readonly)
            if error is None:
                if candidate.office_uid is None and root:
                    return Sandbox(mode, bwrap, True, None, why_off=f"user: bwrap needs a user namespace here "
                                   f"({errors[0] if errors else 'no reason given'}), which maps only the worker's uid")
                if candidate.office_uid is None:
                    return Sandbox(mode, bwrap, True, None, why_off="user: the worker is not root, so the office "
                                   "runs as the worker's uid (inside its namespaces)")
                return candidate
            errors.append(error)
    why = f"bwrap not usable here: {'; '.join(errors)}" if errors else "bwrap is not installed"
    if mode is SandboxMode.BWRAP:
        raise WorkerError(Reason.OFFICE_UNAVAILABLE, f"OFFICE_SANDBOX=bwrap but {why}")
    if root and _traversable_by(work_dir, OFFICE_UID):
        return Sandbox(mode, office_uid=OFFICE_UID, why_off=f"network, filesystem: {why}")
    if root:
        why += f"; user: uid {OFFICE_UID} cannot reach WORK_DIR={work_dir} (a parent directory is not searchable)"
    else:
        why += "; user: the worker is not root, so it cannot run the office as another user"
    return Sandbox(mode, why_off=f"network, filesystem: {why}")


def _try(candidate: Sandbox, uno_python: str, work_dir: Path, readonly: Sequence[Path]) -> str | None:
    """Run a trivial command in this candidate's sandbox (the uid drop included); None when it works."""
    work_dir.mkdir(parents=True, exist_ok=True)
    drop = ""
    if candidate.run_as():
        drop = f"os.setgroups([]); os.setgid({OFFICE_GID}); os.setuid({candidate.office_uid}); "
    reads = "".join(f"os.stat({str(path)!r}); " for path in readonly)
    inner = [uno_python, "-S", "-c", f"import os; {drop}{reads}"]
    cmd = candidate.command(inner, work_dir, readonly)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin"}, **candidate.popen_user())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return None


def _traversable_by(path: Path, uid: int) -> bool:
    """Whether `uid` (not root, in no group of note) can search every directory down to `path`."""
    current = Path(path).resolve()
    for directory in [*reversed(current.parents), current]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if not st.st_mode & (stat.S_IXUSR if st.st_uid == uid else stat.S_IXOTH):
            return False
    return True

