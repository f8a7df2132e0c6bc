"""lab.timerwheel: the level and granule a kernel timer lands in (kernel/time/timer.c), and how late
it may fire (the tolerance for a 60 s TIME-WAIT timer), and the exact jiffy a timer runs at."""

from __future__ import annotations

import pytest

from lab.timerwheel import fires_at, granule_s, granule_ticks, level, max_late_s


@pytest.mark.parametrize("ticks, lvl", [(0, 0), (62, 0), (63, 1), (503, 1), (504, 2), (4031, 2),
                                        (4032, 3), (32255, 3), (32256, 4)])
def test_level_boundaries(ticks, lvl):
    assert level(ticks) == lvl
    assert granule_ticks(ticks) == 8 ** lvl


def test_granules_at_common_hz():
    assert granule_s(60, 250) == pytest.approx(2.048)        # 512 ticks at HZ=250
    assert granule_s(60, 1000) == pytest.approx(4.096)       # 4096 ticks at HZ=1000
    assert max_late_s(60, 250) == pytest.approx(2.052)
    assert max_late_s(0.2, 250) == pytest.approx(0.008)      # an RTO: level 0, one tick + the arming tick


def test_unknown_hz_is_conservative():
    assert max_late_s(60, None) >= max(max_late_s(60, hz) for hz in (250, 300, 1000)) - 1e-9


@pytest.mark.parametrize("armed_at, delay, runs_at", [
    (100, 51, 152),          # level 0: one jiffy after the due jiffy 151 (base->clk = 101)
    (152, 102, 256),         # level 1 (granule 8): due 254 -> the next multiple of 8 after it
    (256, 204, 464),         # armed on a granule boundary: due 460, late by 4 jiffies (204 % 8 = 4)
    (464, 408, 880),         # 408 % 8 == 0: due on a boundary, so a whole granule late
    (880, 816, 1728),        # level 2 (granule 64): due 1696 -> 1728
])
def test_fires_at_rounds_up_strictly_after_the_due_jiffy(armed_at, delay, runs_at):
    # armed from a timer callback: the wheel's clock is one jiffy ahead of the arming jiffy
    assert fires_at(armed_at + delay, armed_at + 1) == runs_at
    assert 0 < runs_at - (armed_at + delay) <= granule_ticks(delay - 1)


def test_latest_covers_every_common_hz_when_hz_is_unknown():
    """A 5 s timer: one level-1 granule late at HZ=100 (80 ms), a level-2 one at 250 (256 ms) and
    a level-3 one at 1000 (512 ms): a wait that must cover its firing without knowing HZ takes the
    most, not HZ=100's."""
    from lab.timerwheel import latest_s, max_late_s

    assert latest_s(5, 250) == max_late_s(5, 250) == pytest.approx(0.26)
    assert max_late_s(5, None) == pytest.approx(0.09)
    assert latest_s(5, None) == pytest.approx(0.513)
    assert latest_s(60, None) >= max(max_late_s(60, h) for h in (100, 250, 300, 1000))
