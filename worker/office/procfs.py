"""What /proc says about an office's process group: its members, a pid across the sandbox, its sockets, its RSS."""

from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """Resident memory of one process; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


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


def unix_socket_paths(pid: int, prefix: str) -> list[str]:
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
