"""How many RTO retransmissions an orphaned socket sends before it gives up: the prediction
retransmitted-fin judges its count by (not a scenario: the leading underscore keeps it out of the
catalog).

The kernel (net/ipv4/tcp_timer.c, Linux 6.x; measured on 6.18): at each retransmission timeout of an orphan
(SOCK_DEAD), tcp_write_timeout() takes retry_until = tcp_orphan_retries() (the sysctl; 0 means 8
while icsk_rto < TCP_RTO_MAX) and gives up (tcp_write_err()) when retransmits_timed_out() holds:

    tcp_time_stamp_ts(tp) - tp->retrans_stamp >= tcp_model_timeout(b) = ((2 << b) - 1) x TCP_RTO_MIN

in milliseconds (b <= 9; tcp_time_stamp_ts() is tcp_mstamp / 1000 without usec timestamps).
tp->retrans_stamp is the first RTO retransmission T1 (tcp_retransmit_skb() in tcp_output.c: "Save
stamp of the first (attempted) retransmit"; the tail-loss probe goes through __tcp_retransmit_skb()
and leaves it at 0), and tcp_retransmit_timer() never asks before T1 (icsk_retransmits is 0). So the
limit is a time budget measured from T1, and the count is decided by when the timeouts fire:

- the timer after the k-th RTO retransmission is armed for rto0 x 2^k jiffies (icsk_rto <<= 1 before
  inet_csk_reset_xmit_timer()), rto0 = icsk_rto at T1 (>= TCP_RTO_MIN, in whole jiffies);
- it runs at lab.timerwheel.fires_at(): rounded up to its wheel level's granule, strictly after the
  due jiffy. It is armed from the previous timer's callback, which runs at a granule boundary, so
  only the first timer of each level has a free phase; the rest follow from it. Every handler
  runs a little after the start of its jiffy (softirq latency, allowed LATENCY_MS either way), and
  T1 is itself sent from a timer, so the elapsed time at a timeout is a whole number of ticks
  +- that latency;
- the decision compares whole milliseconds: with E the true elapsed time, it gives up for sure when
  E >= budget, retransmits for sure when E < budget - 1 ms, and may go either way in between.

predict() walks this chain for every phase of T1's jiffy within the coarsest granule involved, for
each candidate rto0 (rto0_candidates(): from the wire and sock_diag), and returns the set of counts
it allows with the times of the timeouts that decide them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.timerwheel import fires_at, level

__all__ = ["TCP_RTO_MIN_MS", "TCP_RTO_MAX_MS", "ORPHAN_DEFAULT_RETRIES", "LATENCY_MS", "model_timeout_ms",
           "effective_retries", "decide", "Prediction", "predict", "rto0_candidates", "COMMON_HZ"]

TCP_RTO_MIN_MS = 200            # include/net/tcp.h: TCP_RTO_MIN = HZ / 5
TCP_RTO_MAX_MS = 120_000        # TCP_RTO_MAX = 120 * HZ
ORPHAN_DEFAULT_RETRIES = 8      # tcp_orphan_retries(): 0 means 8 while the socket is "alive"
LATENCY_MS = 1.0                # how far a timer handler may run after the start of its jiffy
COMMON_HZ = (100, 250, 300, 1000)   # CONFIG_HZ choices, when the running kernel's is unknown

RETRANSMIT, GIVE_UP, EITHER = "retransmit", "give up", "either"


def model_timeout_ms(boundary: int, rto_base_ms: int = TCP_RTO_MIN_MS,
                     rto_max_ms: int = TCP_RTO_MAX_MS) -> int:
    """tcp_model_timeout(): the time budget of *boundary* retransmissions backed off from rto_base."""
    thresh = (rto_max_ms // rto_base_ms).bit_length() - 1          # ilog2(TCP_RTO_MAX / rto_base) = 9
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base_ms
    return ((2 << thresh) - 1) * rto_base_ms + (boundary - thresh) * rto_max_ms


def effective_retries(sysctl_value: int) -> int:
    """tcp_orphan_retries(): the sysctl, or 8 when it is 0 and the socket is alive (RTO < 120 s)."""
    return sysctl_value if sysctl_value > 0 else ORPHAN_DEFAULT_RETRIES


def decide(elapsed_ms: float, budget_ms: float, latency_ms: float = LATENCY_MS) -> str:
    """retransmits_timed_out() at a timeout *elapsed_ms* after T1 (each of the two handlers up to
    *latency_ms* after its tick): whole milliseconds are compared, so only an elapsed time clear of
    [budget - 1 ms, budget) decides for sure."""
    if elapsed_ms - latency_ms >= budget_ms:
        return GIVE_UP
    if elapsed_ms + latency_ms < budget_ms - 1:
        return RETRANSMIT
    return EITHER


@dataclass(frozen=True)
class Prediction:
    """The counts of RTO retransmissions the model allows, and when the timeouts come."""
    budget_ms: int
    hz: tuple[int, ...]
    rto0_ticks: tuple[int, ...]
    counts: tuple[int, ...]
    timeout_ms: dict[int, tuple[float, float]] = field(default_factory=dict)   # k -> (min, max) after T1

    def _at(self, k: int) -> str:
        lo, hi = self.timeout_ms[k]
        return f"T1 + {lo:g}" + (f"..{hi:g}" if hi != lo else "") + " ms"

    def text(self) -> str:
        """The prediction in words, with the timeouts that decide it."""
        if not self.counts:
            return "prediction: none (no first RTO to start from)"
        a, b, B = self.counts[0], self.counts[-1], self.budget_ms
        if a == b:
            before = (f"the {_nth(a)} RTO retransmission at {self._at(a)} "
                      f"({B - self.timeout_ms[a][1]:g} ms inside the {B} ms budget)") if a > 1 else \
                f"T1 alone inside the {B} ms budget"
            return (f"prediction: {a} - {before}, the timeout after it at {self._at(a + 1)} "
                    f"(at least {self.timeout_ms[a + 1][0] - B:g} ms past the budget: it gives up)")
        edge = list(range(a + 1, b + 1))
        where = "; ".join(f"the {_nth(k)} timeout falls at {self._at(k)}" for k in edge)
        inside = any(lo <= B <= hi for lo, hi in (self.timeout_ms[k] for k in edge))
        near = min(abs(x - B) for k in edge for x in self.timeout_ms[k])
        return (f"prediction: {' or '.join(str(n) for n in self.counts)} - {where}, "
                + (f"the {B} ms budget inside that range" if inside else f"within {near:g} ms of the {B} ms budget")
                + ": before the budget the kernel retransmits, from it on it gives up, and which it is "
                "depends on the timer wheel's phase (either count is right)")

    def to_json(self) -> dict:
        return {"budget_ms": self.budget_ms, "hz": list(self.hz), "rto0_ticks": list(self.rto0_ticks),
                "counts": list(self.counts),
                "timeout_after_t1_ms": {str(k): list(v) for k, v in sorted(self.timeout_ms.items())}}


def _nth(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _walk(r: int, j1: int, clk_ahead: int, hz: int, budget_ms: int, latency_ms: float,
          rto_max_ticks: int, counts: set, seen: dict) -> None:
    """One chain from T1 at jiffy *j1*: the timeouts after it until one surely gives up."""
    tick_ms = 1000 / hz
    j, k = j1, 1
    while k < 400:
        w = min(r << k, rto_max_ticks)                 # armed after the k-th RTO retransmission
        j = fires_at(j + w, j + clk_ahead)
        k += 1                                          # the k-th timeout (T1's was the 1st)
        e = round((j - j1) * tick_ms, 3)
        lo, hi = seen.get(k, (e, e))
        seen[k] = (min(lo, e), max(hi, e))
        d = decide(e, budget_ms, latency_ms)
        if d != RETRANSMIT:
            counts.add(k - 1)
        if d == GIVE_UP:
            return


def predict(rto0_ticks: dict[int, tuple[int, ...]], budget_ms: int, latency_ms: float = LATENCY_MS,
            rto_max_ms: int = TCP_RTO_MAX_MS) -> Prediction:
    """The counts of RTO retransmissions the kernel may send under *budget_ms*, for each HZ and
    candidate first RTO (jiffies at that HZ: {hz: (rto0, ...)}, one HZ when CONFIG_HZ is known) and
    every phase of T1 within the coarsest wheel granule a timer of the chain can land in."""
    counts: set[int] = set()
    seen: dict[int, tuple[float, float]] = {1: (0.0, 0.0)}
    for h, candidates in rto0_ticks.items():
        rto_max_ticks = rto_max_ms * h // 1000
        period = 8 ** level(rto_max_ticks)             # every phase any level of the chain can see
        for r in candidates:
            for clk_ahead in (1, 0):                   # base->clk one jiffy ahead in a callback, or not
                for j1 in range(period):
                    _walk(r, period + j1, clk_ahead, h, budget_ms, latency_ms, rto_max_ticks, counts, seen)
    top = max(counts) + 1 if counts else 1
    return Prediction(budget_ms, tuple(rto0_ticks), tuple(sorted({r for c in rto0_ticks.values() for r in c})),
                      tuple(sorted(counts)), {k: v for k, v in seen.items() if k <= top})


def rto0_candidates(gap_ms: float, aligned: bool, hz: int, armed_ms: float | None = None,
                    latency_ms: float = LATENCY_MS) -> tuple[int, ...]:
    """The first RTO (whole jiffies) consistent with what was measured: *gap_ms*, the wire time from
    the segment that armed the timer to T1, and sock_diag's reading of the armed timer (*armed_ms*,
    within a tick either way). The level-0 timer runs one jiffy after its due jiffy, so a gap from a
    segment a timer sent (*aligned*: the tail-loss probe, at the start of its jiffy) is rto0 + 1 tick
    (+- the handlers' latency), or up to a tick more if a handler ran late; from a segment sent by a
    process (the close()), anywhere in (rto0, rto0 + 1 tick] plus that latency."""
    tick = 1000 / hz
    top = int(gap_ms / tick) + 2
    wire = [r for r in range(1, top) if abs(gap_ms - (r + 1) * tick) <= latency_ms] if aligned else []
    if not wire:        # sent by a process (any phase), or a handler that ran up to a tick late
        wire = [r for r in range(1, top) if r * tick - latency_ms < gap_ms <= (r + 1) * tick + latency_ms
                or (aligned and (r + 1) * tick < gap_ms <= (r + 2) * tick)]
    if armed_ms is not None:
        both = [r for r in wire if abs(armed_ms - r * tick) <= tick + latency_ms]
        wire = both or wire
    return tuple(wire)
