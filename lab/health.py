"""The lab's own health during a run: what broke in the *observation*, as opposed to what the
kernel did.

Five things can leave a hole in the evidence without the kernel being at fault:

* a capture (tcpdump) that ended before the lab stopped it: its pcap misses the rest of the run;
* a host's network namespace that vanished (deleted by hand, a container killed): what is read
  from it afterwards would come from somewhere else;
* the lab process stopped (SIGSTOP / Ctrl-Z, then SIGCONT): nothing was sampled, stepped or timed
  while it was stopped, and waits measured on the wall clock ran on without it;
* the machine paused or its wall clock set: the wall clock stepped against the kernel's (lab.clockcheck
  reads it from the offsets between the two the sampler keeps, ``Cadence.offsets``), so wall-clock
  times across it are not the kernel's;
* the sampler falling behind (a loaded machine): stretches of the run without a sock_diag sample.

The first four break the run as a whole (``Health.problems``): the runner judges nothing and says
what broke (exit 2). Sampler gaps are recorded (``Cadence``) and left to each check, which knows
whether it needed a sample inside a gap (it is then inconclusive, not failed).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Problem", "Health", "Cadence", "PauseWatch", "ns_identity"]


@dataclass(frozen=True)
class Problem:
    kind: str            # "capture", "namespace", "paused", "clock", "sampler", "watch"
    host: str
    text: str            # one line: what broke, and what evidence it takes away
    t: float             # when it was noticed (epoch seconds)

    def to_json(self) -> dict:
        return {"kind": self.kind, "host": self.host, "text": self.text, "t": round(self.t, 6)}


def ns_identity(nspath: str) -> tuple[int, int] | None:
    """(device, inode) of the namespace at *nspath*, or None when the path is gone."""
    try:
        st = os.stat(nspath)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Health:
    """Problems noticed during one run; noted once each (per kind and host)."""

    def __init__(self) -> None:
        self._problems: dict[tuple[str, str], Problem] = {}
        self._lock = threading.RLock()   # a signal handler may note while the thread holds it

    def note(self, kind: str, host: str, text: str, t: float | None = None) -> None:
        with self._lock:
            self._problems.setdefault((kind, host), Problem(kind, host, text, t or time.time()))

    @property
    def problems(self) -> list[Problem]:
        with self._lock:
            return sorted(self._problems.values(), key=lambda p: p.t)

    def __bool__(self) -> bool:
        return bool(self._problems)

    def summary(self) -> str:
        """One line naming what broke."""
        return "; ".join(p.text for p in self.problems)


@dataclass
class Cadence:
    """When the sampler polled: every round's asking time. Gaps longer than *gap_s* are kept."""

    gap_s: float = 0.010
    polls: int = 0
    first: float | None = None
    last: float | None = None
    gaps: list[tuple[float, float]] = field(default_factory=list)   # (previous poll, this poll)
    max_gap_s: float = 0.0
    sched: str = ""              # the sampler thread's scheduling policy: fifo or other
    # (wall time, wall clock - monotonic clock) whenever that offset moved 1 ms or more since the
    # last one kept: what the wall clock gained on the kernel's (lab.clockcheck)
    offsets: list[tuple[float, float]] = field(default_factory=list)

    def tick(self, t: float, mono: float | None = None) -> None:
        if mono is not None:
            off = t - mono
            if not self.offsets or abs(off - self.offsets[-1][1]) >= 0.001:
                self.offsets.append((round(t, 6), round(off, 6)))
        if self.last is not None:
            gap = t - self.last
            self.max_gap_s = max(self.max_gap_s, gap)
            if gap > self.gap_s:
                self.gaps.append((round(self.last, 6), round(t, 6)))
        else:
            self.first = t
        self.last = t
        self.polls += 1

    def to_json(self) -> dict:
        span = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        return {"polls": self.polls, "span_s": round(span, 3), "max_gap_ms": round(self.max_gap_s * 1000, 1),
                "gap_threshold_ms": round(self.gap_s * 1000, 1), "sched": self.sched, "gaps": self.gaps[:1000],
                "gaps_total": len(self.gaps), "clock_offsets": self.offsets[:5000]}


class PauseWatch:
    """Notices the process being stopped and continued (SIGSTOP/SIGTSTP, then SIGCONT).

    A SIGCONT handler records when the process ran again; how long it was stopped comes from the
    sampler's cadence: the gap in its polls that ends at that moment (the sampler thread may poll
    once before the main thread runs the handler, so the gap is looked up, not measured from the
    handler). Install from the main thread; ``close()`` restores the old handler."""

    def __init__(self) -> None:
        self._old = None
        self.resumed: list[float] = []

    def install(self) -> PauseWatch:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGCONT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.resumed.append(time.time())

    def pauses(self, cadence: Cadence, min_s: float = 0.1) -> list[tuple[float, float]]:
        """(stopped, resumed) for each SIGCONT that ended a gap of at least *min_s* in the
        sampler's polls; a SIGCONT to a process that was running is no pause."""
        out = []
        for r in self.resumed:
            before = [g for g in cadence.gaps if g[0] <= r and g[1] <= r + 0.5]
            if before and before[-1][1] - before[-1][0] >= min_s:
                out.append(before[-1])
        return sorted(set(out))

    def close(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGCONT, self._old)
            self._old = None
