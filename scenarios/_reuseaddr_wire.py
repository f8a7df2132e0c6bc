"""restart-reuseaddr with a gVisor server (``--stack server=gvisor``): the same five cases, the
server's TIME-WAIT followed on the wire (gVisor has no sock_diag) and asked once by the router's
prober just before bind(): an ACK means TIME-WAIT still holds the old connection. bind()'s errno
comes from the restarted server program itself, inside the sandbox. Not a scenario (the leading
underscore keeps it out of the catalog): restart_reuseaddr judges its cases through it.

gVisor's rule is its own code, not Linux's (pkg/tcpip/ports/ports.go): TCP's SO_REUSEADDR is its
"TupleOnly" flag, and a port is free for a new bind only when every reservation already on it
shares a flag with the new one (deviceNode.isAvailable: "all nodes sharing a port must share at
least one reuse flag. This matches Linux's behavior"); a TIME-WAIT endpoint keeps its reservation
until it is cleaned up, and a live listener on the port is refused by the endpoint's own check
(CheckRegisterTransportEndpoint in bind). So the expectation per case is Linux's table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.verdict import Check

if TYPE_CHECKING:
    from .restart_reuseaddr import Case, Held

__all__ = ["time_wait_holds_port_wire", "held"]

CITE_SETUP = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first (here the server) lingers in "
              "TIME-WAIT; asked from the wire (reference R-TW-PROBE)")
CITE_RULE = ("gVisor pkg/tcpip/ports/ports.go deviceNode.isAvailable(): TCP SO_REUSEADDR is TupleOnly; a bound port "
             "is free only if every reservation on it shares a reuse flag with the new socket; a listener on it is "
             "refused by CheckRegisterTransportEndpoint() (transport/tcp endpoint.go bindLocked); socket FAQ: "
             "SO_REUSEADDR reuses a port busy only in TIME_WAIT")


def _answer(case: Case) -> str | None:
    probe = case.facts.get("server_probe") or {}
    return probe.get("answer")


def time_wait_holds_port_wire(case: Case) -> Check:
    """The setup: just before bind() the server's TIME-WAIT still holds the old connection (it
    answers the router's probe with an ACK)."""
    answer = _answer(case)
    ok = True if answer == "ack" else False if answer in ("rst", "syn-ack") else None
    probe = case.facts.get("server_probe") or {}
    return Check.judged(
        f"{case.name}-time-wait-holds-port", CITE_SETUP,
        f"at bind() the server's own TIME-WAIT holds the old connection on :{case.facts['port']} (it answers the "
        "router's probe with an ACK); " + ("the old listener is still open" if case.facts["old_alive"] else
                                           "the old listener is gone (its process exited)"),
        f"the server (gvisor) answered the {probe.get('probe', '?').upper()} probe with {answer or 'nothing'}"
        + (f" ({probe['error']})" if probe.get("error") else ""),
        ok, {"port": case.facts["port"], "probe_answer": answer, "server_stack": "gvisor"},
        missing=f"the probe drew no answer ({probe.get('error') or 'none within its wait'}): whether TIME-WAIT held "
                "the port is unknown")


def held(case: Case) -> Held:
    """What held the port at bind(): the TIME-WAIT the probe found (it answered with an ACK), and
    the old listener if its process still runs."""
    from .restart_reuseaddr import Held

    f, answer = case.facts, _answer(case)
    holders = (([("TIME_WAIT", "TIME-WAIT")] if answer == "ack" else [])
               + ([("LISTEN", "LISTEN")] if f["old_alive"] else []))
    return Held(holders, f"; the server's TIME-WAIT answered the probe with {answer or 'nothing'}",
                None if holders else
                f"the probe found no TIME-WAIT on :{f['port']} just before bind() and no listener was left",
                {"server_stack": "gvisor"}, CITE_RULE, " in gVisor")
