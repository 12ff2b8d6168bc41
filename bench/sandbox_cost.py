"""What the office sandbox costs: office start -> ready, and a warm 1-page conversion, with and without it.

    .venv/bin/python bench/sandbox_cost.py [--rounds 15] [--conversions 60]

One process, A/B interleaved (the order flips every round), medians: `sandbox` is OFFICE_SANDBOX=bwrap as probed
on this machine (namespaces + uid 65534 when root), `none` is OFFICE_SANDBOX=off. Start -> ready is
OfficeInstance.start() until its first UNO round trip answers (wait_ready), on an initialised profile template,
without the pool's probe conversions (the same for both). The warm conversion is convert_file() of
tests/data/sample.docx on a started pool of 1 per mode (staging into the instance's jobs area included), after
5 untimed warm-ups each. Also timed: the one-off probe() at pool start. Wall time of a start swings by +-100 ms
on a loaded 2-CPU machine, so the CPU the office's process group used until ready is reported beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import DOC1, convert_timed, interleaved, medians, timed  # noqa: E402

from worker.config import OfficeSettings  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.office.instance import OfficeInstance, group_members  # noqa: E402
from worker.office.profile import build_template  # noqa: E402
from worker.office.sandbox import Sandbox, SandboxMode, probe  # noqa: E402

SAMPLE = DOC1
MODES = ("sandbox", "none")


def row(what: str, samples: dict[str, list[float]]) -> str:
    med = medians(samples)
    a, b = (med[m] * 1000 for m in MODES)
    n = len(samples[MODES[0]])
    return f"| {what} | {n} | {a:.1f} ms | {b:.1f} ms | {a - b:+.1f} ms | {a / b:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15, help="office starts per mode")
    parser.add_argument("--conversions", type=int, default=60, help="warm conversions per mode")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sandbox-cost-", dir="/tmp") as tmp_text:
        tmp = Path(tmp_text)
        tmp.chmod(0o755)  # the office user must reach the work dirs below in the fallback, too
        base = OfficeSettings(work_dir=tmp / "work", pool_size=1)
        template = build_template(base, tmp / "template")
        sandboxes = {"sandbox": probe(SandboxMode.BWRAP, base.uno_python, base.work_dir),
                     "none": Sandbox(SandboxMode.OFF)}
        print(f"sandbox under test: {sandboxes['sandbox']}")

        probe_s = [timed(lambda: probe(SandboxMode.AUTO, base.uno_python, base.work_dir)) for _ in range(10)]

        log = (tmp / "office.log").open("ab")

        start_cpu: dict[str, list[float]] = {mode: [] for mode in MODES}

        def start(mode: str, i: int) -> float:
            inst = OfficeInstance(base, f"bench-{mode}-{i}", template, log, sandboxes[mode])
            t0 = time.perf_counter()
            inst.start()
            inst.wait_ready(60)
            elapsed = time.perf_counter() - t0
            assert inst.pgid is not None
            start_cpu[mode].append(group_cpu_s(inst.pgid))
            inst.stop(grace=0)
            return elapsed

        starts = interleaved(args.rounds, MODES, start)
        log.close()

        pools = {mode: OfficePool(OfficeSettings(work_dir=tmp / f"pool-{mode}", pool_size=1, profile_template=template,
                                                 sandbox="bwrap" if mode == "sandbox" else "off")) for mode in MODES}
        try:
            for pool in pools.values():
                pool.start()
                for _ in range(5):
                    convert_timed(pool, SAMPLE, tmp)
            conversions = interleaved(args.conversions, MODES, lambda mode, _: convert_timed(pools[mode], SAMPLE, tmp))
        finally:
            for pool in pools.values():
                pool.stop()

    print()
    print("| step | rounds | sandbox (bwrap) | none (off) | difference | ratio |")
    print("|---|---|---|---|---|---|")
    print(row("office start -> ready (wall)", starts))
    print(row("CPU of the office's process group at ready", start_cpu))
    print(row("warm 1-page docx conversion", conversions))
    print(f"| probe() once per pool start | 10 | {statistics.median(probe_s) * 1000:.1f} ms | - | - | - |")
    print(f"\n1-min load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")


def group_cpu_s(pgid: int) -> float:
    """user+system CPU of every live process in the group, with the children each has reaped (bwrap, launcher,
    soffice.bin, and the helpers soffice starts): less at the mercy of a busy machine than wall time."""
    ticks = 0
    for pid in group_members(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
