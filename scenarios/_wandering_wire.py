"""wandering-duplicates with a gVisor server (``--stack server=gvisor``): the same parts, the
server's TIME-WAIT followed on the wire and asked by the router's probe (lab.twprobe) before and
after part (a)'s replay, sock_diag having none of gVisor's endpoints. Not a scenario (the leading
underscore keeps it out of the catalog): wandering_duplicates runs and judges through it.

gVisor's TIME-WAIT (handleTimeWaitSegment(), pkg/tcpip/transport/tcp/rcv.go, runsc 0.0~20221219)
answers an old data segment with an ACK and drops every RST (RFC 1337 fix 1, as Linux with
tcp_rfc1337=1 - the scenario's own setting for a Linux server, which is not set on gVisor), and
restarts its timer only for a retransmitted FIN; gVisor keeps no PAWS counters in nstat. In part
(b) what its ESTABLISHED endpoint does with an old segment whose TSval is older than TS.Recent is
judged from the packets and from what the application reads: RFC 7323 §5.3 R1 asks it dropped.
gVisor's own comment there says why it may not be: "As we do not yet support PAWS, we are being
conservative in ignoring RSTs by default" (rcv.go, handleTimeWaitSegment()); runs here saw the old
segment accepted and its bytes read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.verdict import Check

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence

__all__ = ["on_gvisor", "probed_state", "Probed", "paws_unseen", "timer_unseen", "UNSEEN"]

UNSEEN = "unseen (the router's probe got no answer)"


class Probed:
    """The server's end of a 4-tuple as the router's probe found it, in the shape the checks read
    from sock_diag (``state``)."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer

    @property
    def state(self) -> str | None:
        """TIME_WAIT (an ACK), None (a RST or SYN-ACK: nothing holds the 4-tuple), or UNSEEN (no
        answer, or no probe sent): the checks then cannot tell."""
        answer = self.answer.get("answer")
        return "TIME_WAIT" if answer == "ack" else None if answer in ("rst", "syn-ack") else UNSEEN

    def to_json(self) -> dict:
        return {"state": self.state, "probe": self.answer}


def on_gvisor(ev: Evidence) -> bool:
    return wire.stack_of(ev, "server") == "gvisor"


def probed_state(lab: Lab, port: int, client_port: int) -> Probed:
    """Ask the server's end of the 4-tuple from the router: TIME-WAIT answers the ACK probe."""
    return Probed(twprobe.probe_once(lab, "server", "client", port, client_port))


def _na(name: str, cite: str, expected: str, why: str) -> Check:
    return Check.not_applicable(name, cite, expected, f"the server runs gVisor: {why}")


def paws_unseen(s) -> Check:
    return _na("paws-in-time-wait", "RFC 7323 §5.3 / reference R-TW-PAWS (Linux: PAWSTimewait)",
               "timestamps on: PAWSTimewait +1 for the old TSval, and an ACK anyway",
               "nstat counts Linux's sockets, gVisor keeps no PAWS counter; TIME-WAIT's ACK of the replay is "
               "time-wait-acks-old-duplicate's")


def timer_unseen(s) -> Check:
    return _na("time-wait-timer-restarted", "RFC 9293 §3.10.7.4; gVisor handleTimeWaitSegment() "
               "(pkg/tcpip/transport/tcp/rcv.go) restarts it only for a retransmitted FIN",
               "after the replay the TIME-WAIT timer is due 60 s later", "no sock_diag to read its timer; measuring "
               "the restart from the wire would take a 60 s probe of the TIME-WAIT")
