"""retransmitted-fin with a gVisor server (``--stack server=gvisor``): the same orphan in LAST-ACK,
every final ACK lost, its FINs followed on the wire (gVisor has no sock_diag). Not a scenario (the
leading underscore keeps it out of the catalog): retransmitted_fin runs and judges through it.

tcp_orphan_retries is a Linux sysctl (the scenario's 3 is not set there) and gVisor has no orphan
limit: a closed endpoint retransmits its FIN as any other segment, the RTO doubling up to its
maximum, and gives up only after the stack's TCPMaxRetriesOption (15 by default, minutes at that
backoff) - far beyond a run. So the run watches WATCH_FINS FINs (about 3 s) and stops; the
schedule is judged from server.pcap (RFC 6298 §5.5: RTO doubling; RFC 8985: a tail-loss probe
first), the checks of Linux's orphan budget say not applicable, and whether the give-up is silent
is not applicable because it did not happen within the watch (said with what was seen).
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.verdict import Check

from ._lost_ack_wire import server_fin_schedule
from ._steps import client_closes_first

if TYPE_CHECKING:
    from lab.core import Lab

    from .retransmitted_fin import Seen

__all__ = ["run", "client_probe", "fin_schedule", "orphan_unseen", "no_budget_count", "no_budget_end",
           "give_up_unseen", "WATCH_FINS"]

WATCH_FINS = 6               # the first FIN and five retransmissions: 3.2 s here (gaps 0.2, 0.2, 0.4, 0.8, 1.6 s)
WATCH_S = 20.0               # the most the run waits for them
CITE_GVISOR = ("RFC 1122 §4.2.3.5 (R2: eventually close); gVisor retransmitTimerExpired() "
               "(pkg/tcpip/transport/tcp/snd.go): no orphan-specific limit, TCPMaxRetriesOption and the RTO cap")
NO_LIMIT = ("tcp_orphan_retries is a Linux sysctl, not set there, and gVisor has no orphan limit: a closed "
            "endpoint retransmits its FIN like any segment until TCPMaxRetriesOption (15) retransmissions, "
            "about 15 minutes at an RTO doubling from 200 ms to its 120 s cap, beyond the run's watch")


def run(lab: Lab, port: int) -> dict:
    """Connect, the client closes first, every ACK from the client dropped, the server closes (an
    orphan in LAST-ACK): its FINs watched on the wire until WATCH_FINS of them."""
    server, client = client_closes_first(lab, port)
    cport = next(r for r in client.results if r.op == "connect")["local"][1]
    lab.faults.drop("client-acks", lab.host("client"), lab.host("server"), flags="ack")
    closed = server.close("conn")                                # <- FIN; the endpoint is orphaned
    lab.wait_for(f"{WATCH_FINS} FINs from the orphaned server (on the wire)",
                 lambda: len(wire.fins(wire.at_router(lab, "server"), port, cport)) >= WATCH_FINS,
                 timeout_s=WATCH_S)
    time.sleep(0.5)
    watched = time.time()
    client_end = lab.sockets("client")
    server.close("L")
    return {"server_close_ok": closed.ok, "server_close_state_before": closed.result.get("state_before"),
            "server_gone_seen_at": None, "watched_until": watched, "server_connections_at_end": [],
            "client_sockets_at_end": [s.to_json() for s in client_end], "client_port": cport,
            **client_probe(lab, cport, port)}


def client_probe(lab: Lab, cport: int, port: int) -> dict:
    """A gVisor client has no sock_diag: the router's prober asks whether it still holds TIME-WAIT
    (``client_probe_at_end``); nothing for a Linux client."""
    if wire.stack_of(lab, "client") != "gvisor":
        return {}
    return {"client_probe_at_end": twprobe.probe_once(lab, "client", "server", cport, port)}


def fin_schedule(s: Seen) -> Check:
    """The orphan's FINs from server.pcap: one sequence number, RTO intervals doubling (the first gap a
    RACK-TLP probe when it is shorter than half the next) - lost-ack's rule for a gVisor server."""
    got = server_fin_schedule(SimpleNamespace(ev=s.ev, fin_times=[f.t for f in s.fins], fins_srv=s.fins))
    t0 = s.fins[0].t if s.fins else 0.0
    return replace(got, name="tlp-then-rto-doubling",
                   values={**got.values, "fin_times_ms": [round((f.t - t0) * 1000, 1) for f in s.fins]})


def _not_applicable(name: str, expected: str, why: str = NO_LIMIT) -> Check:
    return Check.not_applicable(name, CITE_GVISOR, expected, f"the server runs gVisor: {why}")


def orphan_unseen(s: Seen) -> Check:
    return _not_applicable("server-orphaned-in-last-ack", "close() in CLOSE_WAIT leaves an orphan in LAST_ACK, "
                           "no file (sock_diag)", wire.NO_SOCK_DIAG)


def no_budget_count(s: Seen) -> Check:
    return _not_applicable("orphan-retries-count", "as many RTO retransmissions as tcp_orphan_retries' budget allows")


def no_budget_end(s: Seen) -> Check:
    return _not_applicable("give-up-when-budget-spent", "the orphan goes at the first timeout past the budget")


def give_up_unseen(s: Seen) -> Check:
    """The give-up did not happen within the watch: what was seen instead."""
    last = round(s.fins[-1].t - s.fins[0].t, 3) if s.fins else None
    rsts = s.conn.segments("server", sender="server", flag="RST")
    return Check.not_applicable(
        "give-up-is-silent", CITE_GVISOR, "no RST and no further FIN once the orphan gives up",
        f"the server runs gVisor and had not given up when the run stopped watching: {len(s.fins)} FINs, the last "
        f"+{last} s after the first, {len(rsts)} RSTs; {NO_LIMIT}",
        {"fins": len(s.fins), "last_fin_after_s": last, "server_rsts": len(rsts)})
