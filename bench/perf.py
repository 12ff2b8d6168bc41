"""The performance targets, measured side by side for two source trees in one run (e.g. HEAD vs the working tree).

    git archive HEAD | tar -x -C /tmp/docworker-base          # the "before" tree (read-only git)
    .venv/bin/python bench/perf.py --baseline /tmp/docworker-base [--quick] [--json out.json]

Every measurement runs each tree in its own child process (`python bench/perf.py --child KIND --tree T`, with T
first on sys.path), trees alternated round by round (order reversed every other round) so machine drift hits both.
The same interpreter, LibreOffice, initialised profile template and documents are used for both trees.

  ready      `python -m worker serve` (POOL_SIZE 1 and 2, AUTH_MODE=off, initialised template) from Popen to the
             first 200 on /ready (polled every 10 ms) and to every instance idle ("warm"); next to it, bare
             `soffice.bin --accept` on a copy of the same profile until a UNO connection succeeds (/usr/bin/python3).
  families   a pool of 1 started in-process; the moment it is ready, one docx, one xlsx, one pptx (the first of each
             family), then 6 more of each (steady = median of the last 5): first / steady per family.
  throughput 80 x 1-page docx through 3 client threads (pool of 1: one converts, two
             wait; the default queue holds 2 x POOL_SIZE) on a pool of 1 and a pool of 2 (both started, alternated, 5
             rounds): conversions/s and the number of failed requests.
  hol        pool of 2: 100 sequential 1-page conversions idle, then 100 while another thread converts the 100-page
             document back to back: p50/p99 and busy/idle p99.
  memory     pool of 2 with the default recycling (500 conversions): 2,000 mixed conversions (9 sample formats +
             10-page docx) through 2 threads; failures, restarts, soffice.bin RSS per instance, worker RSS, and every
             request's latency over the median of its document (spikes around recycles show up here); a
             replacement's warm-up window is seen from outside the pool (bench/perf.py `Replacements`).

The push path (target 3) is bench/e2e.py; with --e2e this script runs it for both trees too. Both trees run this
tree's bench code; with --own-bench each runs its own bench/perf.py and bench/e2e.py (to compare two versions of the
bench itself on the same worker). Documents, the client loop and the statistics are bench/measure.py's.
Nothing here listens on anything but 127.0.0.1; every process started is stopped by its own PID/process group.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from measure import (
    DOC1,
    DOC100,
    FAMILY_DOCS,
    MIXED,
    alternate,
    convert_timed,
    drain,
    free_port,
    interleaved,
    medians,
    percentile,
)

if TYPE_CHECKING:
    from worker.office import OfficePool

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOFFICE = "/usr/lib/libreoffice/program/soffice.bin"


# ---------------------------------------------------------------------------------------------------------------
# children: run inside one tree (`--child KIND`), one function per figure
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Child:
    """Where a child works: its directory, the tree's initialised profile template, and --quick."""

    work: Path
    template: Path
    quick: bool

    def pool(self, name: str, **settings: Any) -> OfficePool:
        """An unstarted pool of this tree, in its own directory, on the tree's template."""
        from worker.config import OfficeSettings
        from worker.office import OfficePool

        return OfficePool(OfficeSettings(work_dir=self.work / name, profile_template=self.template, **settings))

    def __post_init__(self) -> None:
        self.jobs = self.work / "jobs"  # where the requests' PDFs go (each removed once timed)
        self.jobs.mkdir(parents=True, exist_ok=True)


def families(child: Child) -> dict[str, Any]:
    """First docx, xlsx, pptx the moment a pool of 1 is ready, then on a pool waited on until idle, then steady."""
    pool = child.pool("fam", pool_size=1)
    try:
        t0 = time.perf_counter()
        pool.start()
        ready = time.perf_counter() - t0
        first = {fam: convert_timed(pool, doc, child.jobs) for fam, doc in FAMILY_DOCS.items()}
    finally:
        pool.stop()
    # the same again, but first waiting until every instance is idle
    pool = child.pool("fam2", pool_size=1)
    try:
        t0 = time.perf_counter()
        pool.start()
        deadline = time.perf_counter() + 30
        while any(st.state != "idle" for st in pool.status()) and time.perf_counter() < deadline:
            time.sleep(0.005)
        warm_s = time.perf_counter() - t0
        first_warm = {fam: convert_timed(pool, doc, child.jobs) for fam, doc in FAMILY_DOCS.items()}
        steady: dict[str, list[float]] = {fam: [] for fam in FAMILY_DOCS}
        for _ in range(6):
            for fam, doc in FAMILY_DOCS.items():
                steady[fam].append(convert_timed(pool, doc, child.jobs))
    finally:
        pool.stop()
    return {"start_s": ready, "warm_s": warm_s, "first": first, "first_warm": first_warm,
            "steady": medians({fam: v[1:] for fam, v in steady.items()})}


def throughput(child: Child) -> dict[str, Any]:
    """Batches of 1-page docx through 3 client threads on a pool of 1 and a pool of 2, alternated: conversions/s."""
    pools = {n: child.pool(f"tp{n}", pool_size=n) for n in (1, 2)}
    try:
        for p in pools.values():
            p.start()
        for p in pools.values():
            drain(p, [DOC1] * 8, 3, child.jobs)  # warm every instance
        rates: dict[int, list[float]] = {1: [], 2: []}
        fails = 0
        batch = 40 if child.quick else 80  # a batch of 40 lasts ~1 s on a pool of 2: ramp and tail weigh in
        for r in range(2 if child.quick else 5):
            for n in alternate((1, 2), r):
                t0 = time.perf_counter()
                _, failed = drain(pools[n], [DOC1] * batch, 3, child.jobs)
                rates[n].append(batch / (time.perf_counter() - t0))
                fails += len(failed)
        return {"n1": statistics.median(rates[1]), "n2": statistics.median(rates[2]), "failures": fails,
                "restarts": sum(sum(p.restarts.values()) for p in pools.values())}
    finally:
        for p in pools.values():
            p.stop()


def hol(child: Child) -> dict[str, Any]:
    """Pool of 2: sequential 1-page conversions idle, then while another client converts the 100-page document."""
    pool = child.pool("hol", pool_size=2)
    n = 40 if child.quick else 100
    try:
        pool.start()
        drain(pool, [DOC1, DOC100] * 4, 2, child.jobs)
        idle = [convert_timed(pool, DOC1, child.jobs) for _ in range(n)]
        stop = threading.Event()
        long_runs: list[float] = []

        def long_loop() -> None:
            while not stop.is_set():
                long_runs.append(convert_timed(pool, DOC100, child.jobs))

        t = threading.Thread(target=long_loop)
        t.start()
        time.sleep(0.05)
        busy = [convert_timed(pool, DOC1, child.jobs) for _ in range(n)]
        stop.set()
        t.join()
        return {"idle_p50": percentile(idle, 0.5), "idle_p99": percentile(idle, 0.99),
                "busy_p50": percentile(busy, 0.5), "busy_p99": percentile(busy, 0.99),
                "long_runs": len(long_runs), "n": n}
    finally:
        pool.stop()


class Replacements:
    """When a replacement office was warming beside the serving ones, seen from outside the pool (no hook into it).

    A thread looks at `pool.instances()` every 10 ms. An instance it has not seen is a replacement that just went
    into service; its window runs from its process group leader's start (/proc/<pgid>/stat) to that moment.
    """

    def __init__(self, pool: OfficePool) -> None:
        self.pool = pool
        self.windows: list[tuple[float, float]] = []
        self._seen = {inst.pgid for inst in pool.instances()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Replacements:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for inst in list(self.pool.instances()):
                pgid = inst.pgid
                if pgid is not None and pgid not in self._seen:
                    self._seen.add(pgid)
                    now = time.perf_counter()
                    self.windows.append((now - process_age(pgid), now))


def process_age(pid: int) -> float:
    """Seconds since `pid` started (0 if it is gone): /proc/<pid>/stat's start time, in clock ticks since boot."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0.0
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK"))


def memory(child: Child) -> dict[str, Any]:
    """Pool of 2 with the default recycling: mixed conversions through 2 threads; RSS, restarts, latency spikes."""
    total = 300 if child.quick else 2000
    pool = child.pool("mem", pool_size=2)
    try:
        pool.start()
        idle_rss = [s.rss_bytes for s in pool.status()]
        docs = [MIXED[i % len(MIXED)] for i in range(total)]
        docs.reverse()  # drain() takes from the end
        # requests overlapping a replacement's warm-up are the ones a recycle could slow down
        with Replacements(pool) as replacements:
            t0 = time.perf_counter()
            results, failures = drain(pool, docs, 2, child.jobs)
            wall = time.perf_counter() - t0
            time.sleep(0.5)
        windows = replacements.windows
        status = pool.status()
        by_doc: dict[Path, list[float]] = {}
        for src, _, t in results:
            by_doc.setdefault(src, []).append(t)
        med = medians(by_doc)
        rel = [t / med[src] for src, _, t in results]
        during = [t / med[src] for src, start, t in results
                  if any(start < end and start + t > begin for begin, end in windows)]
        with open("/proc/self/status") as f:
            vmrss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
        return {
            "total": total,
            "wall_s": wall,
            "failures": len(failures),
            "restarts": dict(pool.restarts),
            "idle_rss_mib": [b / 2**20 for b in idle_rss],
            "end_rss_mib": [s.rss_bytes / 2**20 for s in status],
            "conversions_since_start": [s.conversions for s in status],
            "worker_rss_mib": vmrss / 2**20,
            "rel_p50": percentile(rel, 0.5),
            "rel_p99": percentile(rel, 0.99),
            "rel_max": max(rel),
            "over_1_3x": sum(1 for x in rel if x > 1.3),
            "over_2x": sum(1 for x in rel if x > 2.0),
            "recycle_windows_s": [round(end - begin, 2) for begin, end in windows],
            "during_recycle": len(during),
            "during_recycle_over_1_3x": sum(1 for x in during if x > 1.3),
            "during_recycle_max": max(during, default=0.0),
            "max_rss_mb_setting": pool.settings.max_rss_mb,
            "max_conversions_setting": pool.settings.max_conversions,
        }
    finally:
        pool.stop()


CHILDREN: dict[str, Callable[[Child], dict[str, Any]]] = {
    "families": families, "throughput": throughput, "hol": hol, "memory": memory}


# ---------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------


class Driver:
    def __init__(self, trees: dict[str, Path], work: Path, quick: bool, own_bench: bool = False) -> None:
        self.trees = trees
        self.work = work
        self.quick = quick
        self.own_bench = own_bench
        # each tree initialises its own profile template: what init writes into it is part of the tree's start
        self.templates = {tree: work / f"profile-{i}" for i, tree in enumerate(trees)}
        for tree, template in self.templates.items():
            env = dict(os.environ, PYTHONPATH=str(trees[tree]))
            subprocess.run([sys.executable, "-m", "worker", "warm-profile", "--out", str(template)], env=env,
                           cwd=trees[tree], check=True, timeout=120, stdout=subprocess.DEVNULL)
        # the office's own idea of a profile: what `soffice --headless` leaves after its first start
        self.stock = work / "profile-stock"
        subprocess.run([str(Path(SOFFICE).with_name("soffice")), "--headless", "--terminate_after_init",
                        f"-env:UserInstallation=file://{self.stock}"],
                       env=dict(os.environ, HOME=str(work), TMPDIR=str(work / "tmp")),
                       check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.seq = 0

    def script(self, tree: str, name: str) -> Path:
        """The bench script a tree's figures run: this tree's, or with --own-bench the tree's own."""
        return self.trees[tree] / "bench" / name if self.own_bench else HERE / name

    def child(self, tree: str, kind: str) -> dict[str, Any]:
        self.seq += 1
        work = self.work / f"{kind}-{self.seq}"  # no tree label in the path: "after (again)" has a space
        env = dict(os.environ, PYTHONPATH=str(self.trees[tree]), TMPDIR=str(self.work / "tmp"))
        cmd = [
            sys.executable,
            str(self.script(tree, "perf.py")),
            "--child",
            kind,
            "--tree",
            str(self.trees[tree]),
            "--child-work",
            str(work),
            "--template",
            str(self.templates[tree]),
        ] + (["--quick"] if self.quick else [])
        proc = subprocess.run(cmd, env=env, cwd=self.trees[tree], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"perf: child {kind} on {tree} failed:\n{proc.stderr[-3000:]}")
        shutil.rmtree(work, ignore_errors=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # -- target 1 --------------------------------------------------------------------------------------------------

    def ready_once(self, tree: str, pool_size: int) -> tuple[float, float]:
        self.seq += 1
        port = free_port()
        work = self.work / f"ready-{self.seq}"
        env = dict(
            os.environ,
            PYTHONPATH=str(self.trees[tree]),
            TMPDIR=str(self.work / "tmp"),
            HOST="127.0.0.1",
            PORT=str(port),
            OUTPUT_BUCKET="bench-out",
            AUTH_MODE="off",
            POOL_SIZE=str(pool_size),
            WORK_DIR=str(work),
            OFFICE_PROFILE_TEMPLATE=str(self.templates[tree]),
            LOG_FORMAT="json",
            STORAGE_EMULATOR_HOST="http://127.0.0.1:9",
        )
        env.pop("PUBSUB_EMULATOR_HOST", None)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "serve"],
            env=env,
            cwd=self.trees[tree],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        ready = warm = None
        try:
            deadline = t0 + 60
            while time.perf_counter() < deadline and warm is None:
                if proc.poll() is not None:
                    raise SystemExit(f"perf: worker serve ({tree}) exited with {proc.returncode}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
                        body = json.loads(resp.read())
                        now = time.perf_counter() - t0
                        ready = ready if ready is not None else now
                        if all(i["state"] == "idle" for i in body["instances"]):
                            warm = now
                except (OSError, ValueError):
                    pass
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(work, ignore_errors=True)
        if ready is None or warm is None:
            raise SystemExit(f"perf: worker serve ({tree}) never got ready")
        return ready, warm

    def bare_soffice_once(self, template: Path) -> float:
        """Bare soffice.bin --accept on a copy of `template` until a UNO connection succeeds."""
        self.seq += 1
        prof = self.work / f"bare-{self.seq}"
        shutil.copytree(template, prof)
        port = free_port()
        script = (
            "import subprocess, sys, time, uno\n"
            "t0 = time.perf_counter()\n"
            f"p = subprocess.Popen([{SOFFICE!r}, '--headless', '--invisible', '--nocrashreport', '--nodefault',"
            f" '--nologo', '--nofirststartwizard', '--norestore', '--nolockcheck', '-env:UserInstallation=file://{prof}',"
            f" '--accept=socket,host=127.0.0.1,port={port},tcpNoDelay=1;urp;StarOffice.ComponentContext'],"
            " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "local = uno.getComponentContext()\n"
            "resolver = local.ServiceManager.createInstanceWithContext('com.sun.star.bridge.UnoUrlResolver', local)\n"
            "while True:\n"
            "    try:\n"
            f"        resolver.resolve('uno:socket,host=127.0.0.1,port={port};urp;StarOffice.ComponentContext')\n"
            "        break\n"
            "    except Exception:\n"
            "        time.sleep(0.01)\n"
            "print(time.perf_counter() - t0, flush=True)\n"
            "p.kill(); p.wait()\n"
        )
        env = dict(os.environ, TMPDIR=str(self.work / "tmp"), HOME=str(prof), SAL_USE_VCLPLUGIN="svp")
        env.pop("PYTHONPATH", None)
        out = subprocess.run(["/usr/bin/python3", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        shutil.rmtree(prof, ignore_errors=True)
        return float(out.stdout.strip().splitlines()[-1])

    def ready(self) -> dict[str, Any]:
        rounds = 3 if self.quick else 7
        res: dict[str, list[Any]] = {}
        for r in range(rounds):
            res.setdefault("bare", []).append(self.bare_soffice_once(self.stock))
            res.setdefault("bare_ours", []).append(self.bare_soffice_once(self.templates[list(self.trees)[-1]]))
            for size in (1, 2):
                for tree in alternate(list(self.trees), r):
                    res.setdefault(f"{tree}/{size}", []).append(self.ready_once(tree, size))
        out: dict[str, Any] = {"rounds": rounds, "bare_soffice_s": statistics.median(res.pop("bare")),
                               "bare_ours_s": statistics.median(res.pop("bare_ours"))}
        for key, vals in res.items():
            out[key] = {
                "ready_s": statistics.median(v[0] for v in vals),
                "warm_s": statistics.median(v[1] for v in vals),
            }
        return out

    def figure(self, kind: str, rounds: int) -> dict[str, list[dict[str, Any]]]:
        """One child figure, `rounds` child runs per tree, trees alternated."""

        def run(tree: str, r: int) -> dict[str, Any]:
            out = self.child(tree, kind)
            print(f"perf: {kind} {tree} round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
            return out

        return interleaved(rounds, list(self.trees), run)

    def e2e(self, rounds: int) -> dict[str, Any]:
        """This tree's bench/e2e.py against each tree's worker, one after the other (same client, same columns)."""
        out = {}
        for tree in list(self.trees):
            self.seq += 1
            path = self.work / f"e2e-{self.seq}.json"
            env = dict(os.environ, PYTHONPATH=str(self.trees[tree]), DOCWORKER_TREE=str(self.trees[tree]))
            subprocess.run(
                [sys.executable, str(self.script(tree, "e2e.py")), "--rounds", str(rounds), "--json", str(path)],
                env=env,
                cwd=self.trees[tree],
                check=True,
                timeout=3600,
                stdout=subprocess.DEVNULL,
            )
            data = json.loads(path.read_text())
            out[tree] = {
                pages: {
                    "e2e_ms": r["median_s"]["e2e"] * 1000,
                    "bare_ms": r["median_s"]["bare"] * 1000,
                    "proto_ms": r["median_s"]["proto"] * 1000,
                    "e2e_vs_proto": r["e2e_vs_proto"],
                    "warm_ms": r["median_s"]["warm"] * 1000,
                    "cold_ms": r["median_s"]["cold"] * 1000,
                    "e2e_vs_bare": r["e2e_vs_bare"],
                    "e2e_vs_warm": r["e2e_vs_warm"],
                    "cold_vs_e2e": r["cold_vs_e2e"],
                    "rounds": r["rounds"],
                }
                for pages, r in data.items()
            }
        return out


def _heading(title: str, columns: str, align: str) -> list[str]:
    """A figure's title and its table head, preceded by a blank line."""
    return ["", title, "", columns, align]


def _render_ready(rd: dict[str, Any], a: str, b: str) -> list[str]:
    lines = _heading(
        f"**1. Start** (median of {rd['rounds']}; bare `soffice.bin --accept` until a UNO connection: "
        f"**{rd['bare_soffice_s']:.2f} s** on the profile LibreOffice's own first start leaves, "
        f"**{rd.get('bare_ours_s', float('nan')):.2f} s** on {b}'s initialised template)",
        f"| `worker serve` -> | {a} POOL_SIZE=1 | {b} POOL_SIZE=1 | {a} POOL_SIZE=2 | {b} POOL_SIZE=2 |",
        "|---|---:|---:|---:|---:|",
    )
    for key, label in (("ready_s", "first 200 on /ready"), ("warm_s", "every instance idle (all families warm)")):
        lines.append(
            f"| {label} | " + " | ".join(f"{rd[f'{t}/{n}'][key]:.2f} s" for n in (1, 2) for t in (a, b)) + " |"
        )
    return lines


def _render_families(fam: dict[str, Any], a: str, b: str) -> list[str]:
    lines = _heading(
        "**2. First request per family**, first / steady (pool of 1, median over "
        f'{len(fam[b])} pools each): sent the moment `pool.start()` returns ("at ready"), and sent once every '
        'instance is idle ("warm")',
        f"| family | steady {a} | steady {b} | {a} at ready | {b} at ready | {a} warm | {b} warm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    )
    for f in FAMILY_DOCS:
        steady = {t: statistics.median(r["steady"][f] for r in fam[t]) for t in (a, b)}
        cells = [f"{steady[a] * 1000:.0f} ms", f"{steady[b] * 1000:.0f} ms"]
        for key in ("first", "first_warm"):
            for t in (a, b):
                first = statistics.median(r[key][f] for r in fam[t])
                cells.append(f"{first * 1000:.0f} ms = **{first / steady[t]:.2f}x**")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    start = {t: statistics.median(r["start_s"] for r in fam[t]) for t in (a, b)}
    warm = {t: statistics.median(r["warm_s"] for r in fam[t]) for t in (a, b)}
    lines.append(
        f"| `pool.start()` returned / all idle | | | {start[a]:.2f} s | {start[b]:.2f} s "
        f"| {warm[a]:.2f} s | {warm[b]:.2f} s |"
    )
    return lines


def _render_e2e(e: dict[str, Any], a: str, b: str) -> list[str]:
    lines = _heading(
        "**3. Overhead** (`bench/e2e.py` of this tree against each tree's worker, medians; e2e = push received -> "
        "PDF stored on fake-gcs; bare = stock unoserver's warm conversion; prototype's = unoserver loading with "
        "Hidden=True; our warm = in-process `convert_file`)",
        f"| doc | {a} e2e / bare | {b} e2e / bare | {a} e2e / prototype's | {b} e2e / prototype's "
        f"| {a} e2e / our warm | {b} e2e / our warm | {b} cold / e2e | {b} e2e, bare, prototype's, our warm, cold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    )
    for pages in e[b]:
        x, y = e[a][pages], e[b][pages]
        lines.append(
            f"| {pages}-page ({y['rounds']} rounds) | {x['e2e_vs_bare']:.2f}x | **{y['e2e_vs_bare']:.2f}x** "
            f"| {x['e2e_vs_proto']:.2f}x | **{y['e2e_vs_proto']:.2f}x** "
            f"| {x['e2e_vs_warm']:.2f}x | **{y['e2e_vs_warm']:.2f}x** | **{y['cold_vs_e2e']:.1f}x** "
            f"| {y['e2e_ms']:.0f} / {y['bare_ms']:.0f} / {y['proto_ms']:.0f} / {y['warm_ms']:.0f} / "
            f"{y['cold_ms']:.0f} ms |"
        )
    return lines


def _render_throughput(tp: dict[str, Any], a: str, b: str) -> list[str]:
    lines = _heading(
        f"**4. Throughput** (80 x 1-page, 3 client threads, 5 rounds; median of {len(tp[b])} child runs)",
        "| tree | pool of 1 | pool of 2 | ratio | failed requests |",
        "|---|---:|---:|---:|---:|",
    )
    for t in (a, b):
        n1 = statistics.median(r["n1"] for r in tp[t])
        n2 = statistics.median(r["n2"] for r in tp[t])
        fails = sum(r["failures"] for r in tp[t])
        lines.append(f"| {t} | {n1:.1f} conv/s | {n2:.1f} conv/s | **{n2 / n1:.2f}x** | {fails} |")
    return lines


def _render_hol(hol: dict[str, Any], a: str, b: str) -> list[str]:
    lines = _heading(
        f"**5. Head-of-line** (pool of 2; {hol[b][0]['n']} sequential 1-page conversions idle, then while "
        "the 100-page document converts back to back)",
        "| tree | idle p50 | idle p99 | busy p50 | busy p99 | busy p99 / idle p99 |",
        "|---|---:|---:|---:|---:|---:|",
    )
    for t in (a, b):
        h = {k: statistics.median(r[k] for r in hol[t]) for k in ("idle_p50", "idle_p99", "busy_p50", "busy_p99")}
        lines.append(
            f"| {t} | {h['idle_p50'] * 1000:.0f} ms | {h['idle_p99'] * 1000:.0f} ms | "
            f"{h['busy_p50'] * 1000:.0f} ms | {h['busy_p99'] * 1000:.0f} ms | "
            f"**{h['busy_p99'] / h['idle_p99']:.2f}x** |"
        )
    return lines


def _render_memory(mem: dict[str, Any], a: str, b: str) -> list[str]:
    m0 = mem[b][0]
    lines = _heading(
        f"**6. Memory and recycling** ({m0['total']} mixed conversions, pool of 2, 2 threads, "
        f"MAX_CONVERSIONS_PER_INSTANCE={m0['max_conversions_setting']}, MAX_OFFICE_RSS_MB={m0['max_rss_mb_setting']})",
        "| tree | failed | restarts | soffice.bin RSS ready -> end (conversions since its start) | worker RSS "
        "| latency / doc median: p50, p99, max | requests > 1.3x / > 2x | while a spare warmed: requests, > 1.3x, "
        "max | wall |",
        "|---|---:|---|---|---:|---|---:|---|---:|",
    )
    for t in (a, b):
        m = mem[t][0]
        rss = ", ".join(
            f"{i:.0f} -> {e:.0f} MiB ({c})"
            for i, e, c in zip(m["idle_rss_mib"], m["end_rss_mib"], m["conversions_since_start"], strict=False)
        )
        lines.append(
            f"| {t} | {m['failures']} | {m['restarts']} | {rss} | {m['worker_rss_mib']:.0f} MiB | "
            f"{m['rel_p50']:.2f}, {m['rel_p99']:.2f}, {m['rel_max']:.2f} | {m['over_1_3x']} / {m['over_2x']} "
            f"| {m.get('during_recycle', 0)}, {m.get('during_recycle_over_1_3x', 0)}, "
            f"{m.get('during_recycle_max', 0.0):.2f} | {m['wall_s']:.0f} s |"
        )
    return lines


def render(res: dict[str, Any], trees: list[str]) -> str:
    a, b = trees  # baseline, current
    lines: list[str] = []
    for name, part in (("ready", _render_ready), ("families", _render_families), ("e2e", _render_e2e),
                       ("throughput", _render_throughput), ("hol", _render_hol), ("memory", _render_memory)):
        if name in res:
            lines += part(res[name], a, b)
    return "\n".join(lines).strip("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="the 'before' source tree (git archive HEAD | tar -x -C DIR)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--e2e", action="store_true", help="also run bench/e2e.py for both trees")
    parser.add_argument("--own-bench", action="store_true",
                        help="each tree's figures run that tree's own bench/perf.py and bench/e2e.py (to compare two "
                             "versions of the bench itself); by default both trees run this tree's")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", default="ready,families,throughput,hol,memory",
                        help="comma-separated subset of the figures (the table prints only those)")
    parser.add_argument("--child")
    parser.add_argument("--tree", type=Path)
    parser.add_argument("--child-work", type=Path)
    parser.add_argument("--template", type=Path)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.tree))
        if args.child not in CHILDREN:
            raise SystemExit(f"unknown child kind {args.child}")
        print(json.dumps(CHILDREN[args.child](Child(args.child_work, args.template, args.quick))))
        return 0
    trees = {"before": args.baseline.resolve(), "after": REPO} if args.baseline else {"after": REPO}
    if len(trees) == 1:
        trees = {"after (again)": REPO, "after": REPO}
    load_before = os.getloadavg()
    t0 = time.monotonic()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="docworker-perf-") as tmp:
        work = Path(tmp)
        (work / "tmp").mkdir()
        drv = Driver(trees, work, args.quick, args.own_bench)
        only = set(args.only.split(","))
        if "ready" in only:
            res["ready"] = drv.ready()
            print("perf: ready done", json.dumps(res["ready"]), file=sys.stderr, flush=True)
        for kind, rounds in (("families", 3 if args.quick else 7), ("throughput", 1 if args.quick else 2),
                             ("hol", 1 if args.quick else 2), ("memory", 1)):
            if kind in only:
                res[kind] = drv.figure(kind, rounds)
        if args.e2e:
            res["e2e"] = drv.e2e(5 if args.quick else 21)
    res["meta"] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "nproc": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": time.monotonic() - t0,
        "argv": sys.argv[1:],
    }
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    print(render(res, list(trees)))
    meta = res["meta"]
    print(
        f"\n{meta['date']}, nproc {meta['nproc']}, load average before {meta['loadavg_before']}, "
        f"after {meta['loadavg_after']}, wall {meta['wall_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
