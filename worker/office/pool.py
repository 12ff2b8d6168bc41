"""The supervisor: a bounded queue in front of N office instances, and the rules that keep them healthy.

Like Gotenberg's supervisor, the instance only knows start/stop/ping/convert. What happens after a conversion is
decided by worker/office/policy.py (pure); the idle health checks and the busy memory kill live in the monitor
here; _restart() carries every restart out and is the only place that counts one. Each rule's comment names the
failure that motivated it.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from worker.config import OfficeSettings
from worker.errors import Reason, WorkerError
from worker.office.api import STOCK_EXPORT, ConversionTiming, Export, InstanceStatus, RestartReason, State
from worker.office.faults import conversion_error
from worker.office.instance import OfficeInstance, OfficeStartError
from worker.office.launch import launcher_files
from worker.office.policy import Decision, Facts, Limits, Result, decide
from worker.office.profile import build_template, profile_blocks_remote
from worker.office.sandbox import LAYERS, Sandbox, SandboxMode, probe

log = logging.getLogger(__name__)

PROBE_DIR = Path(__file__).parent / "probe"
# One per family: text, spreadsheet, presentation. OOXML, because that is what arrives and its import filters are
# separate modules: after flat-ODF probes the first .docx still cost ~4x a warm one (bench/README.md, Performance).
# Loaded with the import filter sniff picks, as real jobs are.
PROBE_DOCS = ("probe.docx", "probe.xlsx", "probe.pptx")
PROBE_FILTERS = {"probe.docx": "MS Word 2007 XML", "probe.xlsx": "Calc MS Excel 2007 XML",
                 "probe.pptx": "Impress MS PowerPoint 2007 XML"}
# Every way a conversion call can fail on the office's side (TimeoutError is an OSError).
CONVERSION_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.Fault, xmlrpc.client.ProtocolError)


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
        self._sandbox: Sandbox | None = None
        self.sandbox_layers: dict[str, bool] = {}  # read by the worker_office_sandbox metric

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
        self._sandbox = probe(SandboxMode(self.settings.sandbox), self.settings.uno_python, self.settings.work_dir,
                              launcher_files(self.settings))
        self._template = build_template(self.settings, log_file=self._log, sandbox=self._sandbox)
        self._report_sandbox(self._sandbox, self._template)
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

    def _report_sandbox(self, sandbox: Sandbox, template: Path) -> None:
        """One line at start saying which layers stand between a hostile document and the machine."""
        self.sandbox_layers = sandbox.layers(
            profile_blocks_remote(template, self.settings.uno_dir, network_isolated=sandbox.namespaced))
        off = [layer for layer in LAYERS if not self.sandbox_layers[layer]]
        fields = {"sandbox_mode": sandbox.mode.value, **{f"sandbox_{k}": v for k, v in self.sandbox_layers.items()}}
        summary = " ".join(f"{layer}={'on' if on else 'OFF'}" for layer, on in self.sandbox_layers.items())
        if not off:
            log.info("office sandbox: %s (OFFICE_SANDBOX=%s)", summary, sandbox.mode.value, extra={"fields": fields})
            return
        profile_why = "the profile template does not block untrusted links (or uno/dead-proxy.xcu is missing)"
        why = sandbox.why_off or (profile_why if off == ["profile"] else "")
        if "profile" in off and sandbox.why_off:
            why += "; profile: " + profile_why
        log.warning("office sandbox: %s (OFFICE_SANDBOX=%s): %s", summary, sandbox.mode.value, why,
                    extra={"fields": {**fields, "sandbox_why_off": why}})

    # -- the one public operation ------------------------------------------------------------------

    def convert(self, src: Path, dst: Path, import_filter: str | None = None,
                export: Export = STOCK_EXPORT) -> ConversionTiming:
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
            self._convert_on(slot, src, dst, import_filter, export)
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

    def _convert_on(self, slot: _Slot, src: Path, dst: Path, import_filter: str | None, export: Export) -> None:
        inst = slot.instance
        assert inst is not None
        try:
            inst.convert(src, dst, import_filter, export, timeout=self.settings.conversion_timeout_s)
        except CONVERSION_ERRORS as exc:
            result = self._failure(slot, inst, exc)
            self._carry_out(slot, decide(Facts(result, slot.conversions, 0, slot.building), self._limits()))
            raise conversion_error(result, exc, self.settings) from exc
        slot.conversions += 1
        slot.last_ok = self.clock()
        facts = Facts(Result.OK, slot.conversions, inst.rss_bytes(), slot.building)
        self._carry_out(slot, decide(facts, self._limits()))

    def _failure(self, slot: _Slot, inst: OfficeInstance, exc: Exception) -> Result:
        """What a failed conversion says about its office (pings and the launcher's exit code: the policy's facts)."""
        if isinstance(exc, TimeoutError):
            return Result.TIMEOUT
        if isinstance(exc, xmlrpc.client.Fault) and not slot.memory_killed and self._still_healthy(inst):
            return Result.FAULT
        if slot.memory_killed:
            return Result.MEMORY_KILLED
        return Result.KILLED if inst.killed_from_outside() else Result.CRASH

    def _limits(self) -> Limits:
        return Limits(self.settings.max_conversions, self.settings.max_rss_mb * 2**20)

    def _carry_out(self, slot: _Slot, decision: Decision) -> None:
        """Act on the policy's decision; the caller holds slot.use, and the slot leaves BUSY either way."""
        if decision.restart is not None:
            self._restart(slot, decision.restart)
            return
        if decision.spare is not None:
            self._start_spare(slot, decision.spare)
        self._release_idle(slot)

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

    def _restart(self, slot: _Slot, reason: RestartReason, spare: OfficeInstance | None = None) -> None:
        """The only place a restart is counted (worker_office_restarts_total and the slot's own count).

        START_FAILED counts an attempt that never served: the slot's own count stays, its builder retries.
        With a proven spare, the planned recycle happens now, before the old instance ran into its limit.
        Otherwise the office leaves service now and a replacement starts in the background (callers never wait for
        it); if a spare is already starting for this slot, it takes over when proven. The caller holds slot.use
        (but for START_FAILED, which touches only the counter).
        """
        self.restarts[reason.value] += 1
        if reason is RestartReason.START_FAILED:
            return
        slot.restarts += 1
        if spare is not None:
            log.info("office %d replaced by its spare: %s", slot.index, reason.value)
            self._put_in_service(slot, spare)
            return
        log.warning("restarting office %d: %s", slot.index, reason.value)
        slot.state = State.RESTARTING
        slot.epoch += 1
        old, slot.instance = slot.instance, None
        if old is not None:
            threading.Thread(target=self._stop_instance, args=(old, 0), daemon=True).start()
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
                    self._restart(slot, spare_for, spare=inst)
                else:
                    self._put_in_service(slot, inst)
            if old is not None:
                self._stop_instance(old, grace=0)
        finally:
            slot.started.set()

    def _put_in_service(self, slot: _Slot, inst: OfficeInstance) -> None:
        """A proven instance takes the slot's work from now on (caller holds use)."""
        slot.instance = inst
        slot.epoch += 1
        slot.conversions = 0
        slot.memory_killed = False
        slot.last_ok = self.clock()
        slot.building = False
        self._release_idle(slot)

    def _start_proven(self, slot: _Slot) -> OfficeInstance | None:
        """A started instance that converted one probe of every family; None when stopping."""
        backoff = 0.5
        while not self._stop.is_set():
            inst = OfficeInstance(self.settings, f"{slot.index}-{slot.epoch}-{time.monotonic_ns()}",
                                  self._template_path(), self._logfile(), self._sandbox)
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
                self._restart(slot, RestartReason.START_FAILED)
                if self._give_up_on_start and slot.epoch == 0:
                    break  # start() raises with this error: the caller reports it once
                log.error("office %d failed to start: %s", slot.index, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        with slot.use:
            slot.building = False
        return None

    def _stop_instance(self, inst: OfficeInstance, grace: float = 2.0) -> None:
        """Stop an instance and forget it; grace=0 for one out of service (nothing runs on it, its dir goes anyway)."""
        inst.stop(grace)
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
        """The monitor: every 0.25 s, the memory of converting offices and the health of idle ones."""
        while not self._stop.wait(self.MONITOR_INTERVAL_S):
            for slot in self._slots:
                self._check_busy_memory(slot)
                if slot.state != State.IDLE or not slot.use.acquire(blocking=False):
                    continue
                try:
                    if slot.state == State.IDLE and slot.instance is not None:
                        self._check_idle(slot, slot.instance)
                finally:
                    slot.use.release()

    def _check_idle(self, slot: _Slot, inst: OfficeInstance) -> None:
        """Restart an office that went away while idle, and keep `last_ok` fresh with real round trips.

        Any exit counts (the launcher exits whenever its office dies, and anything outside the worker may kill it);
        a health ping every HEALTH_INTERVAL_S catches a wedged office that still has a process.
        """
        if not inst.alive():
            self._restart(slot, RestartReason.EXIT)
        elif slot.last_ok is None or self.clock() - slot.last_ok > self.HEALTH_INTERVAL_S:
            if self._still_healthy(inst):
                slot.last_ok = self.clock()
            else:
                self._restart(slot, RestartReason.UNHEALTHY)

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
