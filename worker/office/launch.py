"""How an office process group is started: the launcher command, what it reads, its lifeline, a free port.

Shared by the instances (worker/office/instance.py) and the profile initialiser (worker/office/profile.py).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import unoserver

from worker.config import OfficeSettings
from worker.office.sandbox import Sandbox

RPC_SOCKET = "rpc.sock"  # in the instance directory: the only way in, across the office's network namespace
LAUNCHER_EXIT_OFFICE_KILLED = 6  # uno/launcher.py EXIT_OFFICE_KILLED: soffice.bin died of a SIGKILL


def free_port() -> int:
    """A loopback port the kernel just handed out; good enough for a child that binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launcher_files(settings: OfficeSettings) -> tuple[Path, Path]:
    """What the launcher reads besides the office install: itself and the unoserver package (bound read-only)."""
    return (settings.uno_dir / "launcher.py").resolve(), Path(unoserver.__file__).resolve().parent


def launcher_command(settings: OfficeSettings, sandbox: Sandbox, instance_dir: Path, uno_port: int,
                     *extra: str, profile: Path | None = None) -> list[str]:
    """The one way to start uno/launcher.py, sandboxed (pool instances and the profile initialiser share it).

    instance_dir holds `profile/` and `tmp/` (the private TMPDIR catches LibreOffice's lu*.tmp leftovers) and is
    the launcher's working directory, where it binds its RPC socket. Start it with pass_fds=(lifeline_fd(),).
    """
    launcher, package = launcher_files(settings)
    profile = profile or instance_dir / "profile"
    inner = [
        settings.uno_python, str(launcher), "--rpc-socket", RPC_SOCKET, "--uno-port", str(uno_port),
        "--profile", str(profile), "--soffice", settings.soffice,
        "--unoserver-path", str(package.parent), "--start-timeout", str(settings.start_timeout_s),
        "--lifeline-fd", str(lifeline_fd()),
        *sandbox.run_as(), *extra,
    ]
    writable = () if profile.is_relative_to(instance_dir) else (profile,)
    return sandbox.command(inner, instance_dir, (launcher, package), writable)


_lifeline: tuple[int, int] | None = None
_lifeline_lock = threading.Lock()


def lifeline_fd() -> int:
    """The read end of a pipe whose write end only this process holds: launchers stop their office on its EOF.

    The kernel closes the write end however the worker dies (SIGKILL included), in or out of a pid namespace.
    """
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()  # both ends non-inheritable: only pass_fds hands the read end to a launcher
        return _lifeline[0]

