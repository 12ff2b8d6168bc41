"""Where the start of one office goes: each step of OfficePool.start() timestamped, then the first requests.

    .venv/bin/python bench/start_timeline.py [--pool-size 1]

Starts a pool in-process on an initialised profile template (built once into a temp dir), wraps the instance and
pool steps (instance start, wait_ready, each probe conversion) with timestamps since this script began, reports
when `start()` returned ("READY"), then converts one docx at once (it may wait for a warm-up probe in progress),
waits until every instance is idle and converts five more (steady state). Everything runs on 127.0.0.1 and every
process is stopped by the pool before exit.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worker.config import OfficeSettings  # noqa: E402
from worker.conversion import convert_file  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.office import instance as instance_module  # noqa: E402
from worker.office import pool as pool_module  # noqa: E402
from worker.office.profile import build_template  # noqa: E402

SAMPLE = REPO / "tests" / "data" / "sample.docx"


def mark(what: str) -> None:
    print(f"{(time.perf_counter() - T0) * 1000:7.0f} ms  {threading.current_thread().name:18s} {what}", flush=True)


def timed(cls: type, name: str) -> None:
    """Replace cls.name by a wrapper that marks its start and end."""
    original: Callable[..., Any] = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        detail = f" {args[0].name}" if name == "convert" and args else ""
        mark(f"{cls.__name__}.{name}{detail} start")
        try:
            return original(self, *args, **kwargs)
        finally:
            mark(f"{cls.__name__}.{name} end")

    setattr(cls, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-size", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docworker-timeline-") as tmp:
        work = Path(tmp)
        settings = OfficeSettings(pool_size=args.pool_size, work_dir=work / "work")
        template = build_template(settings, work / "template")
        for name in ("start", "wait_ready", "convert"):
            timed(instance_module.OfficeInstance, name)
        timed(pool_module.OfficePool, "_probe")
        global T0
        T0 = time.perf_counter()
        mark("pool.start()")
        pool = OfficePool(OfficeSettings(pool_size=args.pool_size, work_dir=work / "work", profile_template=template))
        try:
            pool.start()
            mark("READY (start() returned)")
            t = time.perf_counter()
            convert_file(pool, SAMPLE, work / "first.pdf", SAMPLE.name, work)
            mark(f"first docx at ready: {(time.perf_counter() - t) * 1000:.0f} ms")
            while any(s.state != "idle" for s in pool.status()):
                time.sleep(0.005)
            mark("every instance idle (all families warm)")
            for i in range(5):
                t = time.perf_counter()
                convert_file(pool, SAMPLE, work / f"steady-{i}.pdf", SAMPLE.name, work)
                mark(f"steady docx: {(time.perf_counter() - t) * 1000:.0f} ms")
        finally:
            pool.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
