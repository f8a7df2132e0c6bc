"""Step sequences several scenarios open with (not a scenario: the leading underscore keeps it
out of the catalog)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.peer import Peer


def client_closes_first(lab: Lab, port: int, server_opts: dict | None = None,
                        client_opts: dict | None = None) -> tuple[Peer, Peer]:
    """Connect, send "hello", and close the client first: returns (server, client) with the
    server in CLOSE_WAIT (socket "conn") and the client's FIN acknowledged (FIN_WAIT2, or gone
    where the kernel has no room for it). *server_opts* and *client_opts* go to the listening and
    the connecting socket (lab.peer_agent: tclass, ...)."""
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", port, **(server_opts or {}))
    cport = client.connect("c", lab.host("server").address, port, **(client_opts or {}))["local"][1]
    server.accept("L", as_="conn")
    # followed from here on: on a fast host the whole close can end inside the sampler's 50 ms
    # between whole dumps, and a connection it never saw leaves "never entered TIME_WAIT" unjudged
    lab.sampled()
    client.send("c", b"hello")
    server.recv("conn")

    client.close("c")                                            # client closes first: FIN ->
    server_got_the_fin(lab, "the client's FIN", cport, port)
    lab.wait_for("the server's ACK of that FIN (client no longer FIN_WAIT1)",
                 lambda: not lab.sockets("client", {"FIN_WAIT1"}), timeout_s=5)
    return server, client


def server_got_the_fin(lab: Lab, what: str, client_port: int, port: int) -> None:
    """Wait until the server has the client's FIN on the connection from *client_port*: its socket
    in CLOSE_WAIT (sock_diag), or for a gVisor server, which sock_diag cannot see, its ACK of the
    FIN on the wire (lab.wire)."""
    from lab import wire

    if wire.stack_of(lab, "server") == "gvisor":
        lab.wait_for(f"{what}: the server's ACK of the client's FIN (on the wire)",
                     lambda: wire.fin_acked(lab, "client", client_port, port), timeout_s=5)
    else:
        lab.wait_for(f"{what}: the server in CLOSE_WAIT",
                     lambda: [s for s in lab.sockets("server", {"CLOSE_WAIT"}) if s.dport == client_port],
                     timeout_s=5)


def client_closed_second(lab: Lab, what: str, client_port: int, port: int, linux_side: Callable[[], list]) -> None:
    """Wait until the client, which closed second, holds nothing on *client_port*: *linux_side*
    (its sockets there, by sock_diag) empty - or, for a gVisor client, which sock_diag cannot see,
    its FIN acknowledged by the server on the wire, the ACK that ends its LAST-ACK."""
    from lab import wire

    if wire.stack_of(lab, "client") == "gvisor":
        lab.wait_for(f"{what}: the server's ACK of the client's FIN (gVisor's LAST-ACK over, on the wire)",
                     lambda: wire.fin_acked(lab, "client", client_port, port), timeout_s=5)
    else:
        lab.wait_for(f"{what}: the client's socket fully closed (port {client_port} free again)",
                     lambda: not linux_side(), timeout_s=5)


def rebinds_for_gvisor(lab: Lab, host: str = "client") -> dict:
    """The options for a connect() from a port *host* used before: SO_REUSEADDR when *host* runs
    gVisor, which keeps a passively closed connection's bound port taken (bind() failed with
    EADDRINUSE still 90 s after the close, runsc 20221219) unless both sockets set it; Linux frees
    the port at once, and its runs are left as they were."""
    from lab import wire

    return {"reuseaddr": True} if wire.stack_of(lab, host) == "gvisor" else {}


def copied_data(lab: Lab, fault: str, sender: Peer, receiver: Peer, sock: str, nbytes: int,
                port: int) -> tuple[list, int | None]:
    """Send *nbytes* from *sender* to *receiver* on connection *sock* while the router keeps a copy
    of every data segment on its way (lab.faults.copy): a real segment of the connection, to replay
    later as an old duplicate, never one made up. Returns the copied segments of the connection
    from *port* (its sender's port or its receiver's) and how many bytes the receiver read."""
    src, dst = lab.host(sender.host.name), lab.host(receiver.host.name)
    lab.faults.copy(fault, src, dst, has="psh")
    sender.blast(sock, nbytes, "OLD-")
    got = receiver.drain(sock, nbytes, timeout_s=5)
    lab.faults.lift(fault)
    copied = [s for s in lab.faults.logged(fault) if s.length > 0 and port in (s.sport, s.dport)]
    return copied, got.result.get("len")

