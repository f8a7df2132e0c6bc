"""lost-ack's checks of what only IPv6 shows, and of a v4-mapped client (`run --mapped`): judged on
lost_ack.Seen. Not a scenario (the leading underscore keeps it out of the catalog).

Over IPv6 the client's TIME-WAIT answers from a mini-socket that kept the connection's flow label
and traffic class (tcp_time_wait(): tw_flowlabel, tw_txhash, tw_tclass; tcp_v6_timewait_ack()),
and a host with no TIME-WAIT answers the FIN from no socket at all (tcp_v6_send_reset() with no
socket: a label of its own unless net.ipv6.flowlabel_reflect has bit 2). What Linux puts there
under each flowlabel_reflect setting, as measured: reference R-TW-FLOWLABEL. IPv4 has no flow
label: there these checks say so (not applicable), never pass.

A v4-mapped client is an AF_INET6 socket whose packets are IPv4: its TIME-WAIT is an AF_INET6
mini-socket that IPv4's code finds and answers from (tcp_v4_rcv(), tcp_v4_timewait_ack()):
reference R-TW-V4MAPPED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.connection import unmapped
from lab.packets import Segment
from lab.verdict import Check

if TYPE_CHECKING:
    from .lost_ack import Seen

__all__ = ["ack_flow_label", "rst_flow_label", "mapped_answers_over_ipv4", "CLIENT_TCLASS", "SERVER_TCLASS"]

CLIENT_TCLASS = 0x28     # DSCP AF11 on the client's socket, AF21 on the server's (IPV6_TCLASS): the
SERVER_TCLASS = 0x48     # traffic classes differ, so an answer shows whose it carries
ECN_MASK = 0x03

CITE_ACK = ("reference R-TW-FLOWLABEL: TIME-WAIT keeps the connection's flow label and traffic class "
            "(tcp_time_wait(): tw_flowlabel, tw_txhash, tw_tclass) and answers with them "
            "(net/ipv6/tcp_ipv6.c tcp_v6_timewait_ack(), Linux v6.18)")
CITE_RST = ("reference R-TW-FLOWLABEL: a RST from no socket carries the FIN's flow label only when "
            "net.ipv6.flowlabel_reflect has bit 2 (FLOWLABEL_REFLECT_TCP_RESET), else one of its own; "
            "its traffic class is the FIN's (net/ipv6/tcp_ipv6.c tcp_v6_send_reset(), Linux v6.18)")
CITE_MAPPED = ("reference R-TW-V4MAPPED: a v4-mapped socket's TIME-WAIT is an AF_INET6 mini-socket that "
               "IPv4's lookup finds by its IPv4 addresses; IPv4's code answers from it (net/ipv4/tcp_ipv4.c "
               "tcp_v4_rcv(), tcp_v4_timewait_ack(), tcp_v4_send_reset(), Linux v6.18)")


def _label(seg: Segment | None) -> str:
    return "none" if seg is None or seg.flow_label is None else f"{seg.flow_label:#07x}"


def _dscp(seg: Segment | None) -> str:
    return "none" if seg is None or seg.traffic_class is None else f"{seg.traffic_class & ~ECN_MASK:#04x}"


def _ipv4_only(s: Seen) -> str:
    """Why a flow-label check cannot apply to this run ("" when it can)."""
    if s.ev.options.get("mapped"):
        return ("the client is v4-mapped: its packets are IPv4, which has no flow label or traffic class "
                "(RFC 791 §3.1); IPv4's code answers the FINs (tcp_v4_timewait_ack(), tcp_v4_send_reset()), "
                "judged by v4-mapped-answers-over-ipv4")
    if s.ev.family != 6:
        return ("an IPv4 run: IPv4 has no flow label (RFC 791 §3.1), so TIME-WAIT's ACK is IPv4's "
                "(tcp_v4_timewait_ack(): TOS from tw_tos); run with --family 6 for tcp_v6_timewait_ack()")
    return ""


def own_segment(s: Seen) -> Segment | None:
    """The client's last segment of the connection before its TIME-WAIT answers: its FIN, as its
    own capture saw it (tw_txhash and tw_tclass are the socket's when it closed)."""
    fins = s.conn.segments("client", sender="client", flag="FIN")
    return fins[-1] if fins else None


def ack_flow_label(s: Seen) -> Check:
    """Each ACK the client's TIME-WAIT sent (client.pcap) carries the connection's own flow label
    and DSCP: the client's FIN's. The ECN bits are left out: an out-of-window FIN's ACK clears them
    (TCP_TW_ACK_OOW)."""
    name, expected = ("time-wait-ack-flow-label",
                      "every ACK from the client's TIME-WAIT carries the flow label and DSCP of the client's "
                      "connection (its FIN), whatever net.ipv6.flowlabel_reflect says")
    why = _ipv4_only(s)
    if why:
        return Check.not_applicable(name, CITE_ACK, expected, why)
    own, acks = own_segment(s), [a for a in s.answers if a is not None]
    wrong = [a for a in acks if own is None or a.flow_label != own.flow_label
             or (a.traffic_class & ~ECN_MASK) != (own.traffic_class & ~ECN_MASK)]
    labels = sorted({_label(a) for a in acks})
    observed = (f"client.pcap: the client's FIN: flow label {_label(own)}, DSCP {_dscp(own)}; "
                f"{len(acks)} ACKs from TIME-WAIT: flow labels {labels}, DSCP {sorted({_dscp(a) for a in acks})}"
                + (f"; {len(wrong)} differ" if wrong else "")
                + f" (the server's FINs: {sorted({_label(f) for f in s.fins_cli})})")
    ok = own is not None and len(acks) >= 1 and not wrong
    hole = s.ev.capture_hole("client")
    return Check.judged(
        name, CITE_ACK, expected, observed, None if not ok and not wrong and hole else ok,
        {"own_flow_label": own.flow_label if own else None,
         "own_traffic_class": own.traffic_class if own else None,
         "ack_flow_labels": [a.flow_label for a in acks], "ack_traffic_classes": [a.traffic_class for a in acks],
         "fin_flow_labels": [f.flow_label for f in s.fins_cli],
         "flowlabel_reflect": s.ev.sysctl("client", "net.ipv6.flowlabel_reflect")},
        missing=f"{observed}, but {hole}: the FIN or its ACKs may be among them")


def rst_flow_label(s: Seen) -> Check:
    """The RST that answers the server's FIN where no TIME-WAIT is left: its flow label is the FIN's
    when the client's flowlabel_reflect has bit 2, else one the kernel draws from the packet's
    flow hash (neither the FIN's nor the connection's); its DSCP is the FIN's either way."""
    reflect = s.ev.sysctl("client", "net.ipv6.flowlabel_reflect")
    bit2 = reflect is not None and int(reflect) & 2 != 0
    name = "rst-flow-label"
    expected = (f"the client's flowlabel_reflect is {reflect}: " +
                ("bit 2 set, so the RST carries the FIN's flow label" if bit2 else
                 "bit 2 clear, so the RST carries a flow label of its own, neither the FIN's nor the "
                 "connection's") + "; its DSCP is the FIN's")
    why = _ipv4_only(s)
    if why:
        return Check.not_applicable(name, CITE_RST, expected, why)
    if reflect is None:
        return Check.inconclusive(name, CITE_RST, expected, "the client's net.ipv6.flowlabel_reflect was not read")
    fin = s.fins_cli[0] if s.fins_cli else None
    rst = next(iter(s.conn.segments("client", sender="client", flag="RST", after=fin.t)), None) if fin else None
    own = own_segment(s)
    observed = (f"client.pcap: the server's FIN: flow label {_label(fin)}, DSCP {_dscp(fin)}; the client's "
                f"connection (its FIN): {_label(own)}, DSCP {_dscp(own)}; the RST: {_label(rst)}, DSCP {_dscp(rst)}")
    ok = None
    if fin is not None and rst is not None and own is not None:
        label_ok = rst.flow_label == fin.flow_label if bit2 else rst.flow_label not in (fin.flow_label, own.flow_label)
        ok = label_ok and (rst.traffic_class & ~ECN_MASK) == (fin.traffic_class & ~ECN_MASK)
    hole = s.ev.capture_hole("client")
    return Check.judged(
        name, CITE_RST, expected, observed, ok if ok is not None else (None if hole else False),
        {"flowlabel_reflect": int(reflect), "fin_flow_label": fin.flow_label if fin else None,
         "own_flow_label": own.flow_label if own else None, "rst_flow_label": rst.flow_label if rst else None,
         "fin_traffic_class": fin.traffic_class if fin else None,
         "rst_traffic_class": rst.traffic_class if rst else None},
        missing=f"{observed}, but {hole}: the FIN or the RST may be among them")


def mapped_answers_over_ipv4(s: Seen) -> Check:
    """A v4-mapped client: sock_diag lists its connection as an AF_INET6 socket (::ffff:a.b.c.d),
    and every answer it sent to the server's FINs - TIME-WAIT's ACKs, or the RST where it has no
    TIME-WAIT - is an IPv4 packet: IPv4's code answers (tcp_v4_rcv() finds the mapped mini-socket
    in the shared table), never tcp_v6_timewait_ack()."""
    name = "v4-mapped-answers-over-ipv4"
    expected = ("the client's socket is AF_INET6 (sock_diag lists it under ::ffff:...); every answer to the "
                "server's FINs is an IPv4 packet (tcp_v4_timewait_ack() / tcp_v4_send_reset())")
    states = s.conn.states("client")
    mapped = sorted({e.socket.src for e in states if e.state != "GONE" and unmapped(e.socket.src) != e.socket.src})
    plain = sorted({e.socket.src for e in states if e.state != "GONE" and unmapped(e.socket.src) == e.socket.src})
    tw = sorted({e.socket.src for e in states if e.state == "TIME_WAIT"})
    after = s.fins_cli[0].t if s.fins_cli else None
    answers = [a for a in s.conn.segments("client", sender="client", after=after)
               if a.has("RST") or a.pure_ack] if after is not None else []
    v4 = [a for a in answers if a.ttl is not None and a.flow_label is None]
    shown = lambda addrs: ", ".join(f"::ffff:{unmapped(a)}" if unmapped(a) != a else a for a in addrs)
    observed = (f"sock_diag: the client's connection listed under {shown(mapped + plain) or 'nothing'}"
                + (" (in TIME_WAIT too)" if tw else "")
                + f"; client.pcap: {len(answers)} answers to the server's FINs "
                  f"({', '.join(sorted({a.flags for a in answers})) or 'none'}), {len(v4)} of them IPv4")
    ok = bool(mapped) and not plain and bool(answers) and len(v4) == len(answers)
    hole = s.ev.capture_hole("client")
    # listed under nothing because sock_diag never sampled it: not known, unless the answers break it
    unsampled = not states and ((bool(answers) and len(v4) == len(answers)) or (not answers and bool(hole)))
    return Check.judged(
        name, CITE_MAPPED, expected, observed,
        None if (not ok and not answers and mapped and hole) or unsampled else ok,
        {"sock_diag_addresses": mapped or plain, "time_wait_addresses": tw, "answers": len(answers),
         "ipv4_answers": len(v4), "answer_ttls": sorted({a.ttl for a in v4})},
        missing=f"{observed}: sock_diag never sampled the client's socket, so its family is not known"
        if unsampled else f"{observed}, but {hole}: the answers may be among them")
