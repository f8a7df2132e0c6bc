"""lossy-link with a gVisor host (``--stack client=gvisor`` or ``server=gvisor``): what sock_diag
would have said, read from the wire instead. Not a scenario (the leading underscore keeps it out of
the catalog): scenarios/_lossy_checks.py judges through it.

A gVisor client's TIME-WAIT: once the server is done, the link's loss is turned off and the router
asks each closed 4-tuple once (lab.twprobe.probe_each, the out-of-window ACK gVisor answers without
touching its timer): an ACK says TIME-WAIT holds it, a RST that nothing does. A gVisor server has
no state anyone can read; that it never holds TIME-WAIT is then not observed, and said so.

Everything else lossy-link judges - the losses, each close's answers and its end, what a lost final
ACK costs - comes from the two ends' captures, for either stack. gVisor's numbers that the checks
use are its own defaults, the same as Linux's here: TIME-WAIT 60 s (DefaultTCPTimeWaitTimeout,
pkg/tcpip/transport/tcp/protocol.go), an orphan's FIN-WAIT-2 60 s (DefaultTCPLingerTimeout), the
retransmission timeout at least 200 ms (MinRTO, pkg/tcpip/transport/tcp/snd.go) on Go timers
with no tick of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import wire
from lab.verdict import Check

from ._lost_ack_wire import TIME_WAIT_S

if TYPE_CHECKING:
    from ._lossy_closes import Seen

__all__ = ["CITE_GVISOR_CLIENT", "CITE_GVISOR_RTO", "closer_holds_time_wait_probed", "server_seen",
           "rto_floor", "cite_for"]

CITE_GVISOR_CLIENT = ("gVisor pkg/tcpip/transport/tcp/rcv.go handleTimeWaitSegment(): in TIME-WAIT a FIN is "
                      "ACKed and the timer restarted, a RST dropped, an out-of-window ACK answered with an ACK "
                      "(reference R-TW-PROBE)")
CITE_GVISOR_RTO = ("gVisor pkg/tcpip/transport/tcp/snd.go: MinRTO = 200 ms, the retransmission timer a Go timer "
                   "(no tick)")
GVISOR_MIN_RTO_MS = 200.0
CITE_CLOSER = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first lingers in TIME-WAIT"


def server_seen(s: Seen) -> bool:
    """sock_diag sees the server's sockets (it runs Linux)."""
    return wire.stack_of(s.ev, "server") != "gvisor"


def rto_floor(s: Seen, linux_ms: float, linux_tick_ms: float) -> tuple[float, float, str]:
    """The server's stack's (least RTO in ms, its timer's tick in ms, whose rule)."""
    if server_seen(s):
        return linux_ms, linux_tick_ms, "TCP_RTO_MIN"
    return GVISOR_MIN_RTO_MS, 0.0, "gVisor's MinRTO"


def cite_for(s: Seen, host: str, cite: str, gvisor_cite: str) -> str:
    """*cite*, and *gvisor_cite* beside it when *host* runs gVisor."""
    return f"{cite}; {gvisor_cite}" if wire.stack_of(s.ev, host) == "gvisor" else cite


def closer_holds_time_wait_probed(s: Seen) -> Check:
    """3, a gVisor client: each closed 4-tuple asked once from the router after the server was
    done. Held (ACK) on every one, but where TIME-WAIT's 60 s since the client's last ACK had
    already run out (a RST is then the rule); gVisor drops a RST in TIME-WAIT, so a server's RST
    cannot excuse a 4-tuple that is gone. No answer, or no probe: not judged."""
    probes = s.ev.facts.get("client_probes") or {}
    answers = probes.get("answers") or {}
    life = TIME_WAIT_S["gvisor"]
    held, ran_out, gone, unknown = [], [], [], []
    reset = [c.port for c in s.conns if c.reset_early]      # no TIME-WAIT to ask: every-close-completes'
    for c in s.conns:
        if c.port in reset:
            continue
        a = answers.get(str(c.port)) or {}
        said = a.get("answer")
        if said == "ack":
            held.append(c.port)
        elif said in ("rst", "syn-ack"):
            late = c.last_ack_t is not None and a["t"] - c.last_ack_t >= life
            (ran_out if late else gone).append(c.port)
        else:
            unknown.append(c.port)
    in_window = sum(c.rst_in_window_at is not None for c in s.conns)
    srv = server_seen(s)
    srv_tw = s.ev.ever_in("server", "TIME_WAIT") if srv else False
    n = len(s.conns) - len(reset)
    ok = False if gone or srv_tw else (None if unknown or not n else True)
    observed = (f"router prober ({probes.get('probe', 'ack')} probe, once per 4-tuple, loss off): the client "
                f"(gvisor) held TIME-WAIT on {len(held)} of {n}, had let go of {len(gone)}"
                + (f" (ports {gone[:8]})" if gone else "")
                + (f", ran out {life:g} s after its last ACK on {len(ran_out)}" if ran_out else "")
                + (f", no answer on {len(unknown)}" if unknown else "")
                + (f"; not asked: {len(reset)} the client reset before the server's FIN reached it (ports "
                   f"{reset[:8]})" if reset else "")
                + "; server " + (("on some (sock_diag)" if srv_tw else "on none (sock_diag)") if srv else
                                 "not observed (gVisor has no sock_diag)")
                + f"; server RSTs in window at a client TIME-WAIT: {in_window}")
    return Check.judged(
        "closer-holds-time-wait", f"{CITE_CLOSER}; {CITE_GVISOR_CLIENT}",
        f"the client (it closed first) holds TIME-WAIT on all {n} connections - it answers the router's probe "
        "of each with an ACK, a RST from the server notwithstanding (gVisor drops it) - until 60 s after its "
        "last ACK; " + ("the server on none" if srv else "the server's side is not observed"),
        observed, ok,
        {"client_time_wait": len(held), "let_go": gone, "ran_out": ran_out, "no_answer": unknown, "reset": reset,
         "server_rsts": len(s.ev.segments("server", src="server", flag="RST")),
         "server_time_wait": srv_tw if srv else None, "probe": probes.get("probe"),
         "rst_in_window": in_window},
        missing=f"{observed}; a 4-tuple that gave no answer cannot be judged")
