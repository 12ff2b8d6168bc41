"""XML-RPC to one launcher over its UNIX socket: one kept-alive connection, a timeout per call, never a retry."""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import threading
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """A short name for a UNIX socket path (sun_path holds 108 bytes, work dirs can be longer): via its dir's fd."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class UnixHTTPConnection(http.client.HTTPConnection):
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


class Transport(xmlrpc.client.Transport):
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
            conn = UnixHTTPConnection(self.path, self.timeout)
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



class LauncherClient:
    """The calls to one launcher (uno/launcher.py): one request at a time on the one connection."""

    def __init__(self, path: Path) -> None:
        self._transport = Transport(path)
        self._rpc = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=self._transport, allow_none=True)
        self._lock = threading.Lock()

    def call(self, timeout: float, method: str, *params: Any) -> Any:
        with self._lock:
            self._transport.timeout = timeout
            return getattr(self._rpc, method)(*params)

    def close(self) -> None:
        self._transport.close()
