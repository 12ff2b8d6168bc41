"""One office process group: start, stop, ping, convert. No policy here; the pool decides when and why."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import unoserver

from worker.config import OfficeSettings
from worker.office.sandbox import Sandbox, SandboxMode

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LAUNCHER_EXIT_OFFICE_KILLED = 6  # uno/launcher.py EXIT_OFFICE_KILLED: soffice.bin died of a SIGKILL


class OfficeStartError(Exception):
    """The office did not become ready: it exited, or it never answered within the start timeout."""


RPC_SOCKET = "rpc.sock"  # in the instance directory: the only way in, across the office's network namespace


def free_port() -> int:
    """A loopback port the kernel just handed out; good enough for a child that binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """A short name for a UNIX socket path (sun_path holds 108 bytes, work dirs can be longer): via its dir's fd."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to the launcher over its UNIX socket: the office has no network the worker shares."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            with unix_address(self.path) as address:
                sock.connect(address)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """One kept-alive HTTP connection per instance, a socket timeout per call, and never a second attempt.

    unoserver's client has no socket timeout (a hung office would hang the caller forever), and the stock
    Transport re-sends a request once when a cached connection turns out reset: for convert() that could run a
    conversion twice, the second time on an office that restarted in between. Here a connection the server has
    closed while idle is noticed *before* sending (it turns readable), and any error after sending is the caller's.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.timeout = 10.0

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached = self._connection[1]
        if cached is not None and cached.sock is not None and _peer_closed(cached.sock):
            self.close()  # nothing was sent on it: reconnecting is not a retry
        conn = self._connection[1]
        if conn is None:
            conn = _UnixHTTPConnection(self.path, self.timeout)
            self._connection = host, conn
        conn.timeout = self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return conn

    def request(self, host: Any, handler: Any, request_body: Any, verbose: bool = False) -> Any:
        try:
            return self.single_request(host, handler, request_body, verbose)
        except BaseException:
            self.close()  # a half-read response must never be taken for the next call's answer
            raise


def _peer_closed(sock: socket.socket) -> bool:
    """An idle request/response connection is readable only when the peer closed it (EOF) or reset it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


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
        self._transport = _Transport(self.rpc_socket)
        self._rpc = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=self._transport, allow_none=True)
        self._rpc_lock = threading.Lock()  # one request at a time on the one connection

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Fresh copy of the profile, private TMPDIR (catches lu*.tmp leftovers), own session for group kills."""
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tmp").mkdir(parents=True)
        (self.dir / "jobs").mkdir()
        shutil.copytree(self.template, self.dir / "profile", symlinks=True)
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
                self._osl_pipes = _unix_socket_paths(self.office_pid, prefix="/tmp/OSL_PIPE_")
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
        self._transport.close()
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
        if not self.office_pid:
            return 0
        try:
            with open(f"/proc/{self.office_pid}/statm") as f:
                return int(f.read().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    # -- calls -----------------------------------------------------------------------------------

    def _call(self, timeout: float, method: str, *params: Any) -> Any:
        with self._rpc_lock:
            self._transport.timeout = timeout
            return getattr(self._rpc, method)(*params)

    def ping(self, timeout: float) -> dict[str, Any]:
        result = self._call(timeout, "ping")
        assert isinstance(result, dict)
        return result

    def convert(self, src: Path, dst: Path, import_filter: str | None, timeout: float) -> None:
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
                self._call(timeout, "convert", str(job / staged), str(job / "output.pdf"), import_filter or "",
                           self.settings.update_indexes)
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

    def close_connection(self) -> None:
        with self._rpc_lock:
            self._transport.close()


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


def host_pid(pgid: int, sandbox_pid: int) -> int | None:
    """The worker's view of a pid the launcher reported from inside its pid namespace (the last field of NSpid).

    Without a pid namespace both are the same. Searched within the instance's process group only.
    """
    for pid in group_members(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        except OSError:
            continue
        if nspid and int(nspid[-1]) == sandbox_pid:
            return pid
    return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """PIDs still in a process group, zombies excluded (they hold no port and their parent reaps them)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _unix_socket_paths(pid: int, prefix: str) -> list[str]:
    """Paths of the unix sockets a process listens on (LibreOffice's OSL_PIPE lands in /tmp whatever TMPDIR says)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open("/proc/net/unix") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    paths = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 8 and parts[6] in inodes and parts[7].startswith(prefix):
            paths.append(parts[7])
    return paths
