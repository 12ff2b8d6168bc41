"""What happens to an office after a conversion: restart it now, start its spare, or nothing.

Pure (no I/O, no locks): the pool gathers the facts, asks decide(), and carries the decision out. Each rule names
the failure that motivated it; docs/architecture.md has the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.office.api import RestartReason

SPARE_LEAD_MAX = 50
SPARE_AT_RSS_FRACTION = 0.8


class Result(StrEnum):
    """How one conversion ended, as far as the office is concerned."""

    OK = "ok"  # a PDF (or nothing, for the PDF check to report)
    FAULT = "fault"  # LibreOffice refused the document, and the office still answers a ping
    TIMEOUT = "timeout"  # it ran past CONVERSION_TIMEOUT_S
    MEMORY_KILLED = "memory_killed"  # the monitor killed the office above OFFICE_RSS_KILL_MB
    KILLED = "killed"  # soffice.bin died of a SIGKILL the worker did not send
    CRASH = "crash"  # any other death, or no answer, during the conversion


@dataclass(frozen=True)
class Facts:
    """The slot after the conversion: `conversions` counts this one when it succeeded."""

    result: Result
    conversions: int
    rss_bytes: int
    spare_building: bool


@dataclass(frozen=True)
class Limits:
    max_conversions: int
    max_rss_bytes: int

    @property
    def spare_lead(self) -> int:
        """How many conversions before the limit the spare starts (it needs ~1.5 s, i.e. dozens of small jobs)."""
        return max(1, min(SPARE_LEAD_MAX, self.max_conversions // 10))


@dataclass(frozen=True)
class Decision:
    restart: RestartReason | None = None  # take the office out of service now
    spare: RestartReason | None = None  # keep serving; start the replacement, which takes over when proven


NOTHING = Decision()

_LOST = {
    # A hung conversion (tarpit link, pathological file) blocks its office forever: kill it, restart only it.
    Result.TIMEOUT: RestartReason.TIMEOUT,
    # A document can grow an office by ~70 MB/s until the timeout (seen: a 700-byte .fods reached 1.1 GB).
    Result.MEMORY_KILLED: RestartReason.MEMORY,
    # A SIGKILL the worker did not send says nothing about the document (seen under chaos: an innocent slow
    # spreadsheet whose office was killed 3 times ended as a poison record); its own reason keeps it apart.
    Result.KILLED: RestartReason.KILLED,
    # LibreOffice aborts on some documents; a dead or silent office is never given another request.
    Result.CRASH: RestartReason.CRASH,
}


def decide(facts: Facts, limits: Limits) -> Decision:
    """The decision for one finished conversion."""
    if facts.result in _LOST:
        return Decision(restart=_LOST[facts.result])
    if facts.result is Result.FAULT:
        return NOTHING  # the document's fault, not the office's: it answered a ping right after
    # Planned recycles bound memory growth (probe: RSS climbs per new kind of document, then plateaus).
    # A spare starts shortly before the limit and replaces the instance once it is warm, so a recycle costs
    # no wait; only when the limit comes first is the old instance taken out of service at once.
    if facts.conversions >= limits.max_conversions:
        return Decision(restart=RestartReason.MAX_CONVERSIONS)
    if facts.rss_bytes > limits.max_rss_bytes:
        return Decision(restart=RestartReason.MEMORY)
    if facts.spare_building:
        return NOTHING
    if facts.conversions >= limits.max_conversions - limits.spare_lead:
        return Decision(spare=RestartReason.MAX_CONVERSIONS)
    if facts.rss_bytes > limits.max_rss_bytes * SPARE_AT_RSS_FRACTION:
        return Decision(spare=RestartReason.MEMORY)
    return NOTHING
