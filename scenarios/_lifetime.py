"""How long a socket stayed in a state, bounded by the client's sock_diag samples and the capture
of the segment that moved it there, and judged against an expected length with the timer wheel's
slack (time-wait-duration: A's TIME-WAIT and B's orphaned FIN-WAIT-2). The lifetime is given in the
kernel's time: what the wall clock gained on the kernel's over it, read from the socket's own
timer samples (lab.clockcheck.wall_gain), is taken off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.clockcheck import wall_gain

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
        gone = conn.gone_at("client", after=last.asked)       # not a miss before it (lab.observe)
        if gone is None:
            return None
        lows = [s.asked for s in samples if s.asked < first.asked and s.state != state][-1:]
        lows += [moved_at] if moved_at is not None else []
        return cls((max(lows) if lows else None, first.answered), (last.asked, gone),
                   first.expires_ms, first.timer, len(in_state),
                   _gain(conn, [s for s in in_state if s.key == first.key]))


def _gain(conn: Conn, samples: list) -> tuple[float, float] | None:
    """What the wall clock gained on the kernel's over *samples*, widened by a tick each way (the
    kernel gives expires in whole ticks); None when that cannot be told from none at all - the
    lifetime is then the wall clock's, as on a machine whose clocks keep together."""
    gain = wall_gain(samples)
    tick = 1 / (conn.ev.hz or 100)
    if gain is None or gain[0] - tick <= 0 <= gain[1] + tick:
        return None
    return round(gain[0] - tick, 4), round(gain[1] + tick, 4)


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
        f"; the wall clock gained {round(sum(m.gain) / 2 * 1000)} ms on the kernel's meanwhile (its {m.timer} timer "
        "came due that much later with no restart), taken off")
    return (f"sock_diag: first {what} sample -> first sample without it: {m.sampled_s} s "
            f"(true lifetime within {list(m.bounds_s or ['?', '?'])} s: {how}{gained})")
