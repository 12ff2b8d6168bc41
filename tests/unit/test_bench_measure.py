"""bench/measure.py: the order the sides run in and the statistics every bench figure is computed with."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from measure import MIXED, alternate, interleaved, medians, percentile, rotate  # noqa: E402


def test_alternate_reverses_the_sides_every_other_round() -> None:
    calls: list[tuple[str, int]] = []
    samples = interleaved(4, ["a", "b"], lambda side, r: calls.append((side, r)) or r)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert samples == {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3]}


def test_rotate_starts_each_round_with_the_next_side() -> None:
    order: list[str] = []
    interleaved(3, ["a", "b", "c"], lambda side, _: order.append(side), order=rotate)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert alternate(["a", "b", "c"], 1) == ["c", "b", "a"]


def test_percentile_is_a_sample_and_p99_of_100_is_the_second_worst() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 51.0  # nearest rank of 49.5 rounds to even: index 50
    assert percentile([3.0], 0.99) == 3.0
    assert medians({"x": [1.0, 9.0, 2.0], "y": [4.0, 6.0]}) == {"x": 2.0, "y": 5.0}


def test_the_mixed_workload_exists() -> None:
    assert len(MIXED) == 10
    assert all(doc.is_file() for doc in MIXED)
