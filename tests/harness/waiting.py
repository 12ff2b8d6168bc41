"""The one poll loop: tests wait for a state to appear instead of sleeping a guessed amount."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from worker import emulators

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], timeout_s: float, *, every_s: float = 0.05,
             proc: emulators.Proc | None = None) -> T:
    """Poll `probe` until it returns something truthy and return that; fail naming `what` after `timeout_s`.

    With `proc`, fail at once if that process exits meanwhile (its log is named in the failure).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited while waiting for {what}; see {proc.log_path}")
        if time.monotonic() > deadline:
            where = f"; log {proc.log_path}" if proc is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{where}")
        time.sleep(every_s)
