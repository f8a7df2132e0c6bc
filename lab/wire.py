"""Following a connection on the wire while a run goes on, for hosts whose sockets sock_diag cannot
see (a gVisor host: lab.gvisor): the router's captures (tcpdump -U writes each packet at once)
read again at each poll, and what each host's stack is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .twprobe import router_capture

if TYPE_CHECKING:
    from .core import Lab
    from .evidence import Evidence
    from .packets import Segment

__all__ = ["stack_of", "any_gvisor", "at_router", "fins", "acks_of_fin", "fin_acked", "fin_answered", "NO_SOCK_DIAG"]

NO_SOCK_DIAG = ("gVisor's netstack has no sock_diag (and its /proc/net/tcp lists no TIME-WAIT "
                "endpoint): its states and timers are observed from the wire only")


def stack_of(ev_or_lab, host: str) -> str:
    """The stack *host* ran: "linux" or "gvisor" (a run's options, or a live lab's hosts)."""
    hosts = getattr(ev_or_lab, "hosts", None)
    if isinstance(hosts, dict) and host in hosts and hasattr(hosts[host], "stack"):
        return hosts[host].stack
    return (getattr(ev_or_lab, "options", {}) or {}).get("stacks", {}).get(host, "linux")


def any_gvisor(ev_or_lab: Lab | Evidence) -> bool:
    return any(stack_of(ev_or_lab, h) == "gvisor" for h in ("client", "server"))


def at_router(lab: Lab, facing: str) -> list[Segment]:
    """What the router's capture facing *facing* holds so far."""
    from .pcap import read_pcap  # here: the scenarios import this module, `invoke list` no packet code

    path = router_capture(lab, facing)
    try:
        return read_pcap(path) if path else []
    except (ValueError, OSError):        # the last record half written: read again at the next poll
        return []


def fins(segs: list[Segment], sport: int, dport: int) -> list[Segment]:
    return [s for s in segs if s.sport == sport and s.dport == dport and s.has("FIN")]


def acks_of_fin(segs: list[Segment], fin: Segment, after: float | None = None) -> list[Segment]:
    """Segments acknowledging *fin* (its receiver's ACKs), at or after *after*."""
    want = (fin.seq + fin.length + 1) & 0xFFFFFFFF
    return [s for s in segs if s.sport == fin.dport and s.dport == fin.sport and s.has("ACK")
            and s.ack == want and not s.has("RST") and (after is None or s.t >= after)]


def fin_acked(lab: Lab, facing: str, sport: int, dport: int) -> bool:
    """The FIN from port *sport* to port *dport* acknowledged by its receiver, as the router's
    capture facing *facing* shows: facing the FIN's sender, the ACK has crossed the router; facing
    its receiver, the ACK has reached the router (the receiver has taken the FIN either way)."""
    segs = at_router(lab, facing)
    f = fins(segs, sport, dport)
    return bool(f and acks_of_fin(segs, f[0], after=f[0].t))


def fin_answered(segs: list[Segment], sport: int, dport: int) -> bool:
    """The first FIN from port *sport* to port *dport* in *segs* answered by its receiver: an ACK
    of it, or a RST (what a port with no state left sends, RFC 9293 §3.10.7.1)."""
    f = fins(segs, sport, dport)
    return bool(f) and bool(acks_of_fin(segs, f[0], after=f[0].t)
                            or any(x.sport == dport and x.dport == sport and x.has("RST") and x.t >= f[0].t
                                   for x in segs))
