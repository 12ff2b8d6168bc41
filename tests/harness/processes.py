"""Which live processes a test started, found by their command line in /proc (for orphan checks and cleanup).

RSS comes from worker.office.procfs.rss_bytes, the reader the pool itself uses.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path


def live_processes(match: Callable[[bytes], bool]) -> list[int]:
    """PIDs of live (non-zombie) processes, this one excluded, whose NUL-separated command line matches."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and match(cmdline):
            found.append(int(entry))
    return sorted(found)


def processes_mentioning(path: Path) -> list[int]:
    """Every live process whose command line contains `path` (a worker's WORK_DIR, a pool's work_dir)."""
    needle = str(path).encode()
    return live_processes(lambda cmdline: needle in cmdline)


def office_pids_under(path: Path) -> list[int]:
    """soffice.bin itself (not launchers) whose command line mentions `path`, e.g. in its profile."""
    needle = str(path).encode()
    return live_processes(lambda c: c.split(b"\0", 1)[0].endswith(b"soffice.bin") and needle in c)


def launcher_pids_under(path: Path) -> list[int]:
    """uno/launcher.py processes (the interpreter running it, not the bwrap around it) that mention `path`."""
    needle = str(path).encode()
    return live_processes(lambda c: [*c.split(b"\0"), b""][1].endswith(b"launcher.py") and needle in c)


def bytes_read_by_this_process() -> int:
    """Bytes this process has read through read(2) so far (/proc/self/io rchar): a bound that load cannot flake."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no rchar line")


def kill_pids(pids: Iterable[int]) -> list[int]:
    """SIGKILL each PID (ours: children of a worker we started); return those that were alive."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def count_entries(path: str) -> int:
    """Entries of a /proc directory (a process's fd/ or task/); 0 once the process is gone."""
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def paths_in_use() -> set[str]:
    """Every unix socket path bound and every file held open by any live process (/proc/net/unix, /proc/*/fd)."""
    live: set[str] = set()
    try:
        with open("/proc/net/unix") as f:
            live.update(line.split()[7] for line in f.read().splitlines()[1:] if len(line.split()) >= 8)
    except OSError:
        pass
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                live.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    return live
