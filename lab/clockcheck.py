"""The wall clock against the kernel's own: a stretch of a run in which they parted.

Every time the lab measures (pcap timestamps, the sampler's samples, a check's durations) is wall
clock time (CLOCK_REALTIME); the kernel's TCP timers count jiffies, which follow its monotonic
clock. The two keep together unless the machine itself is paused (a virtual machine stopped by its
host) or its wall clock is set: then a duration on the wall clock is not the kernel's, and a check
would judge the kernel on time it never counted.

The sampler's timer samples show it without any other instrument. A TIME-WAIT (or FIN-WAIT-2)
timer is only ever restarted to its full length; between restarts its due time, asked + expires,
stays put within a tick. Seen here, in a docker run of time-wait-duration on this machine's VM
(2026-12-04): the client's TIME-WAIT timer had 4160 ms left at 06:40:33.94, nothing was sampled for
12.4 s (no process ran), and at 06:40:48.54 it had 1932 ms left - due 12.4 s later than before, with
no segment to restart it. The TIME-WAIT then lasted 74.6 s on the wall clock; the kernel had
counted 60.

Slower, the same machine's wall clock gains on its monotonic clock in steps of 10 ms every 2 s for
minutes at a time (0.5 %): 0.29 s over a 60 s TIME-WAIT, enough to carry a timer that fired 1.77 s
late past the 2.05 s the lifetime check allows. ``wall_gain`` measures that gain over a stretch from
the same samples, so a lifetime can be given in the kernel's own time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from .records import TimerSample

__all__ = ["ClockStall", "STALL_S", "clock_stalls", "wall_gain"]

STALL_S = 0.5               # a due time moved later by this much with no restart: the clocks parted
_RESTART_MS = 50            # expires grew by more than this: the timer was restarted (lab.observe)
_FIXED = ("timewait",)      # timers restarted only to their full length (never re-armed shorter)


@dataclass(frozen=True)
class ClockStall:
    host: str
    key: str                # the socket whose timer shows it
    state: str
    since: float            # the last sample before (its answer time), epoch s
    until: float            # the first sample after (its asking time)
    lag_s: float            # how much later the timer came due on the wall clock

    @property
    def text(self) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.since))
        return (f"the kernel's clock fell {self.lag_s:.1f} s behind the wall clock after {at} ({self.host}'s "
                f"{self.state} timer came due {self.lag_s:.1f} s later with no restart, between two samples "
                f"{self.until - self.since:.1f} s apart): the machine was paused or its clock set, so wall-clock "
                "times across it are not the kernel's")


def clock_stalls(series: dict[str, Iterable], min_s: float = STALL_S) -> list[ClockStall]:
    """Each place where a fixed-length timer's due time moved later by *min_s* or more between two
    consecutive samples of one socket with no restart between them (*series*: the sampler's timer
    samples, by host). A timer past due (expires 0: the kernel has not run it yet) says nothing."""
    out = []
    for host, rows in series.items():
        last: dict[tuple[str, str], TimerSample] = {}
        for s in sorted((TimerSample.of(r) for r in rows), key=lambda s: s.asked):
            if s.timer not in _FIXED:
                continue
            k = (s.key, s.state)
            a, last[k] = last.get(k), s
            if a is None or s.expires_ms == 0 or s.expires_ms > a.expires_ms + _RESTART_MS:
                continue
            lag = s.due[0] - a.due[1]
            if lag >= min_s:
                out.append(ClockStall(host, s.key, s.state, a.answered, s.asked, round(lag, 3)))
    return sorted(out, key=lambda c: c.since)


def wall_gain(samples: Iterable[TimerSample]) -> tuple[float, float] | None:
    """How much the wall clock gained on the kernel's from the first to the last of *samples* (one
    socket's samples in one state, in time order), as (least, most) seconds: how much later its
    fixed-length timer came due on the wall clock at the end than at the start. None when it cannot
    be read: fewer than two samples of a fixed timer before it fell due, or a restart between."""
    fixed = [s for s in samples if s.timer in _FIXED and s.expires_ms > 0]
    if len(fixed) < 2 or any(b.expires_ms > a.expires_ms + _RESTART_MS for a, b in zip(fixed, fixed[1:])):
        return None
    first, last = fixed[0], fixed[-1]
    return round(last.due[0] - first.due[1], 4), round(last.due[1] - first.due[0], 4)
