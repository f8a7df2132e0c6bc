"""How late a kernel timer may fire: the granularity of the timer wheel (kernel/time/timer.c).

A timer armed for *delay* ticks goes into the wheel level whose range holds *delay*; its expiry is
rounded UP to that level's bucket boundary, strictly after the due jiffy (``calc_index()``: "Round
up with level granularity to prevent this [early expiry]"; ``(expires >> shift) + 1) << shift``),
so it fires after its delay and at most one level granule late, never early. Level n holds delays
from ``LVL_START(n) = 63 << 3(n-1)`` ticks on, in granules of ``8**n`` ticks (kernel/time/timer.c,
Linux v6.18; reference R-TIMER-WHEEL):

    HZ=250:  60 s = 15000 ticks -> level 3, granule 512 ticks = 2.048 s
             5 s = 1250 ticks -> level 2, 64 ticks = 256 ms; 400 ms -> level 1, 8 ticks = 32 ms
    HZ=1000: 60 s -> level 4, 4096 ticks = 4.096 s

The jiffy the timer was armed in adds up to one more tick (``jiffies + timeo`` counts from the
start of the current tick). Checks use ``max_late_s()`` as the tolerance above an expected expiry;
``fires_at()`` is the exact jiffy, for models that follow a chain of timers (retransmitted-fin).
"""

from __future__ import annotations

__all__ = ["level", "granule_ticks", "granule_s", "max_late_s", "fires_at"]

LVL_CLK_SHIFT = 3           # each level is 8 times coarser than the one below
LVL_BITS = 6                # 64 buckets per level
LVL_SIZE = 1 << LVL_BITS


def _start(n: int) -> int:
    """LVL_START(n): the smallest delay (ticks) that lands in level n (n >= 1)."""
    return (LVL_SIZE - 1) << ((n - 1) * LVL_CLK_SHIFT)


def level(delay_ticks: int) -> int:
    """calc_wheel_index(): the level a timer *delay_ticks* ahead is queued in."""
    n = 0
    while delay_ticks >= _start(n + 1):
        n += 1
    return n


def granule_ticks(delay_ticks: int) -> int:
    return 1 << (level(delay_ticks) * LVL_CLK_SHIFT)


def granule_s(delay_s: float, hz: int) -> float:
    """The bucket width, in seconds, of the level a *delay_s* timer lands in at *hz*."""
    return granule_ticks(round(delay_s * hz)) / hz


def max_late_s(delay_s: float, hz: int | None) -> float:
    """How late a timer armed *delay_s* ahead may fire: one granule of its level plus the tick
    it was armed in. *hz* None (CONFIG_HZ unknown) assumes the coarsest common HZ, 100."""
    hz = hz or 100
    return granule_s(delay_s, hz) + 1 / hz


def latest_s(delay_s: float, hz: int | None) -> float:
    """max_late_s for *hz*, or, with HZ unknown, the most any common HZ (100, 250, 300, 1000) allows:
    a wait that must cover the firing (a 5 s timer: 90 ms late at HZ=100, 260 ms at 250, 513 ms at
    1000 - the wheel's levels are counted in jiffies)."""
    return max_late_s(delay_s, hz) if hz else max(max_late_s(delay_s, h) for h in (100, 250, 300, 1000))


def fires_at(expires: int, clk: int) -> int:
    """The jiffy at which a timer due at jiffy *expires* runs, when it was queued while the wheel's
    clock (``base->clk``) read *clk*: ``calc_wheel_index()`` picks the level from ``expires - clk``
    and ``calc_index()`` rounds *expires* up to that level's granule, strictly after it
    (``(expires >> shift) + 1) << shift``) - so even a level-0 timer runs one jiffy after
    *expires*, and a timer armed from another timer's callback (which runs at a granule boundary,
    with ``base->clk`` one jiffy ahead) is late by an amount fixed by its delay alone."""
    shift = level(expires - clk) * LVL_CLK_SHIFT
    return ((expires >> shift) + 1) << shift
