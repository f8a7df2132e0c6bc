"""tw-buckets with a gVisor client (``--stack client=gvisor``): the same N + 2 closes and late FINs,
followed on the wire (gVisor has no sock_diag), then every closed 4-tuple probed once from the
router (lab.twprobe.probe_each). Not a scenario (the leading underscore keeps it out of the catalog):
tw_buckets runs and judges through it.

tcp_max_tw_buckets is a Linux sysctl (the scenario's 3 is not set there) and gVisor has no
counterpart: its TIME-WAIT endpoints are not counted against any limit (pkg/tcpip/transport/tcp:
no bucket check where an endpoint enters TIME-WAIT), so every close keeps its state - each late
FIN is ACKed and each 4-tuple still answers as TIME-WAIT does. That is judged from the packets;
the checks of Linux's buckets and counters say not applicable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.verdict import Check

if TYPE_CHECKING:
    from lab.core import Lab

    from .tw_buckets import Seen

__all__ = ["run", "every_close_holds_time_wait", "not_applicable"]

CITE_NO_LIMIT = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: every connection closed first lingers in TIME-WAIT; "
                 "Linux's tcp_max_tw_buckets lets it skip the state, gVisor has no such limit (its TIME-WAIT "
                 "endpoints are not counted); measured by the router's probe, reference R-TW-PROBE")


def run(lab: Lab, port: int, n: int) -> dict:
    """n connections closed one at a time, the ACK of each FIN waited for on the wire; the server's
    late FINs; each 4-tuple probed once after their answers."""
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", port, backlog=64)
    ports = []
    for i in range(n):
        ports.append(client.connect(f"c{i}", lab.host("server").address, port).result["local"][1])
        server.accept("L", as_=f"s{i}")
    for i, p in enumerate(ports):                       # one at a time, as on Linux
        client.close(f"c{i}")
        lab.wait_for(f"the server's ACK of c{i}'s FIN (on the wire)",
                     lambda p=p: wire.fin_acked(lab, "server", p, port), timeout_s=5)
    for i in range(n):                                  # the server's FINs, all late
        server.close(f"s{i}")
    lab.wait_for("every server FIN answered (ACK or RST, on the wire)",
                 lambda: all(wire.fin_answered(wire.at_router(lab, "server"), port, p) for p in ports), timeout_s=10)
    probed = twprobe.probe_each(lab, "client", "server", [(p, port) for p in ports])
    server.close("L")
    return {"limit": None, "client_ports": ports, "after_close": [], "client_probe_each": probed}


def every_close_holds_time_wait(s: Seen) -> Check:
    """Each closed 4-tuple answers the router's probe as TIME-WAIT does (an ACK), after its late FIN."""
    probed = s.ev.facts.get("client_probe_each") or {}
    answers = {p: (probed.get("answers", {}).get(str(p)) or {}).get("answer", "not probed") for p in s.ports}
    held = [p for p, a in answers.items() if a == "ack"]
    gone = [p for p, a in answers.items() if a in ("rst", "syn-ack")]
    observed = (f"router prober ({probed.get('probe')} probe, once each after the late FINs): {answers}; "
                f"{len(held)} of {len(s.ports)} held")
    ok = None if len(held) + len(gone) < len(s.ports) else (not gone and len(s.ports) == s.n)
    return Check.judged(
        "every-close-holds-time-wait", CITE_NO_LIMIT,
        f"no bucket limit: all {s.n} closed connections hold TIME-WAIT (each answers the probe with an ACK)",
        observed, ok, {"held": len(held), "gone": gone, "answers": {str(p): a for p, a in answers.items()},
                       "stack": wire.stack_of(s.ev, "client")},
        missing=f"{observed}: some 4-tuples were not probed or did not answer")


def not_applicable(name: str, cite: str, expected: str) -> Check:
    return Check.not_applicable(name, cite, expected, "the client runs gVisor: tcp_max_tw_buckets is a Linux sysctl "
                                "(not set there) and sock_diag and nstat see Linux's sockets only; "
                                "every-close-holds-time-wait judges gVisor from the wire")
