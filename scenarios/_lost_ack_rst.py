"""lost-ack without TIME-WAIT (the client's tcp_max_tw_buckets=0): the RST lesson's checks, judged
on lost_ack.Seen. Not a scenario (the leading underscore keeps it out of the catalog)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from lab.verdict import Check

if TYPE_CHECKING:
    from .lost_ack import Seen

__all__ = ["NO_TIME_WAIT_CHECKS"]

CITE_OVERFLOW = ("reference R-MAX-TW-BUCKETS: with tcp_max_tw_buckets exhausted a closing socket skips "
                 "TIME-WAIT (TCPTimeWaitOverflow) and answers the peer's FIN with RST (tcp_time_wait(), "
                 "tcp_v4_send_reset())")
CITE_RESET = ("RFC 9293 §3.10.7.4 (second, check the RST bit): in LAST-ACK a reset closes the connection; "
              "Linux tcp_reset() sets ECONNRESET (reference R-LASTACK-RST)")


def no_time_wait_state(s: Seen) -> Check:
    """No TIME-WAIT on the client: sock_diag never saw it there, and the overflow counter rose. A
    connection sock_diag never saw at all in the client says nothing about its states."""
    overflow = s.ev.counter("client", "TcpExtTCPTimeWaitOverflow")
    cli_tw = s.ev.ever_in("client", "TIME_WAIT")
    seen = s.conn.followed("client")
    ok = not cli_tw and overflow >= 1
    observed = (f"sock_diag: client {'entered' if cli_tw else 'never entered'} TIME_WAIT"
                + ("" if seen else " (its socket of this connection was never sampled)")
                + f"; TcpExtTCPTimeWaitOverflow +{overflow}")
    return Check.judged(
        "no-time-wait-state", CITE_OVERFLOW,
        "tcp_max_tw_buckets=0: the client never holds TIME_WAIT, TCPTimeWaitOverflow rises",
        observed, None if ok and not seen else ok,
        {"TCPTimeWaitOverflow": overflow, "client_time_wait": cli_tw, "client_sampled": seen},
        missing=f"{observed}: what its states were is not known")


def fin_answered_with_rst(s: Seen) -> Check:
    fins = s.fins_cli
    rsts = s.conn.segments("client", sender="client", flag="RST", after=fins[0].t) if fins else []
    answered = bool(rsts) and rsts[0].seq == fins[0].ack if fins else False
    out_rsts = s.ev.counter("client", "TcpOutRsts")
    ok = answered and out_rsts >= 1
    hole = s.ev.capture_hole("client")
    if not ok and out_rsts >= 1 and not (rsts and fins) and hole:
        ok = None           # the kernel sent a RST; the FIN or the RST is among tcpdump's drops
    observed = (f"client.pcap: {len(fins)} FINs from the server, {len(rsts)} RSTs from the client after it"
                + (f" (RST seq {rsts[0].seq} = FIN's ack {fins[0].ack})" if rsts and fins else "")
                + f"; TcpOutRsts +{out_rsts}")
    return Check.judged(
        "fin-answered-with-rst", CITE_OVERFLOW,
        "the server's FIN reaches a client with no state for it and is answered with RST",
        observed, ok, {"fins_at_client": len(fins), "rsts_from_client": len(rsts), "TcpOutRsts": out_rsts},
        missing=f"{observed}, but {hole}: the FIN or the RST may be among them")


def rst_aborts_server(s: Seen) -> Check:
    """The RST ends the server's connection at once: no further FIN, the socket CLOSE and gone,
    and ECONNRESET reported. LAST_ACK lasts one round trip here, shorter than the sampling
    interval, so the last state seen before it went may be anything from ESTABLISHED on; a sample
    asked just before the RST was captured can already see its effect (10 ms of slack)."""
    ev = s.ev
    so_error = ev.facts.get("server_so_error")
    rst = next(iter(s.conn.segments("server", sender="client", flag="RST")), None)
    later_fins = [f for f in s.fins_srv if rst is not None and f.t > rst.t]
    gone = s.conn.gone_at("server", after=rst.t - 0.01) if rst is not None else None
    state_after = ev.facts.get("server_state_after")
    reset = state_after == "CLOSE" and so_error == errno.ECONNRESET
    ok = rst is not None and not later_fins and reset
    hole = ev.capture_hole("server")
    if rst is None and hole and not later_fins and reset:
        ok = None           # the socket was reset; the RST that did it is among tcpdump's drops
    gone_ms = None if gone is None or rst is None else round((gone - rst.t) * 1000, 3)
    return Check.judged(
        "rst-aborts-server", CITE_RESET,
        "the RST reaches the server and ends its connection (TCP_INFO state CLOSE) with ECONNRESET "
        "(SO_ERROR), with no further FIN",
        f"server.pcap: RST {'arrived' if rst is not None else 'never arrived'}; {len(later_fins)} FINs after "
        f"it; the server's socket (TCP_INFO) is {state_after}; sock_diag: connection "
        + (f"gone {round(gone_ms, 1)} ms after the RST was captured" if gone_ms is not None
           else "not seen to go after the RST")
        + f"; the server's socket reported SO_ERROR={so_error} "
          f"({errno.errorcode.get(so_error, '?') if so_error else 'no error'})",
        ok, {"server_so_error": so_error, "fins_after_rst": len(later_fins), "socket_gone_after_rst_ms": gone_ms},
        missing=f"server.pcap has no RST from the client ({hole}), though the server's socket ended "
                f"{state_after} with SO_ERROR={so_error}")


NO_TIME_WAIT_CHECKS = (no_time_wait_state, fin_answered_with_rst, rst_aborts_server)
