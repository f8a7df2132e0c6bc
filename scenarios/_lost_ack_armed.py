"""lost-ack's reading of how long the client's TIME-WAIT was armed (sock_diag), judged on
lost_ack.Seen. Not a scenario (the leading underscore keeps it out of the catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.kernel import TCP_TIMEWAIT_LEN_MS
from lab.verdict import Check

if TYPE_CHECKING:
    from .lost_ack import Seen

__all__ = ["CITE_TW_LEN", "time_wait_armed_for_60s"]

CITE_TW_LEN = ("reference R-TW-LEN: Linux TIME-WAIT is TCP_TIMEWAIT_LEN = 60 s (BSD 2MSL = 2 x 30 s; RFC "
               "1122's 2 x 2 min is not followed)")


def time_wait_armed_for_60s(s: Seen) -> Check:
    """The first sock_diag sample of the client's TIME-WAIT reads its timer: 60 s less the time
    since it was armed. A reading more than 1 s short is a failure - unless the sample came that
    late because the sampler fell behind between the FIN and it: then the reading shows the time
    that passed, not how long the timer was armed. A sample asked before the client's ACK of the
    FIN left may read the FIN_WAIT2 timer still: tcp_timewait_state_process() sets the substate
    TIME_WAIT before inet_twsk_reschedule() re-arms, and sends the ACK after (seen under TCG, where
    a sample fell between the two); the first sample asked after that ACK reads the arming."""
    ev = s.ev
    entered = s.fins_cli[0].t if s.fins_cli else s.fins_srv[0].t if s.fins_srv else None
    first_ev = s.conn.first_in("client", "TIME_WAIT") or next(
        (e for e in ev.states("client") if e.state == "TIME_WAIT"), None)
    first = first_ev.socket.expires_ms if first_ev else None
    asked = (first_ev.data.get("asked") or first_ev.t) if first_ev else None
    acked = s.answers[0].t if s.answers and s.answers[0] is not None else None
    before_ack = None
    if asked is not None and acked is not None and asked < acked:
        later = next((x for x in s.conn.samples("client", state="TIME_WAIT") if x.asked >= acked), None)
        if later is not None:
            before_ack, first, asked, entered = first, later.expires_ms, later.asked, acked
    ok = first is not None and TCP_TIMEWAIT_LEN_MS - 1000 <= first <= TCP_TIMEWAIT_LEN_MS
    late_ms = gap = None
    if asked is not None and entered is not None:
        late_ms = round((asked - entered) * 1000, 1)
        gap = ev.sampler_gap_ms(entered, asked)
    since = "the client's ACK of the server's first FIN left" if before_ack is not None else \
        "the server's first FIN reached the client"
    observed = (f"sock_diag: first TIME_WAIT sample had {first} ms left"
                + (f", {late_ms} ms after {since}" if late_ms is not None else "")
                + (f" (one asked before that ACK read {before_ack} ms: the FIN_WAIT2 timer, not yet re-armed)"
                   if before_ack is not None else ""))
    explained = (first is not None and first < TCP_TIMEWAIT_LEN_MS - 1000 and gap is not None
                 and late_ms is not None and first + late_ms >= TCP_TIMEWAIT_LEN_MS - 1000)
    return Check.judged(
        "time-wait-armed-for-60s", CITE_TW_LEN,
        "TIME_WAIT timer armed at 60 s (BSD 2MSL; RFC 1122 asks 240 s)",
        observed, None if explained else ok,
        {"first_expires_ms": first, "first_sample_after_fin_ms": late_ms, "sampler_gap_ms": gap,
         "read_before_rearm_ms": before_ack},
        missing=f"{observed}: the sampler fell behind there (its longest gap: {gap} ms), so the "
                "reading shows the time that passed, not how long the timer was armed")
