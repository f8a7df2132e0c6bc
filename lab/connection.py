"""One TCP connection of a run, as the evidence shows it: its segments in each host's capture, its
socket's state changes and timer samples in each host, when it went. Scenarios ask these instead
of writing their own filters.

    c = ev.conn(client_port=40012)                   # the client's port picks the connection
    c.segments("server", sender="client", flag="FIN")
    c.states("client")                               # [Event, ...] with .state and .socket
    c.gone_at("server", after=rst.t)                 # when sock_diag first missed it
    c.samples("client", state="TIME_WAIT")           # [TimerSample, ...]

A connection is named by the client's port and the server's port (the lab's two ends and their
addresses are fixed for a run); both ends see the same 4-tuple, mirrored. A v4-mapped socket
(`run --mapped`) names its addresses ::ffff:a.b.c.d in sock_diag: its states and timer samples
are this connection's all the same.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .records import TimerSample, four_tuple_key

if TYPE_CHECKING:
    from .evidence import Evidence
    from .packets import Segment
    from .timeline import Event

__all__ = ["Conn"]


@dataclass(frozen=True)
class Conn:
    ev: Evidence
    client_port: int
    server_port: int
    client: str = "client"          # the hosts at either end
    server: str = "server"

    # -- who is who ------------------------------------------------------------------------------
    def local(self, host: str) -> tuple[str, int]:
        """(address, port) of the connection's end in *host*."""
        if host == self.client:
            return self.ev.addresses[self.client], self.client_port
        return self.ev.addresses[self.server], self.server_port

    def key(self, host: str, mapped: bool = False) -> str:
        """The 4-tuple as *host* sees it, as timer samples name it (*mapped*: as a v4-mapped
        socket names it)."""
        other = self.server if host == self.client else self.client
        (a, ap), (b, bp) = self.local(host), self.local(other)
        if mapped and ":" not in a + b:     # IPv4 ones, as sock_diag writes them mapped: str(IPv6Address)
            a, b = (str(ipaddress.ip_address(f"::ffff:{x}")) for x in (a, b))
        return four_tuple_key(a, ap, b, bp)

    # -- packets ---------------------------------------------------------------------------------
    def segments(self, at: str, sender: str | None = None, flag: str | None = None,
                 after: float | None = None) -> list[Segment]:
        """This connection's segments in *at*'s capture, sent by host *sender*, carrying *flag*,
        at or after *after*; in capture order."""
        src = self.local(sender) if sender else None
        return [s for s in self.ev.between(at, self.local(self.client), self.local(self.server))
                if (src is None or (s.src, s.sport) == src)
                and (flag is None or s.has(flag)) and (after is None or s.t >= after)]

    def arrived(self, seg: Segment, at: str) -> Segment | None:
        """The copy of *seg* (captured at its sender) in *at*'s capture, if it got there."""
        return next((s for s in self.ev.packets.get(at, []) if s.same_wire(seg) and s.t >= seg.t - 0.001),
                    None)

    # -- the socket ------------------------------------------------------------------------------
    def states(self, host: str) -> list[Event]:
        """The state changes sock_diag saw of this connection's socket in *host* (the last one
        "GONE" when it went), in time order."""
        me = self.local(host)
        peer = self.local(self.server if host == self.client else self.client)
        return [e for e in self.ev.states(host)
                if (unmapped(e.socket.src), e.socket.sport) == me and (unmapped(e.socket.dst), e.socket.dport) == peer]

    def ever_in(self, host: str, state: str) -> bool:
        return any(e.state == state for e in self.states(host))

    def followed(self, host: str) -> bool:
        """Whether sock_diag saw this connection's socket in *host* at all: a state it "never
        entered" means something only then."""
        return bool(self.states(host))

    def first_in(self, host: str, state: str) -> Event | None:
        return next((e for e in self.states(host) if e.state == state), None)

    def gone_at(self, host: str, after: float | None = None) -> float | None:
        """When sock_diag first saw the socket gone (at or after *after*), or None."""
        return next((e.t for e in self.states(host) if e.state == "GONE"
                     and (after is None or e.t >= after)), None)

    def samples(self, host: str, state: str | None = None) -> list[TimerSample]:
        """Every sample of the socket's running timer in *host* (in *state*)."""
        keys = {self.key(host), self.key(host, mapped=True)}
        return [s for s in self.ev.samples(host) if s.key in keys and (state is None or s.state == state)]


def unmapped(addr: str) -> str:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it maps; others as they are."""
    try:
        four = getattr(ipaddress.ip_address(addr), "ipv4_mapped", None)
    except ValueError:
        return addr
    return str(four) if four else addr
