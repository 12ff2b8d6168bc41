"""What the rest of the worker may rely on from the office pool: its values and the protocols it meets.

job.py and conversion.py type against Converter, web.py and metrics.py against PoolView, so a test passes a
small fake of the side it needs; ConversionPool is both (OfficePool meets it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class State(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class RestartReason(StrEnum):
    EXIT = "exit"  # the office went away while idle
    CRASH = "crash"  # it died or stopped answering during a conversion
    KILLED = "killed"  # a SIGKILL from outside the worker during a conversion (OOM killer, operator)
    TIMEOUT = "timeout"  # a conversion ran past the timeout and was killed
    MAX_CONVERSIONS = "max_conversions"  # planned recycle after N conversions
    MEMORY = "memory"  # soffice.bin RSS above the ceiling
    UNHEALTHY = "unhealthy"  # an idle health ping failed
    START_FAILED = "start_failed"  # a start attempt did not reach ready


@dataclass(frozen=True)
class InstanceStatus:
    """What /ready and /metrics show per instance."""

    index: int
    state: State
    pid: int | None
    conversions: int
    rss_bytes: int
    seconds_since_ok: float | None
    restarts: int


@dataclass(frozen=True)
class ConversionTiming:
    queue_wait_s: float
    convert_s: float
    instance: int


@dataclass(frozen=True)
class Export:
    """How to load and export one document; the default is the stock export the profile configures.

    `filter_data` None sends no FilterData (LibreOffice then uses the profile's PDF settings); any mapping must be
    complete (worker/options.py to_filter_data says why). `load_password` opens an encrypted input; it crosses
    to the launcher over its private socket only, never argv or a log. `update_indexes` None: the service setting.
    """

    filter_data: Mapping[str, bool | int | str] | None = None
    load_password: str | None = None
    update_indexes: bool | None = None

    def __repr__(self) -> str:
        return (f"Export(filter_data={'custom' if self.filter_data else None}, "
                f"load_password={'***' if self.load_password else None}, update_indexes={self.update_indexes})")


STOCK_EXPORT = Export()


class Converter(Protocol):
    """What a job needs from the pool (worker/conversion.py, worker/job.py)."""

    def convert(self, src: Path, dst: Path, import_filter: str | None = None,
                export: Export = STOCK_EXPORT) -> ConversionTiming:
        """src to PDF at dst; WorkerError with a retryable reason on any office trouble."""
        ...


class PoolView(Protocol):
    """What operators see of the pool: /ready (worker/web.py) and the pool gauges (worker/metrics.py)."""

    def ready(self) -> bool:
        """At least one office is serving and answered a real round trip recently."""
        ...

    def status(self) -> list[InstanceStatus]:
        ...

    @property
    def queue_depth(self) -> int:
        ...

    @property
    def size(self) -> int:
        ...

    @property
    def sandbox_layers(self) -> Mapping[str, bool]:
        ...

    @property
    def restarts(self) -> Mapping[str, int]:
        """Restarts so far by RestartReason value (worker_office_restarts_total)."""
        ...


class ConversionPool(Converter, PoolView, Protocol):
    """The whole pool as the rest of the worker uses it; OfficePool is the one real implementation."""
