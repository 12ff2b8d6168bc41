"""Where the start of one office goes: each step of OfficePool.start() timestamped, then the first requests.

    .venv/bin/python bench/start_timeline.py [--pool-size 1]

Starts a pool in-process on an initialised profile template (built once into a temp dir), wraps the instance's
public steps (start, wait_ready, each conversion: the probes of every family first) with timestamps, reports
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

from measure import DOC1, convert_timed  # noqa: E402

from worker.config import OfficeSettings  # noqa: E402
from worker.office import OfficePool  # noqa: E402
from worker.office.instance import OfficeInstance  # noqa: E402
from worker.office.profile import build_template  # noqa: E402

SAMPLE = DOC1


def mark(what: str) -> None:
    print(f"{(time.perf_counter() - T0) * 1000:7.0f} ms  {threading.current_thread().name:18s} {what}", flush=True)


def traced(cls: type, name: str) -> None:
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
        template = build_template(OfficeSettings(pool_size=args.pool_size, work_dir=work / "work"), work / "template")
        for name in ("start", "wait_ready", "convert"):
            traced(OfficeInstance, name)
        global T0
        T0 = time.perf_counter()
        mark("pool.start()")
        pool = OfficePool(OfficeSettings(pool_size=args.pool_size, work_dir=work / "work", profile_template=template))
        try:
            pool.start()
            mark("READY (start() returned)")
            mark(f"first docx at ready: {convert_timed(pool, SAMPLE, work) * 1000:.0f} ms")
            while any(s.state != "idle" for s in pool.status()):
                time.sleep(0.005)
            mark("every instance idle (all families warm)")
            for _ in range(5):
                mark(f"steady docx: {convert_timed(pool, SAMPLE, work) * 1000:.0f} ms")
        finally:
            pool.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
