"""five-tuple's steps (not a scenario: the leading underscore keeps it out of the catalog;
scenarios/five_tuple.py describes the rules and runs them): an old connection the client closes
first, and the attempts on its 4-tuple, each with what sock_diag showed of it just before. With a
gVisor client (no sock_diag) the old connection's TIME-WAIT is waited for on the wire, and the
router's probe says whether it holds the 4-tuple (scenarios/_five_tuple_wire.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab import wire

from ._steps import server_got_the_fin

if TYPE_CHECKING:
    from lab.core import Lab

__all__ = ["old_connection", "Tries", "PORT"]

PORT = 5000


def old_connection(lab: Lab, label: str, **opts) -> tuple[int, float]:
    """A connection the client closes first, left in TIME-WAIT: (its client port, when)."""
    server, client = lab.peer("server"), lab.peer("client")
    r = client.connect(label, lab.host("server").address, PORT, **opts)
    server.accept("L", as_=f"s-{label}")
    client.send(label, b"old incarnation")
    server.recv(f"s-{label}")
    lport = r["local"][1]
    client.close(label)                                   # the client closes first
    server_got_the_fin(lab, label, lport, PORT)
    server.close(f"s-{label}")
    if wire.stack_of(lab, "client") == "gvisor":         # its ACK of the server's FIN: TIME-WAIT
        lab.wait_for(f"{label}: the client's ACK of the server's FIN (on the wire: gVisor in TIME-WAIT)",
                     lambda: wire.fin_acked(lab, "client", PORT, lport), timeout_s=5)
    else:
        lab.wait_for(f"{label}: the client's 4-tuple in TIME_WAIT",
                     lambda: [s for s in lab.sockets("client", {"TIME_WAIT"}) if s.sport == lport], timeout_s=5)
    return lport, time.time()


@dataclass
class Tries:
    """The attempts on an old 4-tuple, each with what sock_diag showed of it just before."""

    lab: Lab
    made: list[dict] = field(default_factory=list)

    def _held(self, lport: int, dport: int = PORT) -> list[dict]:
        return [s.to_json() for s in self.lab.views["client"].sockets(port=dport)
                if s.sport == lport and s.dport == dport]

    def connect(self, label: str, part: str, lport: int, dport: int, bind_flag: bool | None, accept_on: str,
                note: str, entered: float) -> None:
        """One try at the 4-tuple (client lport -> server dport): sock_diag before it, the result."""
        client = self.lab.peer("client")
        before = self._held(lport, dport) + (self._held(lport) if dport != PORT else [])
        srv = self.lab.host("server").address
        if bind_flag is None:
            r = client.connect(label, srv, dport, timeout_s=5)
        else:
            r = client.connect(label, srv, dport, lport=lport, reuseaddr=bind_flag, timeout_s=5)
        self.made.append({"label": label, "part": part, "note": note, "lport": lport, "dport": dport,
                          "bind": bind_flag is not None, "reuseaddr": bool(bind_flag), "ok": r.ok, "errno": r.errno,
                          "error": r.error, "t": r.t, "since_time_wait_s": round(r.t - entered, 4),
                          "local": r.result.get("local"), "sockets_before": before})
        if r.ok:
            self.lab.peer("server").accept(accept_on, as_=f"s-{label}")

    def bind_plain(self, label: str, part: str, lport: int, note: str, entered: float) -> None:
        """bind() to *lport* without SO_REUSEADDR."""
        r = self.lab.peer("client").call("bind", sock=label, port=lport)
        self.made.append({"label": label, "part": part, "note": note, "lport": lport, "dport": None, "bind": True,
                          "reuseaddr": False, "ok": r.ok, "errno": r.errno, "error": r.error, "t": r.t,
                          "since_time_wait_s": round(r.t - entered, 4), "sockets_before": self._held(lport)})
