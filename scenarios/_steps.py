"""Step sequences several scenarios open with (not a scenario: the leading underscore keeps it
out of the catalog)."""

from __future__ import annotations

from lab.core import Lab
from lab.peer import Peer


def client_closes_first(lab: Lab, port: int) -> tuple[Peer, Peer]:
    """Connect, send "hello", and close the client first: returns (server, client) with the
    server in CLOSE_WAIT (socket "conn") and the client's FIN acknowledged (FIN_WAIT2, or gone
    where the kernel has no room for it)."""
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", port)
    client.connect("c", lab.host("server").address, port)
    server.accept("L", as_="conn")
    client.send("c", b"hello")
    server.recv("conn")

    client.close("c")                                            # client closes first: FIN ->
    lab.wait_for("the client's FIN to arrive (server CLOSE_WAIT)",
                 lambda: lab.sockets("server", {"CLOSE_WAIT"}), timeout_s=5)
    lab.wait_for("the server's ACK of that FIN (client no longer FIN_WAIT1)",
                 lambda: not lab.sockets("client", {"FIN_WAIT1"}), timeout_s=5)
    return server, client
