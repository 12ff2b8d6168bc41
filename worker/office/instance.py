"""One office process group: start, stop, ping, convert. No policy here; the pool decides when and why."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import IO, Any

from worker.config import OfficeSettings
from worker.office import procfs
from worker.office.api import STOCK_EXPORT, Export
from worker.office.launch import LAUNCHER_EXIT_OFFICE_KILLED, RPC_SOCKET, free_port, launcher_command, lifeline_fd
from worker.office.procfs import group_members, host_pid, unix_socket_paths
from worker.office.profile import add_dead_proxy
from worker.office.rpc import LauncherClient
from worker.office.sandbox import Sandbox, SandboxMode


class OfficeStartError(Exception):
    """The office did not become ready: it exited, or it never answered within the start timeout."""


class OfficeInstance:
    """A launcher (uno/launcher.py) and its soffice.bin, in a process group of their own, in a private directory.

    With a sandbox, both run inside it and see only that directory: the profile, tmp, and a jobs area where each
    conversion's input is staged and its PDF written.
    """

    def __init__(self, settings: OfficeSettings, name: str, template: Path, log: IO[bytes],
                 sandbox: Sandbox | None = None) -> None:
        self.settings = settings
        self.name = name
        self.template = template
        self.log = log
        self.sandbox = sandbox or Sandbox(SandboxMode.OFF)
        self.dir = settings.work_dir / "office" / name
        self.rpc_socket = self.dir / RPC_SOCKET
        self.uno_port = free_port()  # on the sandbox's own loopback when it has a network namespace
        self.popen: subprocess.Popen[bytes] | None = None
        self.office_pid: int | None = None
        self._osl_pipes: list[str] = []
        self._jobs = itertools.count()
        self._jobs_fd: int | None = None  # opened before the office runs: job files never go through its paths
        self._rpc = LauncherClient(self.rpc_socket)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Fresh copy of the profile, private TMPDIR (catches lu*.tmp leftovers), own session for group kills."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tmp").mkdir(parents=True)
        (self.dir / "jobs").mkdir()
        shutil.copytree(self.template, self.dir / "profile", symlinks=True)
        if not self.sandbox.namespaced:  # the office shares the worker's network: the profile must stop fetches
            add_dead_proxy(self.dir / "profile", self.settings.uno_dir)
        self.sandbox.give(self.dir)
        self._jobs_dir_fd()
        cmd = launcher_command(self.settings, self.sandbox, self.dir, self.uno_port)
        self.popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=self.sandbox.env(self.dir),
            cwd=self.dir, start_new_session=True, pass_fds=(lifeline_fd(),), **self.sandbox.popen_user(),
        )

    def wait_ready(self, timeout: float) -> None:
        """Readiness is a real UNO round trip, polled every 10 ms: no fixed sleeps."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise OfficeStartError(f"{self.name}: launcher exited with {self.returncode()} during start")
            try:
                info = self.ping(timeout=2.0)
                self.office_pid = self._host_pid(int(info["office_pid"]))
                self._osl_pipes = unix_socket_paths(self.office_pid, prefix="/tmp/OSL_PIPE_")
                return
            except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
                last = exc
                time.sleep(0.01)
        raise OfficeStartError(f"{self.name}: not ready after {timeout:.0f} s ({last!r})")

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM the whole group, SIGKILL after a short grace, reap, and prove the group is empty."""
        popen = self.popen
        if popen is not None:
            pgid = popen.pid
            # grace=0: a recycled instance that is idle has nothing to finish; its profile is thrown away anyway.
            _signal_group(pgid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            # Seen here: after SIGTERM oosplash/soffice.bin can linger; never leave an orphan holding the port.
            deadline = time.monotonic() + grace
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if group_members(pgid):
                _signal_group(pgid, signal.SIGKILL)
            try:
                popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                _signal_group(pgid, signal.SIGKILL)
                time.sleep(0.05)
        self._rpc.close()
        if self._jobs_fd is not None:
            os.close(self._jobs_fd)
            self._jobs_fd = None
        for path in self._osl_pipes:
            try:
                os.unlink(path)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_office(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal soffice.bin only (tests and chaos: SIGKILL is a kill from outside, SIGSEGV or SIGABRT a crash)."""
        if self.office_pid:
            os.kill(self.office_pid, sig)

    def killed_from_outside(self, wait_s: float = 2.0) -> bool:
        """Whether the launcher reported that its soffice.bin died of a SIGKILL (it exits right after)."""
        if self.popen is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(wait_s)
        return self.popen.poll() == LAUNCHER_EXIT_OFFICE_KILLED

    # -- state -----------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    @property
    def pgid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def _host_pid(self, sandbox_pid: int) -> int:
        """RSS checks and kill_office need the pid the worker sees, not the one inside the pid namespace."""
        if self.popen is None:
            raise OfficeStartError(f"{self.name}: not started")
        pid = host_pid(self.popen.pid, sandbox_pid)
        if pid is None:
            raise OfficeStartError(f"{self.name}: soffice.bin (pid {sandbox_pid} in its sandbox) is not in the "
                                   f"instance's process group")
        return pid

    def rss_bytes(self) -> int:
        """Resident memory of soffice.bin, the process that grows; 0 when it is gone."""
        return procfs.rss_bytes(self.office_pid) if self.office_pid else 0

    # -- calls -----------------------------------------------------------------------------------

    def _call(self, timeout: float, method: str, *params: Any) -> Any:
        """Every request to the launcher goes through here (the sandbox tests stand in for the office at this seam)."""
        return self._rpc.call(timeout, method, *params)

    def ping(self, timeout: float) -> dict[str, Any]:
        result = self._call(timeout, "ping")
        assert isinstance(result, dict)
        return result

    def convert(self, src: Path, dst: Path, import_filter: str | None, export: Export = STOCK_EXPORT, *,
                timeout: float) -> None:
        """Stage src in a fresh directory of the jobs area (the only input the office sees), convert, copy the PDF out.

        The office can write in its instance directory, so a compromised one could plant symlinks there: every
        file operation here goes through directory fds the worker opened itself (never a path the office could
        have swapped), the input is written O_EXCL|O_NOFOLLOW before the office may write in the directory, and
        the PDF is read O_NOFOLLOW and must be a regular file with a single link.
        """
        jobs_fd = self._jobs_dir_fd()
        name = f"{next(self._jobs)}-{secrets.token_hex(4)}"
        os.mkdir(name, 0o700, dir_fd=jobs_fd)
        try:
            job_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=jobs_fd)
            try:
                staged = "input" + src.suffix
                _stage(src.resolve(), staged, job_fd, self.sandbox)
                self.sandbox.give_fd(job_fd)
                job = self.dir / "jobs" / name
                update = self.settings.update_indexes if export.update_indexes is None else export.update_indexes
                self._call(timeout, "convert", str(job / staged), str(job / "output.pdf"), import_filter or "",
                           update, dict(export.filter_data or {}), export.load_password or "")
                _copy_out(job_fd, "output.pdf", dst)
            finally:
                os.close(job_fd)
        finally:
            shutil.rmtree(name, dir_fd=jobs_fd, ignore_errors=True)

    def _jobs_dir_fd(self) -> int:
        if self._jobs_fd is None:
            (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
            self._jobs_fd = os.open(self.dir / "jobs", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        return self._jobs_fd


class OfficeOutputError(OSError):
    """The office left something other than a plain file as its PDF: treated like a crashed office."""


def _stage(src: Path, name: str, dir_fd: int, sandbox: Sandbox) -> None:
    """A hard link when it lets the office read the input and nothing more; otherwise a copy the office may read."""
    try:
        if sandbox.office_can_only_read(src.stat()):
            os.link(src, name, dst_dir_fd=dir_fd)
            return
    except OSError:
        pass  # another filesystem, or links refused (fs.protected_hardlinks): copy
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    with open(fd, "wb") as out, src.open("rb") as inp:
        os.fchmod(out.fileno(), 0o644)  # whatever the worker's umask: the office user must read it
        shutil.copyfileobj(inp, out, 1 << 20)


def _copy_out(dir_fd: int, name: str, dst: Path) -> None:
    """Copy the office's PDF to dst, owned by the worker; nothing at all is left for the PDF check to report."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:  # ELOOP: a symlink where the PDF should be
        raise OfficeOutputError(f"the office left no plain file as its PDF ({exc})") from exc
    with open(fd, "rb") as pdf:
        st = os.fstat(pdf.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OfficeOutputError("the office left no plain file as its PDF (a link or a special file)")
        with dst.open("wb") as out:
            shutil.copyfileobj(pdf, out, 1 << 20)



def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass

