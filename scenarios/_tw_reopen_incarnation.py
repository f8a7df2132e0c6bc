"""tw-reopen's reading of the captures: a 4-tuple's old incarnation and the SYN(s) that reopen it,
and TIME-WAIT's decision on the first of them. Not a scenario: the leading underscore keeps it out
of the catalog; scenarios/tw_reopen.py describes the rules, runs the steps and judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.packets import Segment

__all__ = ["M32", "Incarnation", "Decision"]

M32 = 0xFFFFFFFF


def _after(a: int, b: int) -> bool:
    """Sequence number *a* lies after *b* (modulo 2^32)."""
    return ((b - a) & M32) >= 0x80000000


@dataclass(frozen=True)
class Incarnation:
    """A 4-tuple in one capture: the old connection (its client ISN; rcv_nxt and snd_nxt after its
    FINs; who closed first; the client's last TSval; whether it used timestamps) and the reopening
    SYN(s) after it, each with the server's answer and the client's RST to that answer."""

    old_client_isn: int
    rcv_nxt: int
    old_snd_nxt: int
    server_fin_t: float
    client_fin_t: float
    server_closed_first: bool
    ts_recent: int | None
    old_timestamps: bool
    borrowed: list[str]              # the FINs taken from the other end's capture
    answers: list[tuple[Segment, Segment | None, Segment | None]]     # (SYN, answer, RST)

    @classmethod
    def of(cls, conn: Conn, at: str) -> Incarnation | None:
        """From *at*'s capture; None when it lacks the old connection's SYN or a FIN (a capture
        that fell behind during the bulk transfer may lack a FIN: it is taken from the other end's
        capture, same clock, and said)."""
        other = "client" if at == "server" else "server"
        syns = [x for x in conn.segments(at, sender="client") if x.flags == "SYN"]
        fins, borrowed = {}, []
        for end in ("client", "server"):
            fins[end] = next(iter(conn.segments(at, sender=end, flag="FIN")), None)
            if fins[end] is None:
                fins[end] = next(iter(conn.segments(other, sender=end, flag="FIN")), None)
                borrowed.append(f"{end} FIN")
        cfin, sfin = fins["client"], fins["server"]
        if not syns or cfin is None or sfin is None:
            return None
        new_syns = [x for x in syns if x.t > max(cfin.t, sfin.t)]
        end_t = new_syns[0].t if new_syns else float("inf")
        tsvals = [x.tsval for x in conn.segments(at, sender="client") if x.t < end_t and x.tsval is not None]
        syn_ack = next((x for x in conn.segments(at, sender="server", flag="SYN")
                        if x.t < end_t and x.has("ACK")), None)
        return cls(syns[0].seq, (cfin.seq + cfin.length + 1) & M32, (sfin.seq + sfin.length + 1) & M32,
                   sfin.t, cfin.t, sfin.t < cfin.t and cfin.ack == (sfin.seq + 1) & M32,
                   tsvals[-1] if tsvals else None,
                   syns[0].tsval is not None and syn_ack is not None and syn_ack.tsval is not None,
                   borrowed, _answers(conn, at, new_syns))


def _answers(conn: Conn, at: str, new_syns: list[Segment]) -> list:
    """The server's answer to each new SYN (its first segment after it), and the client's RST to that."""
    out = []
    for i, syn in enumerate(new_syns):
        nxt = new_syns[i + 1].t if i + 1 < len(new_syns) else float("inf")
        ans = next((x for x in conn.segments(at, sender="server", after=syn.t) if x.t < nxt), None)
        rst = next((x for x in conn.segments(at, sender="client", flag="RST", after=ans.t) if x.t < nxt),
                   None) if ans is not None else None
        out.append((syn, ans, rst))
    return out


@dataclass(frozen=True)
class Decision:
    """TIME-WAIT's decision on a case's first reopening SYN, as server.pcap shows it: what the
    server's stack's rule asks and what the server answered. Linux (tcp_timewait_state_process()):
    accept when not PAWS-rejected and above rcv_nxt or with a newer timestamp (RFC 6191), else an
    ACK of rcv_nxt. gVisor (handleTimeWaitSegment(), pkg/tcpip/transport/tcp/rcv.go): a bare SYN
    above rcv_nxt goes to the listener; any other segment without ACK is dropped, unanswered; no
    timestamp rule."""

    syn: Segment
    ans: Segment | None
    rst: Segment | None
    ts_used: bool
    seq_after: bool
    ts_newer: bool
    want_accept: bool
    accepted: bool                   # answered by a SYN-ACK
    acked: bool                      # answered by an ACK of rcv_nxt
    stack: str = "linux"

    @classmethod
    def of(cls, inc: Incarnation, stack: str = "linux") -> Decision:
        syn, ans, rst = inc.answers[0]
        ts_used = inc.old_timestamps and syn.tsval is not None
        seq_after = _after(syn.seq, inc.rcv_nxt)
        ts_newer = ts_used and inc.ts_recent is not None and ((inc.ts_recent - syn.tsval) & M32) >= 0x80000000
        paws = ts_used and inc.ts_recent is not None and not ts_newer and syn.tsval != inc.ts_recent
        want = seq_after if stack == "gvisor" else not paws and (seq_after or ts_newer)
        return cls(syn, ans, rst, ts_used, seq_after, ts_newer, want,
                   ans is not None and ans.has("SYN") and ans.has("ACK"),
                   ans is not None and ans.flags == "ACK" and ans.ack == inc.rcv_nxt, stack)

    @property
    def refusal(self) -> str:
        """What refusing the SYN looks like on this stack."""
        return "drops it without an answer" if self.stack == "gvisor" else "answers with an ACK of rcv_nxt"

    @property
    def refused(self) -> bool:
        return self.ans is None if self.stack == "gvisor" else self.acked

    @property
    def rule_held(self) -> bool:
        return self.accepted if self.want_accept else self.refused

    @property
    def refuted(self) -> bool:
        """The opposite answer: a refusal where TIME-WAIT should accept, a SYN-ACK where it should refuse."""
        return self.refused if self.want_accept else self.accepted
