"""How long a socket stayed in a state, bounded by the client's sock_diag samples and the capture
of the segment that moved it there, and judged against an expected length with the timer wheel's
slack (time-wait-duration: A's TIME-WAIT and B's orphaned FIN-WAIT-2). The lifetime is given in the
kernel's time: what the wall clock gained on the kernel's over it (lab.clockcheck: the sampler's
record of the two clocks, or for runs recorded without it the socket's own timer samples) is taken
off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.clockcheck import timer_gain, wall_gain

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.evidence import Evidence

__all__ = ["Lifetime", "judge", "measured", "MAX_SAMPLING_ERROR_S"]

MAX_SAMPLING_ERROR_S = 0.5               # wider bounds than this say nothing about the timer


@dataclass(frozen=True)
class Lifetime:
    """How long a socket stayed in one state, as the client's sock_diag samples bound it: it
    entered after the segment that moved it there was captured and after the previous sample was
    asked, and before the first sample in that state was answered; it went after the last sample
    that saw it was asked and before the one that missed it was answered."""

    entry: tuple[float | None, float]    # (None: nothing bounds the entry from below)
    gone: tuple[float, float]
    first_expires_ms: int                # the timer the first sample read
    timer: str
    samples: int
    gain: tuple[float, float] | None = None   # what the wall clock gained on the kernel's over it (s)

    @property
    def sampled_s(self) -> float:
        """First sample in the state -> first sample without the socket."""
        return round(self.gone[1] - self.entry[1], 3)

    @property
    def bounds_s(self) -> tuple[float, float] | None:
        """The shortest and the longest the true lifetime can have been, in the kernel's time."""
        if self.entry[0] is None:
            return None
        least, most = self.gain or (0.0, 0.0)
        return (round(self.gone[0] - self.entry[1] - most, 3), round(self.gone[1] - self.entry[0] - least, 3))

    @classmethod
    def of(cls, conn: Conn, state: str, moved_at: float | None) -> Lifetime | None:
        """*conn*'s client end in *state*, which the segment captured at *moved_at* moved it to."""
        samples = conn.samples("client")
        in_state = [s for s in samples if s.state == state]
        if not in_state:
            return None
        first, last = in_state[0], in_state[-1]
        # its going: the next change after its last sample - not an earlier one (a lookup that
        # missed it mid-change, lab.observe), nor a later connection's on the same 4-tuple
        nxt = next((e for e in conn.states("client") if e.t >= last.asked), None)
        if nxt is None or nxt.state != "GONE":
            return None
        gone = nxt.t
        lows = [s.asked for s in samples if s.asked < first.asked and s.state != state][-1:]
        lows += [moved_at] if moved_at is not None else []
        return cls((max(lows) if lows else None, first.answered), (last.asked, gone),
                   first.expires_ms, first.timer, len(in_state),
                   _gain(conn, [s for s in in_state if s.key == first.key], first.answered, gone))


def _gain(conn: Conn, samples: list, since: float, until: float) -> tuple[float, float] | None:
    """What the wall clock gained on the kernel's from *since* to *until*, as (least, most) s, or
    None when nothing beyond a tick (the lifetime is then the wall clock's, as on a machine whose
    clocks keep together). From the sampler's record of the two clocks (to 1 ms each end); for a
    run recorded without it, from the socket's timer samples (a tick each way: expires is read in
    whole ticks), and only up to 1 % of the span - a timer that slid further is the kernel's."""
    tick = 1 / (conn.ev.hz or 100)
    offsets = conn.ev.sampler.get("clock_offsets")
    if offsets is not None:                   # kept: the clocks' own record decides (none read: no gain)
        gain = wall_gain(offsets, since, until)
        return None if gain is None or abs(gain) < tick else (round(gain - 0.002, 4), round(gain + 0.002, 4))
    read = timer_gain(samples)
    if read is None or read[0] - tick <= 0 <= read[1] + tick or max(map(abs, read)) > 0.01 * (until - since):
        return None
    return round(read[0] - tick, 4), round(read[1] + tick, 4)


def judge(ev: Evidence, m: Lifetime | None, want_s: float, late_s: float, what: str) -> tuple[bool | None, str]:
    """A lifetime against [want - 1 tick, want + late]: True when its bounds lie wholly inside,
    False when wholly outside, None (with what is missing) when sampling cannot tell: no samples,
    nothing bounding the entry, bounds wider than MAX_SAMPLING_ERROR_S, or bounds straddling an
    edge of the tolerance. The sampler's gaps there are named."""
    if m is None:
        return None, f"sock_diag never saw {what} begin and end" + _gaps(ev, None)
    if m.bounds_s is None:
        return None, (f"nothing bounds when {what} began (no earlier sample, and the segment that moved it "
                      "there is not in client.pcap" + (f": {ev.capture_hole('client')}" if ev.capture_hole("client")
                                                       else "") + ")")
    lo, hi = m.bounds_s
    floor, ceil = want_s - 1 / (ev.hz or 100), want_s + late_s
    if hi < floor or lo > ceil:
        return False, ""
    if hi - lo > MAX_SAMPLING_ERROR_S or lo < floor or hi > ceil:
        return None, (f"the samples put {what}'s lifetime within [{lo}, {hi}] s, "
                      + (f"wider than {MAX_SAMPLING_ERROR_S:g} s" if hi - lo > MAX_SAMPLING_ERROR_S else
                         f"which straddles the tolerance [{floor:.3f}, {ceil:.3f}] s") + _gaps(ev, m))
    return True, ""


def _gaps(ev: Evidence, m: Lifetime | None) -> str:
    """The sampler's longest gaps around a measurement's entry and exit (or anywhere)."""
    if m is None:
        worst = ev.sampler.get("max_gap_ms")
        return f" (the sampler's longest gap in the run: {worst} ms)" if ev.sampler.get("gaps") else ""
    at_entry = ev.sampler_gap_ms(m.entry[0] if m.entry[0] is not None else m.entry[1], m.entry[1])
    at_exit = ev.sampler_gap_ms(*m.gone)
    parts = [f"{gap} ms around its {where}" for gap, where in ((at_entry, "entry"), (at_exit, "end")) if gap]
    return f" (the sampler fell behind: {', '.join(parts)})" if parts else ""


def measured(m: Lifetime | None, what: str, how: str) -> str:
    if not m:
        return f"sock_diag never saw {what} begin and end"
    gained = "" if m.gain is None or abs(sum(m.gain) / 2) < 0.005 else (
        f"; the wall clock gained {round(sum(m.gain) / 2 * 1000)} ms on the kernel's meanwhile, taken off")
    return (f"sock_diag: first {what} sample -> first sample without it: {m.sampled_s} s "
            f"(true lifetime within {list(m.bounds_s or ['?', '?'])} s: {how}{gained})")
