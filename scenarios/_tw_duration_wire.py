"""time-wait-duration with a gVisor client (``--stack client=gvisor``): the same two connections, A
ending in TIME-WAIT and B orphaned in FIN-WAIT-2, followed on the wire (gVisor has no sock_diag) and
both lifetimes measured by the router's prober at once (lab.lifetimes). Not a scenario (the leading
underscore keeps it out of the catalog): time_wait_duration runs and judges through it.

What gVisor chooses (pkg/tcpip/transport/tcp/protocol.go, Debian 12's runsc 0.0~20221219):
TIME-WAIT lasts DefaultTCPTimeWaitTimeout = 60 s (BSD's 2 x 30 s, like Linux); an orphaned
FIN-WAIT-2 lasts DefaultTCPLingerTimeout = 60 s (the stack's TCPLingerTimeoutOption, Linux's
tcp_fin_timeout default; the sysctl does not reach it, so the scenario's 5 s is not set). Checks
of Linux's own machinery (tcp_fin_timeout, nstat's TW counters, the timer wheel) say not applicable.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lab import wire
from lab.lifetimes import Watched, measure_together
from lab.verdict import Check

from ._lost_ack_wire import BSD_2MSL_S, CLOCKS_S, RFC1122_2MSL_S, TIME_WAIT_S

if TYPE_CHECKING:
    from lab.core import Lab

    from .time_wait_duration import Seen

__all__ = ["run", "LINGER_S", "time_wait_on_the_wire", "orphan_on_the_wire", "not_applicable"]

LINGER_S = {"gvisor": 60.0}     # pkg/tcpip/transport/tcp/protocol.go DefaultTCPLingerTimeout
PROBE_EVERY_S = 0.6             # the resolution of both lengths; gVisor answers an out-of-window ACK in
                                # FIN-WAIT-2 at most once per 500 ms (its TCPInvalidRateLimitOption): at
                                # 0.5 s, one probe in three went unanswered
CITE_TW = ("RFC 9293 §3.10.7.4 / RFC 1122 §4.2.2.13: TIME-WAIT lasts 2 MSL, MSL the implementation's choice; "
           "gVisor: DefaultTCPTimeWaitTimeout (pkg/tcpip/transport/tcp/protocol.go); reference R-TW-PROBE")
CITE_FW2 = ("RFC 9293 §3.6 has no FIN-WAIT-2 timeout (the peer may never close); like Linux's tcp_fin_timeout, "
            "gVisor frees an orphan after DefaultTCPLingerTimeout (pkg/tcpip/transport/tcp/protocol.go, "
            "TCPLingerTimeoutOption); measured by the router's ACK probe (lab.lifetimes)")


def _ports(res) -> tuple[str, int, str, int]:
    (lip, lport), (rip, rport) = res.result["local"], res.result["remote"]
    return (lip, lport, rip, rport)


def run(lab: Lab, port: int) -> dict:
    """The scenario's steps, waited for on the wire; both lifetimes probed to their ends; then
    the server's late FIN for B."""
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", port)
    key_a = _ports(client.connect("a", lab.host("server").address, port))
    server.accept("L", as_="sa")
    key_b = _ports(client.connect("b", lab.host("server").address, port))
    server.accept("L", as_="sb")
    client.close("a")
    client.close("b")
    lab.wait_for("the server's ACKs of both FINs (on the wire)",
                 lambda: all(wire.fin_acked(lab, "server", k[1], port) for k in (key_a, key_b)), timeout_s=5)
    server.close("sa")                                           # <- FIN: A enters TIME-WAIT
    lab.wait_for("the client's ACK of the server's FIN for A (on the wire)",
                 lambda: wire.fin_acked(lab, "client", port, key_a[1]), timeout_s=5)
    stack = wire.stack_of(lab, "client")
    longest = max(TIME_WAIT_S[stack], LINGER_S[stack])
    probed = measure_together(lab, "client", "server", {"a": Watched(key_a[1], port),
                                                        "b": Watched(key_b[1], port, half=True)},
                              interval_s=PROBE_EVERY_S, timeout_s=2.5 * longest)
    ended = time.time()                                          # the capture is the connections' again
    b = probed.get("b", {})
    b_gone = min((x["t"] for x in b.get("answers", []) if x["answer"] in ("rst", "syn-ack")), default=None)
    server.close("sb")                                           # a late FIN: no state left for it
    lab.wait_for("the client's answer to the server's late FIN for B (on the wire)",
                 lambda: wire.fin_answered(wire.at_router(lab, "server"), port, key_b[1]), timeout_s=5)
    server.close("L")
    return {"key_a": list(key_a), "key_b": list(key_b), "fin_timeout_s": None,
            "a_probe": probed.get("a"), "b_probe": b, "b_gone_seen_at": b_gone, "probing_ended": ended}


def lifetime_on_the_wire(s: Seen, which: str) -> Check:
    """A's TIME-WAIT ("a") or B's orphaned FIN-WAIT-2 ("b"), as the router's probes bracket its end,
    against the stack's own constant; RFC 1122's and BSD's 2 MSL beside the TIME-WAIT."""
    p = s.ev.facts.get(f"{which}_probe") or {}
    stack = wire.stack_of(s.ev, "client")
    tw = which == "a"
    name, want = (("time-wait-lasts-60s", TIME_WAIT_S[stack]) if tw else
                  ("orphan-fin-wait2-length-on-the-wire", LINGER_S[stack]))
    what, since = ("TIME-WAIT", "its last ACK") if tw else ("the orphaned FIN-WAIT-2", "the ACK of its FIN")
    held, gone, every = p.get("held_until_s"), p.get("gone_by_s"), p.get("interval_s", PROBE_EVERY_S)
    expected = f"{what} ends {want:g} s after {since} ({stack}'s constant; the probes every {every} s bracket it)"
    observed = (f"router prober ({p.get('probe')} probe every {every} s): client ({stack}) held {what} until "
                f"+{held} s after {since}, gone by +{gone} s"
                + (f" (RFC 1122: {RFC1122_2MSL_S:g} s, BSD: {BSD_2MSL_S:g} s)" if tw else ""))
    values = {"stack": stack, "held_until_s": held, "gone_by_s": gone, "constant_s": want,
              "bounds_s": [held, gone], "sampled_s": gone, "answers": len(p.get("answers", []))}
    if p.get("error") or held is None or gone is None or gone - held > 2 * every + CLOCKS_S:
        return Check.inconclusive(name, CITE_TW if tw else CITE_FW2, expected,
                                  p.get("error") or f"{observed}: the probes did not bracket its end within "
                                  f"{2 * every:g} s", values)
    ok = gone >= want - CLOCKS_S and held <= want + every + CLOCKS_S
    return Check.judged(name, CITE_TW if tw else CITE_FW2, expected, observed, ok, values)


def time_wait_on_the_wire(s: Seen) -> Check:
    return lifetime_on_the_wire(s, "a")


def orphan_on_the_wire(s: Seen) -> Check:
    return lifetime_on_the_wire(s, "b")


def not_applicable(name: str, cite: str, expected: str, why: str) -> Check:
    return Check.not_applicable(name, cite, expected, f"the client runs gVisor: {why}")
