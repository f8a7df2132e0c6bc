"""How many RTO retransmissions an orphaned socket sends before it gives up: the prediction
retransmitted-fin judges its count by (not a scenario: the leading underscore keeps it out of the
catalog).

The kernel (net/ipv4/tcp_timer.c, Linux v6.18; reference R-ORPHAN-RETRIES, R-TIMER-WHEEL): at each
retransmission timeout of an orphan (SOCK_DEAD), tcp_write_timeout() takes retry_until = tcp_orphan_retries() (the
sysctl; 0 means 8 while icsk_rto < TCP_RTO_MAX) and gives up (tcp_write_err()) when retransmits_timed_out() holds:

    tcp_time_stamp_ts(tp) - tp->retrans_stamp >= tcp_model_timeout(b) = ((2 << b) - 1) x TCP_RTO_MIN

in milliseconds (b <= 9; tcp_time_stamp_ts() is tcp_mstamp / 1000 without usec timestamps).
tp->retrans_stamp is the first RTO retransmission T1 (tcp_retransmit_skb() in tcp_output.c: "Save
stamp of the first (attempted) retransmit"; the tail-loss probe goes through __tcp_retransmit_skb()
and leaves it at 0), and tcp_retransmit_timer() never asks before T1 (icsk_retransmits is 0). So the
limit is a time budget measured from T1, and the count is decided by when the timeouts fire:

- the timer after the k-th RTO retransmission is armed for rto0 x 2^k jiffies (icsk_rto <<= 1 before
  inet_csk_reset_xmit_timer()), rto0 = icsk_rto at T1 (>= TCP_RTO_MIN, in whole jiffies);
- it runs at lab.timerwheel.fires_at(): rounded up to its wheel level's granule, strictly after the
  due jiffy - or WAKEUP_TICKS jiffies later: on the 6.18 kernel measured here (2 CPUs, NOHZ) about
  one timer in three ran one jiffy after its bucket's (a level-0 RTO of 51 jiffies took 52 or 53,
  a level-1 timer up to 9 jiffies past due), never two. It is armed from the previous timer's
  callback, which runs at (or a jiffy after) a granule boundary, so only the first timer of each
  level has a free phase; the rest follow from it. Every handler runs a little after the start of
  its jiffy (softirq latency, allowed LATENCY_MS either way), and T1 is itself sent from a timer,
  so the elapsed time at a timeout is a whole number of ticks +- that latency;
- the decision compares whole milliseconds: with E the true elapsed time, it gives up for sure when
  E >= budget, retransmits for sure when E < budget - 1 ms, and may go either way in between.

predict() follows this chain for every phase of T1's jiffy within the coarsest granule involved and
every late wakeup, for each candidate rto0 (rto0_candidates(): from sock_diag and the wire), and
returns the set of counts it allows with the times of the timeouts that decide them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.kernel import ORPHAN_DEFAULT_RETRIES, TCP_RTO_MAX_MS, TCP_RTO_MIN_MS
from lab.timerwheel import fires_at, level

__all__ = ["LATENCY_MS", "WAKEUP_TICKS", "model_timeout_ms", "effective_retries", "budget_of", "decide",
           "Prediction", "predict", "rto0_candidates", "COMMON_HZ"]

LATENCY_MS = 1.0                # how far a timer handler may run after the start of its jiffy
WAKEUP_TICKS = 1                # a timer's handler may run this many jiffies after its bucket's
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


def budget_of(sysctl_value: str | int | None) -> tuple[int, int, int]:
    """The sysctl tcp_orphan_retries as read back (unset: 0), the retry_until it means, and the time
    budget in ms from T1 that gives."""
    sysctl = int(sysctl_value or 0)
    b = effective_retries(sysctl)
    return sysctl, b, model_timeout_ms(b)


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


def _chain(r: int, hz: int, budget_ms: int, latency_ms: float, rto_max_ticks: int, period: int,
           counts: set, seen: dict) -> None:
    """Every chain of timeouts after T1, for every phase of T1's jiffy within *period*: the states
    after the k-th timeout are (its handler's jiffy mod period, ticks since T1), followed until
    each surely gives up. A handler runs in its bucket's jiffy or up to WAKEUP_TICKS later, and
    the wheel's clock reads its jiffy or the next when it re-arms."""
    tick_ms = 1000 / hz
    states = {(j1, 0) for j1 in range(period)}
    k = 1
    while states and k < 400:
        w = min(r << k, rto_max_ticks)                 # armed after the k-th RTO retransmission
        k += 1                                          # the k-th timeout (T1's was the 1st)
        nxt = set()
        for j, el in states:
            for clk_ahead in (1, 0):
                bucket = fires_at(period + j + w, period + j + clk_ahead) - period
                for late in range(WAKEUP_TICKS + 1):
                    at = bucket + late
                    e = round((el + at - j) * tick_ms, 3)
                    lo, hi = seen.get(k, (e, e))
                    seen[k] = (min(lo, e), max(hi, e))
                    d = decide(e, budget_ms, latency_ms)
                    if d != RETRANSMIT:
                        counts.add(k - 1)
                    if d != GIVE_UP:
                        nxt.add((at % period, el + at - j))
        states = nxt


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
            _chain(r, h, budget_ms, latency_ms, rto_max_ticks, period, counts, seen)
    top = max(counts) + 1 if counts else 1
    return Prediction(budget_ms, tuple(rto0_ticks), tuple(sorted({r for c in rto0_ticks.values() for r in c})),
                      tuple(sorted(counts)), {k: v for k, v in seen.items() if k <= top})


def rto0_candidates(hz: int, doubled_ms: float | None = None, armed_ms: float | None = None,
                    gap_ms: float | None = None, aligned: bool = True,
                    latency_ms: float = LATENCY_MS) -> tuple[int, ...]:
    """The first RTO (whole jiffies at *hz*) consistent with what was measured, strongest first:

    - *doubled_ms*, sock_diag's reading of the timer armed at T1: tcp_retransmit_timer() arms it for
      icsk_rto just doubled, 2 x rto0, nothing taken off (a reading is within a tick either way);
    - *armed_ms*, its reading of the timer armed before T1 (after the tail-loss probe:
      tcp_rearm_rto() arms rto0 less the time since the probe left, rounded up to a jiffy);
    - *gap_ms*, the wire time from the segment that armed it to T1. That level-0 timer runs one
      jiffy after its due jiffy, or WAKEUP_TICKS more, so from a segment a timer sent (*aligned*:
      the probe, at the start of a jiffy) the gap is rto0 + 1..1 + WAKEUP_TICKS ticks; from one a
      process sent (the close()), anywhere from rto0 ticks on.

    Each measure narrows the candidates unless it would leave none (then it is outvoted)."""
    tick = 1000 / hz
    top = int(max(x for x in (doubled_ms and doubled_ms / 2, armed_ms, gap_ms, 1) if x) / tick) + 3
    tests = []
    if doubled_ms is not None:
        tests.append(lambda r: abs(doubled_ms - 2 * r * tick) <= tick + latency_ms)
    if armed_ms is not None:
        tests.append(lambda r: abs(armed_ms - r * tick) <= tick + latency_ms)
    if gap_ms is not None:
        low = 1 if aligned else 0
        tests.append(lambda r: (r + low) * tick - latency_ms <= gap_ms <= (r + 1 + WAKEUP_TICKS) * tick + latency_ms)
    out = list(range(1, top))
    for test in tests:
        kept = [r for r in out if test(r)]
        out = kept or out
    return tuple(out) if tests else ()
