"""The capacity search of `invoke bench --capacity` (lab.bench.capacity): doubling, then halving
the gap, on a fake step that holds up to a known number of labs."""

from __future__ import annotations

import pytest

from lab.bench import capacity


@pytest.mark.parametrize("holds_up_to, limit, want, tried", [
    (5, 64, 5, [1, 2, 4, 8, 6, 5]),
    (8, 64, 8, [1, 2, 4, 8, 16, 12, 10, 9]),
    (0, 64, 0, [1]),
    (100, 16, 16, [1, 2, 4, 8, 16]),
])
def test_the_search_finds_the_largest_step_that_held(monkeypatch, holds_up_to, limit, want, tried):
    def step(backend, n):
        return {"labs": n, "passed": n, "max_gap_ms": 1.0, "wall_s": 1.0, "verdicts": [], "held": n <= holds_up_to}

    monkeypatch.setattr(capacity, "one_step", step)
    got = capacity.find_capacity("netns", limit=limit)
    assert got["capacity"] == want
    assert [s["labs"] for s in got["steps"]] == tried
    assert got["limit_reached"] == (holds_up_to >= limit)
