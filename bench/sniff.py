"""sniff() before (the prolog scan of main's worker/sniff.py, or any git revision) vs now (xml_guard), side by side.

    .venv/bin/python bench/sniff.py [--base main] [--rounds 200] [FILE ...]
    .venv/bin/python bench/sniff.py --bombs      # how fast every bomb of tests/hostile_set.py is refused

Both versions run in this process, interleaved call by call (order swapped every round) so machine drift hits both;
prints the median per file and the ratio. Defaults: tests/data/sample.docx and sample-100pages.docx.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from measure import interleaved, medians, module_at, timed  # noqa: E402

from worker.sniff import sniff  # noqa: E402

DEFAULT_FILES = [REPO / "tests" / "data" / "sample.docx", REPO / "tests" / "data" / "sample-100pages.docx"]


def load_base(revision: str, scratch: Path) -> Callable[[Path, str], object]:
    """worker/sniff.py's sniff() as it was at `revision`."""
    base: Callable[[Path, str], object] = module_at(revision, "worker/sniff.py", scratch).sniff
    return base


def side_by_side(sides: dict[str, Callable[[Path, str], object]], path: Path, rounds: int) -> dict[str, float]:
    """Median seconds of each sniff() on `path`, called in turn, after 5 untimed rounds (page cache, modules)."""

    def call(side: str, _round: int) -> float:
        return timed(lambda: sides[side](path, path.name))

    interleaved(5, list(sides), call)
    return medians(interleaved(rounds, list(sides), call))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bombs", action="store_true")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    if args.bombs:
        return bombs(args.rounds)
    files = args.files or DEFAULT_FILES
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
        print(f"| file | size | {args.base} (prolog scan) ms | now (xml_guard) ms | added ms | now / {args.base} |")
        print("|---|---:|---:|---:|---:|---:|")
        for path in files:
            med = side_by_side({"before": base, "after": sniff}, path, args.rounds)
            b, a = med["before"] * 1000, med["after"] * 1000
            print(f"| {path.name} | {path.stat().st_size // 1024} KiB | {b:.2f} | {a:.2f} | {a - b:+.2f} |"
                  f" {a / b:.2f}x |")
    return 0


def bombs(rounds: int) -> int:
    """Median time for sniff() to refuse each bomb (the office would otherwise hold it until the timeout)."""
    from tests.hostile_set import VECTORS, Secrets
    from worker.errors import WorkerError

    print("| bomb | refused as | median ms | max ms |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        secrets = Secrets.write(Path(tmp) / "secrets")
        for vector in VECTORS:
            if vector.expect != "hostile":
                continue
            path = vector.build(Path(tmp) / vector.name, "http://127.0.0.1:9/", secrets)
            samples, reason = [], ""
            for _ in range(max(rounds // 10, 5)):
                t0 = time.perf_counter()
                try:
                    sniff(path, path.name)
                except WorkerError as exc:
                    reason = exc.reason.value
                samples.append(time.perf_counter() - t0)
            print(f"| {vector.name} ({vector.what}) | {reason or 'NOT REFUSED'} |"
                  f" {statistics.median(samples) * 1000:.1f} | {max(samples) * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
