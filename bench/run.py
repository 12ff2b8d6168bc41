"""Warm pool vs cold soffice, 1 vs 2 instances, start-to-ready and RSS growth, measured side by side in one run.

Run from the repo root: `.venv/bin/python bench/run.py` (writes bench/README.md) or `--quick` (fewer rounds, prints
only, about a minute). A and B are interleaved round by round so drift (thermal, noisy neighbours) hits both equally;
every figure is a median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import DOC1, DOC10, DOC100, MIXED, alternate, convert_timed, drain, timed  # noqa: E402

from worker.config import OfficeSettings  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.office.profile import build_template  # noqa: E402

DOCS = {"1 page": DOC1, "10 pages": DOC10, "100 pages": DOC100}
README = REPO / "bench" / "README.md"


def run_checked(cmd: list[str], env: dict[str, str], out: Path) -> None:
    """Run a whole process; a run that does not produce its PDF is a failed benchmark, not a fast one."""
    out.unlink(missing_ok=True)
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    if not out.is_file() or not out.read_bytes().startswith(b"%PDF"):
        raise RuntimeError(f"{cmd[:3]} produced no PDF at {out}")


class Bench:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.template = build_template(OfficeSettings(work_dir=work), work / "profile-template")
        self.cold_profile = work / "cold-profile"
        self.env = dict(os.environ, TMPDIR=str(work / "tmp"))
        (work / "tmp").mkdir()

    def settings(self, name: str, **kw: object) -> OfficeSettings:
        return OfficeSettings(work_dir=self.work / name, profile_template=self.template, **kw)  # type: ignore[arg-type]

    # -- A/B: cold soffice vs warm pool (in-process and whole CLI process) ---------------------------------------

    def cold(self, src: Path) -> float:
        out_dir = self.work / "cold-out"
        cmd = [
            "soffice", f"-env:UserInstallation=file://{self.cold_profile}", "--headless",
            "--convert-to", "pdf", "--outdir", str(out_dir), str(src),
        ]
        return timed(lambda: run_checked(cmd, self.env, out_dir / (src.stem + ".pdf")))

    def cli(self, src: Path) -> float:
        out = self.work / "cli-out.pdf"
        env = dict(self.env, WORK_DIR=str(self.work / "cli"), OFFICE_PROFILE_TEMPLATE=str(self.template), POOL_SIZE="1")
        cmd = [sys.executable, "-m", "worker", "convert", str(src), "-o", str(out)]
        return timed(lambda: run_checked(cmd, env, out))

    def latency(self) -> list[dict[str, object]]:
        rounds = 2 if self.quick else 7
        self.cold(DOCS["1 page"])  # first run on a new profile pays the first-start restart; not measured
        pool = OfficePool(self.settings("warm", pool_size=1))
        pool.start()
        jobs = self.work / "jobs"
        jobs.mkdir()
        samples: dict[tuple[str, str], list[float]] = {}
        try:
            for src in DOCS.values():  # one untimed warm conversion per document, like a steady-state worker
                convert_timed(pool, src, jobs)
            for r in range(rounds):
                for label, src in DOCS.items():
                    sides = [("cold", self.cold), ("warm CLI", self.cli),
                             ("warm", lambda src: convert_timed(pool, src, jobs))]
                    for kind, fn in alternate(sides, r):
                        samples.setdefault((label, kind), []).append(fn(src))
        finally:
            pool.stop()
        rows = []
        for label in DOCS:
            cold = statistics.median(samples[(label, "cold")])
            warm = statistics.median(samples[(label, "warm")])
            cli = statistics.median(samples[(label, "warm CLI")])
            rows.append({"doc": label, "cold": cold, "warm": warm, "cli": cli, "n": rounds})
        return rows

    # -- A/B: pool of 1 vs pool of 2 under two client threads ----------------------------------------------------

    def throughput(self) -> list[dict[str, object]]:
        rounds = 1 if self.quick else 3
        workloads = {"1-page x20": [DOCS["1 page"]] * 20, "10-page x10": [DOCS["10 pages"]] * 10}
        pools = {n: OfficePool(self.settings(f"tp{n}", pool_size=n)) for n in (1, 2)}
        for pool in pools.values():
            pool.start()
        rates: dict[tuple[str, int], list[float]] = {}
        try:
            for pool in pools.values():  # warm each instance on both documents
                self._parallel(pool, [DOCS["1 page"], DOCS["10 pages"]] * 2)
            for r in range(rounds):
                for name, docs in workloads.items():
                    for n in alternate((1, 2), r):
                        wall = timed(lambda pool=pools[n], docs=docs: self._parallel(pool, docs))
                        rates.setdefault((name, n), []).append(len(docs) / wall)
        finally:
            for pool in pools.values():
                pool.stop()
        return [
            {"load": name, "n1": statistics.median(rates[(name, 1)]), "n2": statistics.median(rates[(name, 2)])}
            for name in workloads
        ]

    def _parallel(self, pool: OfficePool, docs: list[Path]) -> None:
        """Two client threads share the list, like two concurrent push requests; every request must succeed."""
        jobs = self.work / "tp-jobs"
        jobs.mkdir(exist_ok=True)
        _, failures = drain(pool, docs, 2, jobs)
        if failures:
            raise failures[0]

    # -- process start to ready ---------------------------------------------------------------------------------

    def ready(self) -> dict[str, float]:
        runs = 2 if self.quick else 5
        child = (
            "import time, sys; from pathlib import Path; from worker.config import OfficeSettings; "
            "from worker.office import OfficePool; t=time.monotonic(); "
            "p=OfficePool(OfficeSettings(pool_size=1, work_dir=Path(sys.argv[1]), "
            f"profile_template=Path({str(self.template)!r}))); "
            "p.start(); print('READY', time.monotonic()-t, flush=True); p.stop()"
        )
        whole, start_only = [], []
        for i in range(runs):
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-c", child, str(self.work / f"ready{i}")],
                cwd=REPO, env=self.env, stdout=subprocess.PIPE, text=True,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()
            whole.append(time.monotonic() - t0)
            proc.wait(60)
            if not line.startswith("READY"):
                raise RuntimeError(f"ready child failed: {line!r}")
            start_only.append(float(line.split()[1]))
        return {"whole": statistics.median(whole), "start": statistics.median(start_only), "n": runs}

    # -- memory after many conversions ---------------------------------------------------------------------------

    def rss(self) -> dict[str, object]:
        total = 100 if self.quick else 1000
        pool = OfficePool(self.settings("rss", pool_size=2, max_conversions=100_000, max_rss_mb=100_000))
        pool.start()
        try:
            idle = [s.rss_bytes for s in pool.status()]
            self._parallel(pool, [MIXED[i % len(MIXED)] for i in range(total)])
            status = pool.status()
            restarts = sum(pool.restarts.values())
        finally:
            pool.stop()
        return {
            "total": total,
            "idle_mib": [b / 2**20 for b in idle],
            "per_instance": [(s.conversions, s.rss_bytes / 2**20) for s in status],
            "restarts": restarts,
        }


def render(lat: list[dict], tp: list[dict], ready: dict, rss: dict, quick: bool, wall: float, load: str) -> str:
    one = lat[0]
    ratio_1p = float(one["cold"]) / float(one["warm"])
    lines = [
        "| figure | cold `soffice --convert-to` | warm pool, in-process `convert_file` "
        "| warm `worker convert` (whole process) | cold / warm | cold / CLI |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in lat:
        c, w, k = float(row["cold"]), float(row["warm"]), float(row["cli"])
        lines.append(
            f"| {row['doc']} docx, median of {row['n']} | {c:.2f} s | {w:.3f} s | {k:.2f} s "
            f"| {c / w:.1f}x | {c / k:.2f}x |"
        )
    lines += [
        "",
        "| load (2 client threads) | pool of 1 | pool of 2 | ratio |",
        "|---|---:|---:|---:|",
    ]
    ratios = []
    for row in tp:
        ratio = float(row["n2"]) / float(row["n1"])
        ratios.append(ratio)
        n1, n2 = float(row["n1"]), float(row["n2"])
        lines.append(f"| {row['load']} | {n1:.2f} conv/s | {n2:.2f} conv/s | {ratio:.2f}x |")
    per = ", ".join(f"{c} conversions -> {m:.0f} MiB" for c, m in rss["per_instance"])
    idle = ", ".join(f"{m:.0f} MiB" for m in rss["idle_mib"])
    lines += [
        "",
        "| figure | value |",
        "|---|---:|",
        f"| process start -> pool ready (cold Python, initialised profile), median of {ready['n']} "
        f"| {ready['whole']:.2f} s |",
        f"| of which `OfficePool.start()` | {ready['start']:.2f} s |",
        f"| soffice.bin RSS when ready (probe done) | {idle} |",
        f"| soffice.bin RSS after {rss['total']} mixed conversions on 2 instances | {per} |",
        f"| restarts during the RSS run | {rss['restarts']} |",
        "",
        "Targets:",
        f"- warm >= 5x faster than cold on 1 page: **{ratio_1p:.1f}x** ({'met' if ratio_1p >= 5 else 'MISSED'})",
        f"- pool of 2 >= 1.7x pool of 1: **{' / '.join(f'{r:.2f}x' for r in ratios)}** "
        f"({'met' if min(ratios) >= 1.7 else 'MISSED'})",
        f"- ready < 2 s: **{ready['whole']:.2f} s** ({'met' if ready['whole'] < 2 else 'MISSED'})",
        "",
        f"Bench wall time {wall:.0f} s{' (--quick)' if quick else ''}. Load average (1 min) before/after: {load}",
        "(other processes on a shared machine skew the 1-vs-2 ratio; rerun on an idle machine for that figure).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke, ~1 minute); prints only")
    parser.add_argument("--write", action="store_true", help="rewrite bench/README.md's results even with --quick")
    args = parser.parse_args()
    t0 = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="docworker-bench-") as tmp:
        bench = Bench(Path(tmp), args.quick)
        lat = bench.latency()
        print("latency", lat, flush=True)
        tp = bench.throughput()
        print("throughput", tp, flush=True)
        ready = bench.ready()
        print("ready", ready, flush=True)
        rss = bench.rss()
        print("rss", rss, flush=True)
    load = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    table = render(lat, tp, ready, rss, args.quick, time.monotonic() - t0, load)
    print(table)
    if args.write or not args.quick:
        write_readme(table, "--quick" if args.quick else "")
    return 0


def write_readme(table: str, flags: str) -> None:
    """Replace the results section of bench/README.md, keeping whatever analysis text follows it."""
    command = f".venv/bin/python bench/run.py {flags}".strip()
    header = (
        f"### Results\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `nproc` = {os.cpu_count()}, "
        f"`{subprocess.run(['soffice', '--version'], capture_output=True, text=True).stdout.strip()}`, "
        f"command:\n\n```\n{command}\n```\n\n"
    )
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    text = README.read_text() if README.exists() else f"# bench\n\n{begin}\n{end}\n"  # bench/e2e.py shares it
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    before, rest = text.split(begin, 1)
    after = rest.split(end, 1)[1]
    README.write_text(f"{before}{begin}\n{header}{table}\n{end}{after}")


if __name__ == "__main__":
    raise SystemExit(main())
