"""lossy-link: a close the client reset before any FIN of the server's reached it, and the segment
that provoked the reset, read from the captures (scenarios/_lossy_closes.py builds each close;
scenarios/_lossy_checks.py's every-close-completes names them).

Seen three times from a gVisor client (runsc 0.0~20221219) in 100-close runs at 20 % loss: the
server's FIN was lost, and the server's ACK of a retransmitted client FIN, sent after that FIN and
so carrying SEQ = the client's RCV.NXT + 1, reached the client first. gVisor's
pkg/tcpip/transport/tcp/rcv.go handleRcvdSegmentClosing() aborts the connection when a segment
ends past RCV.NXT once the receive side is closed (`rcvClosed && RcvNxt.LessThan(endDataSeq)`),
data or not. RFC 1122 §4.2.2.13 has a TCP reset when new *data* arrives after CLOSE, and Linux's
tcp_rcv_state_process() resets only for a segment that carries data (end_seq != seq;
LINUX_MIB_TCPABORTONDATA). A pure ACK beyond RCV.NXT is acceptable (RFC 9293 §3.10.7.4's window
test) and carries nothing to lose.
"""

from __future__ import annotations

from lab.packets import Segment

__all__ = ["early_reset", "provocation_words"]

M32 = 1 << 32
CITE_GVISOR_ABORT = ("gVisor pkg/tcpip/transport/tcp/rcv.go handleRcvdSegmentClosing() aborts when a segment ends "
                     "past RCV.NXT on a closed receive side, data or not; RFC 1122 §4.2.2.13 asks a reset only "
                     "for new data after CLOSE, and Linux's tcp_rcv_state_process() resets only for a segment "
                     "carrying data (LINUX_MIB_TCPABORTONDATA)")


def early_reset(out_c: list[Segment], out_s: list[Segment], fins_in: list[float],
                arrived: dict) -> dict | None:
    """The client's first RST sent before any server FIN reached it (whether netem let it through
    or not), with the server's segment that arrived last before it (None when none did): its
    flags, length, arrival, and how far its SEQ lay past the client's RCV.NXT then (None when the
    server's SYN-ACK is not in the captures to count from). None: no such RST."""
    first_in = min(fins_in, default=float("inf"))
    rst = next((r for r in out_c if r.has("RST") and r.t < first_in), None)
    if rst is None:
        return None
    came = sorted(((t, s) for s in out_s if (t := arrived[id(s)]) is not None and t <= rst.t),
                  key=lambda e: e[0])
    if not came:
        return {"t": rst.t, "provoked_by": None}
    t, seg = came[-1]
    past = _past_rcv_nxt(seg, [s for _, s in came])
    return {"t": rst.t, "provoked_by": {"t": t, "flags": seg.flags, "length": seg.length, "seq_past_rcv_nxt": past}}


def _past_rcv_nxt(seg: Segment, came: list[Segment]) -> int | None:
    """How far *seg*'s SEQ lies past the client's RCV.NXT as the segments before it (*came*, in
    arrival order) left it: the SYN-ACK's SEQ + 1, moved on by each in-order segment's bytes."""
    synack = next((s for s in came if s.has("SYN")), None)
    if synack is None:
        return None
    rcv_nxt = 1                                   # relative to the server's ISN
    for s in came:
        if s is seg:
            break
        start = (s.seq - synack.seq) % M32
        if not s.has("SYN") and start <= rcv_nxt < start + s.length:
            rcv_nxt = start + s.length
    return (seg.seq - synack.seq) % M32 - rcv_nxt


def provocation_words(resets: dict[int, dict]) -> str:
    """What provoked the early resets (*resets*: port -> early_reset()), for the check's observed
    line: named, with its rule, when each was a pure ACK past RCV.NXT (gVisor's abort); else the
    segment each came after."""
    if not resets:
        return ""
    what = {p: r["provoked_by"] for p, r in resets.items()}
    if all(w and w["flags"] == "ACK" and w["length"] == 0 and (w["seq_past_rcv_nxt"] or 0) > 0
           for w in what.values()):
        return (f"; {'it' if len(what) == 1 else 'each'} came just after a pure ACK of the server's whose SEQ lay "
                "past the client's RCV.NXT, where the server's lost FIN had been - no data in it: " + CITE_GVISOR_ABORT)
    return "; they came after " + ", ".join(
        f"port {p}: " + ("nothing from the server" if w is None else
                         f"the server's {w['flags']} (length {w['length']}, SEQ "
                         f"{'?' if w['seq_past_rcv_nxt'] is None else w['seq_past_rcv_nxt']} past RCV.NXT)")
        for p, w in sorted(what.items())[:4])
