"""The supervisor: a bounded queue in front of N office instances, and the rules that keep them healthy.

Like Gotenberg's supervisor, the instance only knows start/stop/ping/convert; every restart rule lives here and its
comment names the failure that motivated it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, NoReturn

from worker.config import OfficeSettings
from worker.errors import Reason, WorkerError
from worker.office.instance import (
    OfficeInstance,
    OfficeStartError,
    Ports,
    free_port,
    launcher_command,
    launcher_env,
)

log = logging.getLogger(__name__)

PROBE_DIR = Path(__file__).parent / "probe"
# One per family: text, spreadsheet, presentation. OOXML, because that is what arrives and its import filters are
# separate modules: after flat-ODF probes the first .docx still cost ~4x a warm one (bench/README.md, Performance).
# Loaded with the import filter sniff picks, as real jobs are: the first load naming a filter also builds
# unoserver's filter table, which otherwise lands on the first request.
PROBE_DOCS = ("probe.docx", "probe.xlsx", "probe.pptx")
PROBE_FILTERS = {"probe.docx": "MS Word 2007 XML", "probe.xlsx": "Calc MS Excel 2007 XML",
                 "probe.pptx": "Impress MS PowerPoint 2007 XML"}
INIT_MARKER = ".docworker-initialised"


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


class _Slot:
    """One position in the pool; its instance is replaced on every restart (epoch counts replacements)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.instance: OfficeInstance | None = None
        self.state = State.STARTING
        self.epoch = 0
        self.conversions = 0
        self.restarts = 0
        self.last_ok: float | None = None
        self.use = threading.Lock()  # held by a conversion or a health ping: one request per office
        self.building = False  # a replacement (or the first instance) is being started; guarded by `use`
        self.started = threading.Event()  # the first start reached "proven" (or gave up)
        self.memory_killed = False  # the monitor killed this office mid-conversion for its RSS


class OfficePool:
    """N supervised offices; convert() borrows one, or fails fast when the wait queue is full."""

    HEALTH_INTERVAL_S = 5.0
    MONITOR_INTERVAL_S = 0.25
    SPARE_LEAD_MAX = 50
    SPARE_AT_RSS_FRACTION = 0.8

    def __init__(self, settings: OfficeSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.restarts: Counter[str] = Counter()
        self._slots = [_Slot(i) for i in range(settings.pool_size)]
        self._idle: queue.Queue[tuple[_Slot, int]] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._closed = False
        self._stop = threading.Event()
        self._template: Path | None = None
        self._monitor: threading.Thread | None = None
        self._give_up_on_start = False
        self._last_start_error = ""
        self._log: IO[bytes] | None = None
        self._live: set[OfficeInstance] = set()  # every started instance, ready or not, until it is stopped
        self._live_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, wait: bool = True, *, give_up_on_failure: bool = False) -> None:
        """Start every instance in parallel; with wait=True return once all are proven (raise if none is).

        An instance is proven, and the pool ready, after one real conversion per family (text, spreadsheet,
        presentation): each family's first conversion loads its modules and costs ~3x a warm one, so no request
        pays that. On a profile that skips LibreOffice's graphics self-test the whole start takes ~0.6 s.
        A server retries a failed start forever (/ready stays false); a one-shot command passes
        give_up_on_failure, or a missing or broken LibreOffice would leave it waiting forever.
        """
        self._give_up_on_start = give_up_on_failure
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.settings.work_dir / "office.log", "ab")  # noqa: SIM115 (closed in stop)
        self._template = self._prepare_profile()
        for slot in self._slots:
            slot.building = True
            threading.Thread(target=self._build, args=(slot, None), daemon=True).start()
        self._monitor = threading.Thread(target=self._watch, name="office-monitor", daemon=True)
        self._monitor.start()
        if wait:
            for slot in self._slots:
                slot.started.wait()
            if not any(s.state in (State.IDLE, State.BUSY) for s in self._slots):
                why = f": {self._last_start_error}" if self._last_start_error else ""
                raise WorkerError(Reason.OFFICE_UNAVAILABLE,
                                  f"no office instance became ready with SOFFICE_BIN={self.settings.soffice}{why} "
                                  f"(see {self.settings.work_dir}/office.log)")

    def stop(self) -> None:
        """Refuse new work, then stop every process group."""
        with self._lock:
            self._closed = True
        self._stop.set()
        for slot in self._slots:
            slot.started.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        for slot in self._slots:
            with slot.use if slot.state != State.BUSY else contextlib.nullcontext():
                slot.instance = None
                slot.state = State.STOPPED
        # Includes instances still starting or restarting: a stop during start must not leave orphans.
        with self._live_lock:
            live = list(self._live)
        for inst in live:
            self._stop_instance(inst)
        if self._log is not None:
            self._log.close()

    def _prepare_profile(self) -> Path:
        """The initialised template every instance copies; says so when its starts will be slow."""
        template = self._initialised_template()
        if not records_office_version(template):
            log.warning("profile template %s does not record the office version, so every office start runs "
                        "LibreOffice's graphics self-test (~0.8 s); rebuild it with `worker warm-profile` if it is "
                        "OFFICE_PROFILE_TEMPLATE, otherwise see office.log for why init could not record it", template)
        return template

    def _initialised_template(self) -> Path:
        """First start on a new profile costs a restart inside LibreOffice (exit 81): pay it once, then copy."""
        given = self.settings.profile_template
        if given is not None and (given / INIT_MARKER).exists():
            return given
        source = given or (self.settings.uno_dir / "profile")
        target = profile_cache_dir(source, self.settings)
        if (target / INIT_MARKER).exists():
            return target
        building = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(building, ignore_errors=True)
        shutil.copytree(source, building)
        try:
            init_profile(self.settings, building, self._log)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        try:
            building.rename(target)  # atomic: concurrent pools never see a half-built profile
        except OSError:
            shutil.rmtree(building, ignore_errors=True)  # another pool won the race; its copy is as good
        return target

    # -- the one public operation ------------------------------------------------------------------

    def convert(self, src: Path, dst: Path, import_filter: str | None = None) -> ConversionTiming:
        """Convert src to PDF at dst on a free instance; WorkerError with a retryable reason on any office trouble."""
        with self._lock:
            if self._closed:
                raise WorkerError(Reason.SHUTTING_DOWN, "the office pool is shutting down")
            # Fail fast instead of growing without bound (peers' pain point: queues that hide overload).
            # An idle office is capacity a waiter is about to take: without counting it, a request that came
            # back right after its own conversion saw the previous waiter still queued and got a false 429.
            idle = sum(1 for s in self._slots if s.state == State.IDLE)
            if self._waiting - idle >= self.settings.effective_queue_size:
                raise WorkerError(Reason.QUEUE_FULL, f"{self._waiting} conversions already waiting for an office")
            self._waiting += 1
        t0 = self.clock()
        try:
            slot = self._borrow()  # stops counting as waiting in the same step that makes the slot busy
        except BaseException:
            with self._lock:
                self._waiting -= 1
            raise
        waited = self.clock() - t0
        try:
            t1 = self.clock()
            self._convert_on(slot, src, dst, import_filter)
            return ConversionTiming(waited, self.clock() - t1, slot.index)
        finally:
            slot.use.release()

    def _borrow(self) -> _Slot:
        deadline = self.clock() + self.settings.effective_queue_wait_s
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WorkerError(Reason.OFFICE_UNAVAILABLE, "no office instance became free in time")
            try:
                slot, epoch = self._idle.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self._closed:
                    raise WorkerError(Reason.SHUTTING_DOWN, "the office pool is shutting down") from None
                continue
            slot.use.acquire()
            if slot.epoch != epoch or slot.state != State.IDLE:
                slot.use.release()  # a stale ticket: that instance was restarted since it was queued
                continue
            with self._lock:
                slot.state = State.BUSY
                self._waiting -= 1
            return slot

    def _convert_on(self, slot: _Slot, src: Path, dst: Path, import_filter: str | None) -> None:
        inst = slot.instance
        assert inst is not None
        timeout = self.settings.conversion_timeout_s
        try:
            inst.convert(src, dst, import_filter, timeout=timeout)
        except TimeoutError as exc:
            # A hung conversion (tarpit link, pathological file) blocks its office forever: kill it, restart only it.
            self._recycle(slot, RestartReason.TIMEOUT)
            raise WorkerError(Reason.CONVERSION_TIMEOUT, f"conversion did not finish within {timeout:g} s") from exc
        except xmlrpc.client.Fault as fault:
            if not slot.memory_killed and self._still_healthy(inst):
                self._release_idle(slot)
                raise WorkerError(Reason.CONVERSION_FAILED, _fault_message(fault)) from fault
            self._raise_lost_office(slot, fault)
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            self._raise_lost_office(slot, exc)
        slot.conversions += 1
        slot.last_ok = self.clock()
        # Planned recycles bound memory growth (probe: RSS climbs per new kind of document, then plateaus).
        # A spare starts shortly before the limit and replaces the instance once it is warm, so a recycle costs
        # no wait; only when the limit comes first is the old instance taken out of service at once.
        rss, ceiling = inst.rss_bytes(), self.settings.max_rss_mb * 2**20
        if slot.conversions >= self.settings.max_conversions:
            self._recycle(slot, RestartReason.MAX_CONVERSIONS)
        elif rss > ceiling:
            self._recycle(slot, RestartReason.MEMORY)
        else:
            if not slot.building:
                if slot.conversions >= self.settings.max_conversions - self._spare_lead():
                    self._start_spare(slot, RestartReason.MAX_CONVERSIONS)
                elif rss > ceiling * self.SPARE_AT_RSS_FRACTION:
                    self._start_spare(slot, RestartReason.MEMORY)
            self._release_idle(slot)

    def _raise_lost_office(self, slot: _Slot, cause: Exception) -> NoReturn:
        """The office died under the document: killed by the monitor for memory, or a crash (kill -9, abort)."""
        if slot.memory_killed:
            self._recycle(slot, RestartReason.MEMORY)
            raise WorkerError(
                Reason.MEMORY_EXHAUSTED,
                f"the document made the office grow past {self.settings.effective_rss_kill_mb} MiB while converting",
            ) from cause
        # A SIGKILL the worker did not send says nothing about the document (seen under chaos: an innocent slow
        # spreadsheet whose office was killed 3 times ended as a poison record); it must not count as poison.
        if slot.instance is not None and slot.instance.killed_from_outside():
            self._recycle(slot, RestartReason.KILLED)
            raise WorkerError(Reason.OFFICE_KILLED, "the office was SIGKILLed from outside the worker during the "
                              "conversion (the kernel's OOM killer or an operator)") from cause
        self._recycle(slot, RestartReason.CRASH)
        raise WorkerError(Reason.OFFICE_CRASHED, f"the office crashed during the conversion ({cause})") from cause

    def _spare_lead(self) -> int:
        """How many conversions before the limit the spare starts (it needs ~1.5 s, i.e. dozens of small jobs)."""
        return max(1, min(self.SPARE_LEAD_MAX, self.settings.max_conversions // 10))

    def _still_healthy(self, inst: OfficeInstance) -> bool:
        if not inst.alive():
            return False
        try:
            inst.ping(timeout=2.0)
            return True
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return False

    # -- supervision -------------------------------------------------------------------------------

    def _release_idle(self, slot: _Slot) -> None:
        slot.state = State.IDLE
        self._idle.put((slot, slot.epoch))

    def _recycle(self, slot: _Slot, reason: RestartReason) -> None:
        """Take the slot out of service now; a replacement starts in the background (callers never wait for it).

        The caller holds slot.use. If a spare is already starting for this slot, it takes over when proven.
        """
        self.restarts[reason.value] += 1
        slot.restarts += 1
        log.warning("restarting office %d: %s", slot.index, reason.value)
        slot.state = State.RESTARTING
        slot.epoch += 1
        old, slot.instance = slot.instance, None
        if old is not None:
            threading.Thread(target=self._discard, args=(old,), daemon=True).start()
        if not slot.building:
            slot.building = True
            threading.Thread(target=self._build, args=(slot, None), daemon=True).start()

    def _start_spare(self, slot: _Slot, reason: RestartReason) -> None:
        """Start the replacement of an instance that keeps serving until the spare is warm (caller holds use)."""
        slot.building = True
        threading.Thread(target=self._build, args=(slot, reason), daemon=True).start()

    def _build(self, slot: _Slot, spare_for: RestartReason | None) -> None:
        """Start an instance for `slot` until one is proven by real conversions, then put it in service."""
        try:
            inst = self._start_proven(slot)
            if inst is None:
                return
            with slot.use:  # waits for a conversion still running on the instance being replaced
                if self._stop.is_set():
                    slot.building = False
                    self._stop_instance(inst)
                    return
                old = slot.instance
                if old is not None and spare_for is not None:
                    # the planned recycle happens now, before the old instance ran into its limit
                    self.restarts[spare_for.value] += 1
                    slot.restarts += 1
                    log.info("office %d replaced by its spare: %s", slot.index, spare_for.value)
                slot.instance = inst
                slot.epoch += 1
                slot.conversions = 0
                slot.memory_killed = False
                slot.last_ok = self.clock()
                slot.building = False
                self._release_idle(slot)
            if old is not None:
                self._discard(old)
        finally:
            slot.started.set()

    def _start_proven(self, slot: _Slot) -> OfficeInstance | None:
        """A started instance that converted one probe of every family; None when stopping."""
        backoff = 0.5
        while not self._stop.is_set():
            inst = OfficeInstance(self.settings, f"{slot.index}-{slot.epoch}-{time.monotonic_ns()}",
                                  self._template_path(), self._logfile())
            try:
                # Check-and-start under the lock stop() snapshots with: an instance is either seen (and stopped)
                # by stop(), or never started. Otherwise a restart racing stop() could leave an orphan office.
                with self._live_lock:
                    if self._stop.is_set():
                        break
                    self._live.add(inst)
                    inst.start()
                inst.wait_ready(self.settings.start_timeout_s)
                # After any restart prove the office with real conversions before it takes work (seen: a stale
                # lock file made every later conversion fail while pings still answered); one per family also
                # loads each family's modules, so the first real request of each costs what a warm one does.
                self._probe(inst)
                return inst
            except (OfficeStartError, OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
                self._stop_instance(inst)
                if self._stop.is_set():
                    break  # stopped while starting: expected, not a failure
                self._last_start_error = str(exc)
                self.restarts[RestartReason.START_FAILED.value] += 1
                if self._give_up_on_start and slot.epoch == 0:
                    break  # start() raises with this error: the caller reports it once
                log.error("office %d failed to start: %s", slot.index, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        with slot.use:
            slot.building = False
        return None

    def _discard(self, inst: OfficeInstance) -> None:
        """Kill an instance out of service at once: nothing runs on it and its directory is thrown away."""
        inst.stop(grace=0)
        with self._live_lock:
            self._live.discard(inst)

    def _stop_instance(self, inst: OfficeInstance) -> None:
        inst.stop()
        with self._live_lock:
            self._live.discard(inst)

    def _probe(self, inst: OfficeInstance) -> None:
        out = inst.dir / "tmp" / "probe-out"
        out.mkdir(exist_ok=True)
        for name in PROBE_DOCS:
            dst = out / (name + ".pdf")
            inst.convert(PROBE_DIR / name, dst, PROBE_FILTERS[name], timeout=self.settings.start_timeout_s)
            if not dst.read_bytes().startswith(b"%PDF"):
                raise OfficeStartError(f"{inst.name}: probe conversion of {name} produced no PDF")
            dst.unlink()

    def _watch(self) -> None:
        """Restart an office that died while idle, and keep `last_ok` fresh with real round trips."""
        while not self._stop.wait(self.MONITOR_INTERVAL_S):
            for slot in self._slots:
                self._check_busy_memory(slot)
                if slot.state != State.IDLE or not slot.use.acquire(blocking=False):
                    continue
                try:
                    if slot.state != State.IDLE or slot.instance is None:
                        continue
                    inst = slot.instance
                    if not inst.alive():
                        # unoserver exits 0 on crash, timeout and stop-after alike: restart on ANY exit.
                        self._recycle(slot, RestartReason.EXIT)
                    elif slot.last_ok is None or self.clock() - slot.last_ok > self.HEALTH_INTERVAL_S:
                        if self._still_healthy(inst):
                            slot.last_ok = self.clock()
                        else:
                            self._recycle(slot, RestartReason.UNHEALTHY)
                finally:
                    slot.use.release()

    def _check_busy_memory(self, slot: _Slot) -> None:
        """A document can grow an office by ~70 MB/s until the timeout (seen: a 700-byte .fods reached 1.1 GB).

        The after-conversion recycle cannot see that, so the monitor kills a converting office above the hard limit
        (OFFICE_RSS_KILL_MB), which keeps the container clear of the kernel's OOM killer.
        """
        inst = slot.instance
        if slot.state != State.BUSY or inst is None or slot.memory_killed:
            return
        limit = self.settings.effective_rss_kill_mb
        if inst.rss_bytes() > limit * 2**20:
            slot.memory_killed = True
            log.warning("office %d above %d MiB while converting: killing it", slot.index, limit)
            try:
                inst.kill_office()
            except ProcessLookupError:
                pass

    # -- what operators see ------------------------------------------------------------------------

    def status(self) -> list[InstanceStatus]:
        now = self.clock()
        out = []
        for s in self._slots:
            inst = s.instance
            out.append(
                InstanceStatus(
                    index=s.index,
                    state=s.state,
                    pid=inst.office_pid if inst else None,
                    conversions=s.conversions,
                    rss_bytes=inst.rss_bytes() if inst else 0,
                    seconds_since_ok=None if s.last_ok is None else now - s.last_ok,
                    restarts=s.restarts,
                )
            )
        return out

    def ready(self) -> bool:
        """At least one office is serving and answered a real round trip recently."""
        limit = self.HEALTH_INTERVAL_S * 3
        for s in self._slots:
            if s.state == State.BUSY:
                return True
            if s.state == State.IDLE and s.last_ok is not None and self.clock() - s.last_ok < limit:
                return True
        return False

    @property
    def stopped(self) -> bool:
        """True once stop() was called: start-up errors after that are expected, not news."""
        return self._stop.is_set()

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def size(self) -> int:
        return len(self._slots)

    def instances(self) -> Iterator[OfficeInstance]:
        """The live instances (tests and chaos runs use this to kill one)."""
        for s in self._slots:
            if s.instance is not None:
                yield s.instance

    def _template_path(self) -> Path:
        assert self._template is not None
        return self._template

    def _logfile(self) -> IO[bytes]:
        assert self._log is not None
        return self._log


def profile_cache_dir(source: Path, settings: OfficeSettings) -> Path:
    """Where the initialised copy of a profile template lives.

    Keyed by the template's content, the launcher (it writes into the profile at init) and the office binary
    itself: a profile initialised by an older LibreOffice would make a newer one self-test at every start.
    """
    digest = hashlib.sha256(settings.soffice.encode())
    try:
        office = os.stat(settings.soffice)
        digest.update(f"{office.st_size}:{office.st_mtime_ns}".encode())
    except OSError:
        pass  # no office there: the init fails with office_unavailable, which says so
    digest.update((settings.uno_dir / "launcher.py").read_bytes())
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(source)).encode())
            digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "docworker"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"profile-{digest.hexdigest()[:16]}"


def records_office_version(profile: Path) -> bool:
    """Whether the launcher's init recorded the office version in this profile (see uno/launcher.py)."""
    try:
        return "ooSetupLastVersion" in (profile / "user" / "registrymodifications.xcu").read_text(errors="replace")
    except OSError:
        return False


def init_profile(settings: OfficeSettings, profile: Path, log_file: IO[bytes] | None) -> None:
    """Start LibreOffice once on a profile so later starts skip the first-run restart; mark it done."""
    with tempfile.TemporaryDirectory(prefix="office-init-") as tmp:
        cmd = launcher_command(settings, profile, Ports(0, free_port()), "--init-only")
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, check=True,
                           env=launcher_env(Path(tmp), home=Path(tmp)),
                           timeout=settings.start_timeout_s + 10, start_new_session=True)
        except subprocess.CalledProcessError as exc:
            raise WorkerError(Reason.OFFICE_UNAVAILABLE, f"LibreOffice ({settings.soffice}) could not initialise a "
                              f"profile: the launcher exited with {exc.returncode}; see office.log") from exc
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise WorkerError(Reason.OFFICE_UNAVAILABLE,
                              f"LibreOffice ({settings.soffice}) could not initialise a profile: {exc}") from exc
    # the first start's graphics self-test log; an instance profile without one shows later starts skipped it
    (profile / "user" / "GraphicsRenderTests.log").unlink(missing_ok=True)
    (profile / INIT_MARKER).write_text("initialised by docworker\n")


def _fault_message(fault: xmlrpc.client.Fault) -> str:
    """LibreOffice's faults arrive as "<class 'X'>:text"; keep the text, drop pyuno's noise."""
    text = str(fault.faultString)
    if ">:" in text:
        text = text.split(">:", 1)[1]
    text = text.strip() or "LibreOffice could not convert the document"
    if "Could not load document" in text:
        return ("LibreOffice could not load the document (damaged, or a variant of its format it cannot read);"
                " save it again from the application that made it and upload again")
    return text.splitlines()[0][:300]
