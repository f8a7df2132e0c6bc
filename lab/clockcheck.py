"""The wall clock against the kernel's own: where they parted during a run, and by how much.

Every time the lab measures (pcap timestamps, the sampler's samples, a check's durations) is wall
clock time (CLOCK_REALTIME); the kernel's TCP timers count jiffies, which follow its monotonic
clock. The two keep together unless the machine itself is paused (a virtual machine stopped by its
host) or its wall clock is set or slewed: then a duration on the wall clock is not the kernel's,
and a check would judge the kernel on time it never counted.

The sampler keeps the offset between the two clocks at every poll where it moved a millisecond or
more (lab.health.Cadence.offsets, report.json ``observation.sampler.clock_offsets``). Seen on this
project's CI machine, a VM (2026-12-04):

* a stall: no process ran for 12.4 s, and afterwards a client's TIME-WAIT timer, which had had
  4160 ms left, came due 12.4 s later on the wall clock with nothing to restart it. The TIME-WAIT
  "lasted" 74.6 s on the wall clock; the kernel had counted 60. A step of STEP_S or more, either
  way, between two polls breaks the run's observation (``clock_steps``: nothing is judged);
* a drift: the wall clock gained 10 ms on the monotonic clock every 2 s for minutes at a time
  (0.5 %), 0.29 s over a 60 s TIME-WAIT, enough to carry a timer that fired 1.77 s late past the
  2.05 s the lifetime check allows. ``wall_gain`` gives that gain over a stretch, so a lifetime can
  be told in the kernel's time.

Runs recorded before the offsets were kept show the drift only in their timer samples: a
fixed-length timer's due time (asked + expires) moves with it (``timer_gain``).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .records import TIMER_RESTART_MS, TimerSample

__all__ = ["ClockStep", "STEP_S", "clock_steps", "timer_gain", "wall_gain"]

STEP_S = 0.5                # the offset moved this much between two polls: the machine stopped, or its clock was set
_FIXED = ("timewait",)      # timers restarted only to their full length (never re-armed shorter)


@dataclass(frozen=True)
class ClockStep:
    at: float               # the poll that saw it (wall time, epoch s)
    step_s: float           # how far the wall clock moved against the kernel's (+: ahead)

    @property
    def text(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.at))
        return (f"the wall clock {'jumped' if self.step_s > 0 else 'fell'} {abs(self.step_s):.1f} s "
                f"{'ahead of' if self.step_s > 0 else 'behind'} the kernel's clock at {when} (between two of the "
                "sampler's polls): the machine was paused or its clock set, so wall-clock times across it "
                "are not the kernel's")


def clock_steps(offsets: Sequence[Sequence[float]], min_s: float = STEP_S) -> list[ClockStep]:
    """Each place where the offset between the wall clock and the monotonic one moved by *min_s*
    or more from one kept offset to the next (*offsets*: (wall time, offset) as the sampler kept
    them, one whenever the offset had moved 1 ms)."""
    return [ClockStep(t, round(off - prev, 3)) for (_, prev), (t, off) in zip(offsets, offsets[1:])
            if abs(off - prev) >= min_s]


def wall_gain(offsets: Sequence[Sequence[float]], since: float, until: float) -> float | None:
    """How much the wall clock gained on the kernel's between *since* and *until* (s; to the
    millisecond the offsets are kept to), or None when no offsets were kept."""
    if not offsets:
        return None
    times = [t for t, _ in offsets]

    def at(t: float) -> float:
        return offsets[max(0, bisect.bisect_right(times, t) - 1)][1]
    return round(at(until) - at(since), 4)


def timer_gain(samples: Iterable[TimerSample]) -> tuple[float, float] | None:
    """The same gain read from one socket's fixed-length timer (*samples*: in one state, in time
    order), as (least, most) s: how much later it came due on the wall clock at the end than at
    the start. For runs recorded without offsets. None when it cannot be read: fewer than two
    samples before the timer fell due, or a restart between."""
    fixed = [s for s in samples if s.timer in _FIXED and s.expires_ms > 0]
    if len(fixed) < 2 or any(b.expires_ms > a.expires_ms + TIMER_RESTART_MS for a, b in zip(fixed, fixed[1:])):
        return None
    first, last = fixed[0], fixed[-1]
    return round(last.due[0] - first.due[1], 4), round(last.due[1] - first.due[0], 4)
