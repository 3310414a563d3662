"""The arithmetic of bench/ray_overhead.py: the fitted cost lines and the break-even size."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import ray_overhead
        yield ray_overhead
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_fit_recovers_a_line(bench):
    points = [(h, 6.0 + 10.0 * h) for h in (0.5, 1, 2, 4)] + [(1, 16.5), (1, 15.5)]
    fixed, per_h = bench.fit(points)
    assert fixed == pytest.approx(6.0)
    assert per_h == pytest.approx(10.0)


def test_break_even(bench):
    # Same cost per hour, Ray 6 s more per job: within 15 % from 6 / (10 - 8.5) * 0.85 h on.
    lo, hi = bench.break_even((0.0, 10.0), (6.0, 10.0))
    assert (lo, hi) == (pytest.approx(0.85 * 6.0 / 1.5), None)
    assert 10 * lo == pytest.approx(0.85 * (6.0 + 10 * lo))
    assert bench.break_even((2.0, 10.0), (1.0, 10.0)) == (0.0, None)  # Ray never behind
    assert bench.break_even((0.0, 10.0), (6.0, 12.0)) is None  # 0.83 an hour, and later
    assert bench.break_even((0.0, 10.0), (0.0, 11.0)) == (0.0, None)  # 0.91 at every size
    # Ray's hour costs more but its job less (the teachers here): only jobs up to a size.
    lo, hi = bench.break_even((11.0, 25.5), (10.5, 32.0))
    assert lo == 0.0 and hi == pytest.approx((0.85 * 10.5 - 11.0) / (25.5 - 0.85 * 32.0))
    assert 11.0 + 25.5 * hi == pytest.approx(0.85 * (10.5 + 32.0 * hi))
