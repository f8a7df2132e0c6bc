"""lab.timerwheel: the level and granule a kernel timer lands in (kernel/time/timer.c), and how late
it may fire - the tolerance FACTS.md §1 gives for a 60 s TIME-WAIT timer."""

from __future__ import annotations

import pytest

from lab.timerwheel import granule_s, granule_ticks, level, max_late_s


@pytest.mark.parametrize("ticks, lvl", [(0, 0), (62, 0), (63, 1), (503, 1), (504, 2), (4031, 2),
                                        (4032, 3), (32255, 3), (32256, 4)])
def test_level_boundaries(ticks, lvl):
    assert level(ticks) == lvl
    assert granule_ticks(ticks) == 8 ** lvl


def test_facts_md_numbers():
    assert granule_s(60, 250) == pytest.approx(2.048)        # 512 ticks at HZ=250
    assert granule_s(60, 1000) == pytest.approx(4.096)       # 4096 ticks at HZ=1000
    assert max_late_s(60, 250) == pytest.approx(2.052)
    assert max_late_s(0.2, 250) == pytest.approx(0.008)      # an RTO: level 0, one tick + the arming tick


def test_unknown_hz_is_conservative():
    assert max_late_s(60, None) >= max(max_late_s(60, hz) for hz in (250, 300, 1000)) - 1e-9
