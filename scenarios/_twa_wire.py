"""tw-assassination with a gVisor client (``--stack client=gvisor``): RFC 1337 figure 1 against
gVisor's TIME-WAIT, judged from the wire. gVisor has no sock_diag and no counter Linux can read,
so the replay's arrival in TIME-WAIT and the RST's effect are read from the captures: the close
done (the client's ACK of the server's FIN) before the replay arrives, and after the RST the same
old segment replayed once more - a live TIME-WAIT answers it with an ACK of SND.NXT, RCV.NXT, a
killed one leaves a closed port that answers with a RST. Segments 5.2 and 5.3 are judged as for
Linux (tw_assassination.py). Not a scenario: the leading underscore keeps it out of the catalog.

What gVisor does with the RST is its own choice, read from its source (reference R-TW-PROBE):
rcv.go ``handleTimeWaitSegment()`` drops a RST in TIME-WAIT, which is RFC 1337's fix F1; Linux
makes the other choice unless tcp_rfc1337=1 (reference R-TW-RST).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import wire
from lab.verdict import Check

from ._twa_judge import CITE_PAWS, WATCH_S, in_window, is_ack, wire_judged, wire_said

if TYPE_CHECKING:
    from .tw_assassination import Seen

__all__ = ["old_duplicate_reaches_time_wait_wire", "paws_not_applicable", "time_wait_survives_rst_wire"]

CITE_GVISOR_TW = ("gVisor pkg/tcpip/transport/tcp/rcv.go handleTimeWaitSegment(): in TIME-WAIT a RST is dropped "
                  "(RFC 1337 §3 fix F1: 'Ignore RST segments in TIME-WAIT state'), an unacceptable segment with "
                  "ACK is answered by an ACK; RFC 9293 §3.10.7.4 (RST in TIME-WAIT: enter CLOSED) is the choice "
                  "Linux makes with tcp_rfc1337=0; reference R-TW-PROBE, R-TW-RST")
CITE_5_1 = ("RFC 1337 §1 figure 1 (5.1: any old segment unacceptable to TCP A in TIME-WAIT); gVisor has no sock_diag: "
            "TIME-WAIT is where the close left the client (its ACK of the server's FIN), from the capture")


def old_duplicate_reaches_time_wait_wire(s: Seen) -> Check:
    """5.1: the replay reaches the client after the client acknowledged the server's FIN (so its
    gVisor endpoint is in TIME-WAIT), the server holding no socket (a Linux server's sock_diag)."""
    final = next((a for a in s.conn.segments("client", sender="client", flag="ACK")
                  if s.want_ack is not None and a.ack == s.want_ack and not a.has("FIN")), None)
    server_sock = s.ev.facts.get("server_socket_before")
    if s.no_replay:
        ok = None
    else:
        ok = final is not None and final.t < s.replay.t and server_sock is None
    return Check.judged(
        "old-duplicate-reaches-time-wait", CITE_5_1,
        "a data segment the server sent earlier in this connection (copied by the router) reaches the client "
        "after the client acknowledged the server's FIN (TIME-WAIT), the server holding no socket",
        ("client.pcap: the client's ACK of the server's FIN "
         + (f"{round(s.replay.t - final.t, 3)} s before the replay" if final and s.replay else
            "seen" if final else "not seen")
         + f"; replay {'arrived' if s.replay else 'not seen'}; the server's socket: {server_sock or 'none'}"),
        ok, {"final_ack_t": final and final.t, "replay_t": s.replay and s.replay.t,
             "server_socket": server_sock, "client_stack": "gvisor"},
        missing=s.no_replay)


def paws_not_applicable(s: Seen) -> Check:
    return Check.not_applicable(
        "paws-does-not-prevent-it", CITE_PAWS, "PAWS rejects the replay (PAWSTimewait +1) and TIME-WAIT still ACKs it",
        f"the client runs gVisor: PAWSTimewait is a Linux counter ({wire.NO_SOCK_DIAG}); its ACK of the replay is "
        "judged by time-wait-acks-it")


def time_wait_survives_rst_wire(s: Seen) -> Check:
    """gVisor's choice: the RST is ignored, so the old segment replayed after it is answered by
    TIME-WAIT's ACK of SND.NXT, RCV.NXT; a RST answer means the RST killed it."""
    rst, a = s.rst_at_cli, s.answer
    wire_ok = is_ack(a) and (a.seq, a.ack) == (s.want_seq, s.want_ack)
    if not in_window(s):
        ok, missing = None, ("no RST with seq = RCV.NXT reached the client (closed-server-answers-rst says why): "
                             "nothing for the TIME-WAIT to survive")
    else:
        ok, missing = wire_judged(s, wire_ok)
    survived = "TIME_WAIT" if wire_ok else None
    return Check.judged(
        "time-wait-survives-rst", CITE_GVISOR_TW,
        f"gVisor ignores the RST: {WATCH_S} s later its TIME-WAIT still answers the old segment with an ACK of "
        "SND.NXT (its FIN + 1), RCV.NXT (the server's FIN + 1)",
        f"client.pcap: RST seq {rst.seq if rst else '-'} (RCV.NXT {s.want_ack}); wire: {wire_said(s)}",
        ok, {"rst_seq": rst and rst.seq, "rcv_nxt": s.want_ack, "tcp_rfc1337": None, "client_stack": "gvisor",
             "state_after": survived, "gone_after_rst_ms": None, "decided_by_wire": bool(wire_ok),
             "probe_answer": None if a is None else "ACK" if is_ack(a) else "RST" if a.has("RST") else a.flags},
        missing=missing)
