"""tw-reopen with a gVisor server (``--stack server=gvisor``): the same three cases against gVisor's
TIME-WAIT, which sock_diag cannot see: the server's TIME-WAIT is waited for on the wire and
confirmed by the router's probe (lab.twprobe) before each reconnect, and after the old duplicate.
Not a scenario (the leading underscore keeps it out of the catalog): tw_reopen runs and judges
through it.

gVisor's rule (handleTimeWaitSegment(), pkg/tcpip/transport/tcp/rcv.go, runsc 0.0~20221219): a bare
SYN whose sequence number lies above rcv_nxt is handed to the listener (RFC 1122 §4.2.2.13 MAY-2)
and the TIME-WAIT endpoint is done; every other segment without ACK - a SYN at or below rcv_nxt -
is dropped without an answer, whatever its timestamp (no RFC 6191); a RST is dropped too (RFC 1337
fix 1). So seq-behind's SYN is refused silently and the client's SYNs go unanswered until the
TIME-WAIT ends (60 s): the reconnect gives up after REFUSED_WAIT_S instead. Condition (1) (the
new ISN above the old snd_nxt) is left to gVisor's ISN generator, and condition (2) is not
implemented: both are judged from the packets (and, for (2), the router's probe after the old
duplicate), as on Linux.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.verdict import Check

if TYPE_CHECKING:
    from lab.core import Lab

    from .tw_reopen import Case, Seen

__all__ = ["on_gvisor", "wait_for_time_wait", "probe", "reconnect_timeout", "server_holds_time_wait",
           "refused_silently", "time_wait_restored"]

REFUSED_WAIT_S = 3.5         # a refused SYN and the client's retransmissions at 1 s and 3 s: unanswered
CITE_DROP = ("gVisor handleTimeWaitSegment() (pkg/tcpip/transport/tcp/rcv.go): a SYN at or below rcv_nxt, like "
             "any segment without ACK, is dropped in TIME-WAIT; a RST too (RFC 1337 fix 1); RFC 1122 §4.2.2.13 "
             "makes accepting it a MAY, not a MUST")
CITE_SETUP = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the server closed first and lingers in TIME-WAIT; "
              "gVisor's TIME-WAIT answers the router's ACK probe with an ACK (reference R-TW-PROBE)")


def on_gvisor(lab_or_ev) -> bool:
    return wire.stack_of(lab_or_ev, "server") == "gvisor"


def reconnect_timeout(lab: Lab) -> float:
    """How long a reconnect waits: gVisor never answers a refused SYN, Linux's TIME-WAIT does."""
    return REFUSED_WAIT_S if on_gvisor(lab) else 75


def wait_for_time_wait(lab: Lab, name: str, lport: int, port: int) -> None:
    """The client's FIN ACKed by the server, which closed first: gVisor's TIME-WAIT begins (who
    closed first is judged from server.pcap, server-holds-time-wait)."""
    lab.wait_for(f"{name}: the server's ACK of the client's FIN (on the wire: gVisor in TIME-WAIT)",
                 lambda: wire.fin_acked(lab, "server", lport, port), timeout_s=5)


def probe(lab: Lab, lport: int, port: int) -> dict:
    """One probe of the server's end of the 4-tuple from the router: "ack" while TIME-WAIT holds it."""
    return twprobe.probe_once(lab, "server", "client", port, lport)


def server_holds_time_wait(c: Case) -> Check:
    """The server closed first (server.pcap) and answered the router's probe as TIME-WAIT does, just
    before the client reconnected."""
    inc, f, lport = c.inc, c.facts, c.facts["client_port"]
    answer = (f.get("server_probe_before") or {}).get("answer")
    ok = None if inc is None or answer in (None, "none") else (inc.server_closed_first and answer == "ack")
    observed = (f"server.pcap: server FIN {'first' if inc and inc.server_closed_first else 'NOT first'}; the "
                f"router's probe of the server's end (gVisor, no sock_diag): {answer or 'not sent'}")
    return Check.judged(
        f"{c.name}-server-holds-time-wait", CITE_SETUP,
        f"the server's FIN goes first; just before the client reconnects from :{lport} the server answers the "
        "probe as TIME-WAIT does (an ACK)", observed, ok,
        {"client_port": lport, "probe_answer": answer, "old_bytes": f.get("bytes"), "transfer_s": f.get("transfer_s")},
        missing=f"{observed}" + (f"; the captures lack the old connection on :{lport}" if inc is None else ""))


def refused_silently(c: Case) -> Check:
    """seq-behind on gVisor: the refused SYN and each of the client's retransmissions while TIME-WAIT
    holds go unanswered (no ACK for the client to reset, and a RST would be dropped anyway), so the
    reconnect gives up within the run's wait."""
    syns = c.inc.answers if c.inc is not None else []
    answered = [(syn.seq, ans.flags) for syn, ans, _ in syns if ans is not None]
    observed = (f"server.pcap: {len(syns)} SYNs from :{c.facts['client_port']} over "
                f"{round(syns[-1][0].t - syns[0][0].t, 3) if syns else 0} s, {len(answered)} answered {answered}; "
                f"connect {'ok' if c.facts.get('reconnect_ok') else c.facts.get('reconnect_error')}")
    ok = len(syns) >= 2 and not answered and not c.facts.get("reconnect_ok")
    return Check.judged(
        f"{c.name}-refused-syn-recovery", CITE_DROP,
        f"gVisor drops the refused SYN and every retransmission of it while TIME-WAIT holds (it lasts 60 s): no "
        f"answer, the connect gives up after {REFUSED_WAIT_S:g} s", observed,
        None if not ok and not answered and c.hole else ok,
        {"syns": len(syns), "answered": len(answered), "reconnect_ok": c.facts.get("reconnect_ok")},
        missing=f"{observed}, but {c.hole}")


def time_wait_restored(s: Seen) -> bool | None:
    """After the old duplicate's SYN-ACK and the client's RST: did the server's TIME-WAIT come back
    (the probe answered ACK)? None when the probe got no answer."""
    answer = (s.cases["old-duplicate"].facts.get("server_probe_after") or {}).get("answer")
    return None if answer in (None, "none") else answer == "ack"
