"""who-closes-first with a gVisor host (``--stack client=gvisor`` or ``server=gvisor``): the same
three cases, followed on the wire (the router's captures) instead of through sock_diag, which
gVisor lacks. Who holds TIME-WAIT is asked of each end by the router's prober (lab.twprobe) once
the case's close is done: an end that answers with an ACK holds the 4-tuple in TIME-WAIT, one that
answers with a RST (or a listener's SYN-ACK, which the prober then resets) does not. CLOSING is
proved from each end's capture alone (closing_proof: the peer's FIN arrived while the end's own
was unacknowledged, the end acknowledged it, then the ACK of its own FIN came). Not a scenario
(the leading underscore keeps it out of the catalog): who_closes_first runs and judges through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.verdict import Check

from ._who_closes_first_simultaneous import (
    CITE_BOTH_TW,
    CITE_CLOSING,
    CITE_NO_ROOM,
    other_end,
    simultaneous_fins_cross,
)

if TYPE_CHECKING:
    from lab.core import Lab

    from .who_closes_first import Seen

__all__ = ["run", "only_first_holds", "SIMULTANEOUS_WIRE_CHECKS", "HOLDS", "GONE"]

HOLDS, GONE = ("ack",), ("rst", "syn-ack")       # a probe's answers: TIME-WAIT holds it, nothing does
CITE_CLOSER = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 (the side that closes first lingers in TIME-WAIT); "
               "reference R-TW-CLOSER; asked from the wire (reference R-TW-PROBE)")
GVISOR_RCV = "gVisor pkg/tcpip/transport/tcp/rcv.go (*receiver).consumeSegment()"
CITE_CLOSING_WIRE = (f"{CITE_CLOSING}; {GVISOR_RCV}: a FIN in StateFinWait1 that does not acknowledge our FIN: "
                     "StateClosing (\"simultaneous close, expecting a final ACK\")")
CITE_BOTH_TW_WIRE = f"{CITE_BOTH_TW}; {GVISOR_RCV}: the ACK of our FIN in StateClosing: StateTimeWait"


def run(lab: Lab, port: int) -> dict:
    lab.peer("server").listen("L", port)
    cases = {"client-first": _one_side_first(lab, port, "client"),
             "server-first": _one_side_first(lab, port, "server"),
             "simultaneous": _simultaneous(lab, port)}
    lab.peer("server").close("L")
    return {"cases": cases, "wire": True}


def _open_pair(lab: Lab, port: int, name: str) -> int:
    r = lab.peer("client").connect(name, lab.host("server").address, port)
    lab.peer("server").accept("L", as_=f"s-{name}")
    return r["local"][1]


def _probes(lab: Lab, cport: int, port: int) -> dict:
    return {"client": twprobe.probe_once(lab, "client", "server", cport, port),
            "server": twprobe.probe_once(lab, "server", "client", port, cport)}


def _one_side_first(lab: Lab, port: int, closer: str) -> dict:
    """Case "<closer>-first": *closer* closes; the other end closes once the FIN is acknowledged;
    when the closer's ACK of the second FIN has crossed the router, each end is probed."""
    case, other = f"{closer}-first", other_end(closer)
    socks = {"client": case, "server": f"s-{case}"}
    cport = _open_pair(lab, port, case)
    mine = {"client": (cport, port), "server": (port, cport)}
    lab.peer(closer).close(socks[closer])
    lab.wait_for(f"the {other}'s ACK of the {closer}'s FIN (on the wire)",
                 lambda: wire.fin_acked(lab, closer, *mine[closer]), timeout_s=5)
    lab.peer(other).close(socks[other])
    lab.wait_for(f"the {closer}'s ACK of the {other}'s FIN (on the wire)",
                 lambda: wire.fin_acked(lab, other, *mine[other]), timeout_s=5)
    return {"client_port": cport, "probes": _probes(lab, cport, port)}


def _simultaneous(lab: Lab, port: int) -> dict:
    """who_closes_first's simultaneous close, waited for on the router's holds instead of sock_diag:
    both FINs held and handed across, then both ACKs (each end's ACK of the peer's FIN, sent from
    CLOSING) held and handed across; then each end is probed."""
    server, client, faults = lab.peer("server"), lab.peer("client"), lab.faults
    C, S = lab.host("client"), lab.host("server")
    cport = _open_pair(lab, port, "simultaneous")
    faults.hold("fin-c2s", C, S, has="fin")
    faults.hold("fin-s2c", S, C, has="fin")
    faults.hold("ack-c2s", C, S, flags="ack")
    faults.hold("ack-s2c", S, C, flags="ack")
    client.shutdown("simultaneous", "wr")
    server.shutdown("s-simultaneous", "wr")
    fin_c = lab.wait_for("the client's FIN held in the router", lambda: faults.logged("fin-c2s"), timeout_s=5)
    fin_s = lab.wait_for("the server's FIN held in the router", lambda: faults.logged("fin-s2c"), timeout_s=5)
    faults.inject([fin_c[0]], S)
    faults.inject([fin_s[0]], C)
    ack_c = lab.wait_for("the client's ACK of the server's FIN held", lambda: faults.logged("ack-c2s"), timeout_s=5)
    ack_s = lab.wait_for("the server's ACK of the client's FIN held", lambda: faults.logged("ack-s2c"), timeout_s=5)
    faults.inject([ack_c[0]], S)
    faults.inject([ack_s[0]], C)
    for name in ("fin-c2s", "fin-s2c", "ack-c2s", "ack-s2c"):
        faults.lift(name)
    lab.wait_for("both ACKs handed across (on the wire)",
                 lambda: wire.fin_acked(lab, "client", cport, port) and wire.fin_acked(lab, "server", port, cport),
                 timeout_s=5)
    probes = _probes(lab, cport, port)
    client.close("simultaneous")
    server.close("s-simultaneous")
    return {"client_port": cport, "probes": probes,
            "injected_fins": {"client": fin_c[0].seq, "server": fin_s[0].seq}}


# -- judging ----------------------------------------------------------------------------------

def room(s: Seen, host: str) -> bool:
    """*host* can hold TIME-WAIT: a gVisor host always (no such limit is set there); a Linux host
    unless its tcp_max_tw_buckets is 0."""
    return wire.stack_of(s.ev, host) == "gvisor" or s.room(host)


def _answer(s: Seen, case: str, host: str) -> str | None:
    probe = ((s.cases.get(case) or {}).get("probes") or {}).get(host) or {}
    return probe.get("answer")


def _held(answer: str | None) -> bool | None:
    """True: the probe found TIME-WAIT; False: nothing held the 4-tuple; None: no answer to judge."""
    return True if answer in HOLDS else False if answer in GONE else None


def _said(s: Seen, host: str, answer: str | None) -> str:
    return f"{host} ({wire.stack_of(s.ev, host)}) answered the {_probe_kind(s, host)} probe with {answer or 'nothing'}"


def _probe_kind(s: Seen, host: str) -> str:
    return twprobe.PROBE_FOR.get(wire.stack_of(s.ev, host), "?").upper()


def only_first_holds(s: Seen, case: str, first: str) -> Check:
    from .who_closes_first import _fin_order

    second = other_end(first)
    fins = _fin_order(s, case, first)
    want = {first: room(s, first), second: False}
    held = {h: _held(_answer(s, case, h)) for h in (first, second)}
    expected = (f"the {first}'s FIN goes first and the {second}'s FIN acknowledges it; the {first} "
                + ("holds the 4-tuple in TIME-WAIT (answers the router's probe with an ACK)" if want[first] else
                   "has no TIME-WAIT room (tcp_max_tw_buckets=0): it answers with a RST")
                + f", the {second} does not (a RST, or its listener's SYN-ACK)")
    observed = (f"pcap: the {first}'s FIN {'went first' if fins['ordered'] else 'not clearly first'}; probes: "
                + "; ".join(_said(s, h, _answer(s, case, h)) for h in (first, second)))
    ok = fins["ordered"] and held == want
    if None in held.values():                   # a probe unanswered: only a wrong FIN order can judge
        ok = False if not fins["ordered"] and not fins["unseen"] else None
    elif not ok and held == want and fins["unseen"] and s.hole:
        ok = None                               # only the FINs' order is unknown: a capture missed one
    return Check.judged(f"{case}-only-{first}-holds-time-wait", CITE_CLOSER if want[first] else CITE_NO_ROOM,
                        expected, observed, ok,
                        {"client_port": (s.cases.get(case) or {}).get("client_port"), "fin_order_ok": fins["ordered"],
                         f"{first}_time_wait": held[first], f"{second}_time_wait": held[second],
                         f"{first}_tw_room": want[first], "stacks": {h: wire.stack_of(s.ev, h) for h in held},
                         "answers": {h: _answer(s, case, h) for h in held}},
                        missing=f"{observed}; a probe went unanswered or a capture lacks a FIN ({s.hole or 'no hole'})")


def simultaneous_closing_from_the_captures(s: Seen) -> Check:
    """Both pass through CLOSING, as each end's capture proves (gVisor has no sock_diag to ask)."""
    proof = s.proof
    lacking = [h for h, p in proof.items() if not p["proved"] and None in (
        p.get("my_fin_seq"), p.get("peer_fin_seq"), p.get("my_ack_of_peer_fin_t"), p.get("my_fin_acked_t"))]
    ok = all(p["proved"] for p in proof.values()) if not (lacking and s.hole) else None
    return Check.judged(
        "simultaneous-both-closing", CITE_CLOSING_WIRE,
        "each end receives the peer's FIN while its own FIN is unacknowledged (the FIN's ack = its own FIN's "
        "seq, not seq+1), ACKs it, and then gets the ACK of its own FIN: CLOSING, from its capture",
        "; ".join(f"{h} ({wire.stack_of(s.ev, h)}): peer FIN ack={p['peer_fin_ack']} vs own FIN seq={p['my_fin_seq']}, "
                  f"own FIN {'already' if p.get('my_fin_acked_before_peer_fin') else 'not yet'} acked, its ACK of "
                  f"the peer's FIN {'sent' if p.get('my_ack_of_peer_fin_t') else 'not seen'}: capture proof "
                  f"{'holds' if p['proved'] else 'fails'}" for h, p in proof.items()),
        ok, {"capture": proof}, missing=f"the captures lack segments of the close at {lacking} ({s.hole})")


def simultaneous_time_wait_on_the_wire(s: Seen) -> Check:
    want = {h: room(s, h) for h in ("client", "server")}
    held = {h: _held(_answer(s, "simultaneous", h)) for h in want}
    return Check.judged(
        "simultaneous-both-hold-time-wait", CITE_BOTH_TW_WIRE if all(want.values()) else CITE_NO_ROOM,
        "; ".join(f"{h} {'holds TIME-WAIT (answers the probe with an ACK)' if want[h] else 'has no TIME-WAIT room'}"
                  for h in want),
        "probes: " + "; ".join(_said(s, h, _answer(s, "simultaneous", h)) for h in want),
        None if None in held.values() else held == want,
        {"time_wait": held, "tw_room": want, "answers": {h: _answer(s, "simultaneous", h) for h in want}},
        missing="a probe went unanswered: who holds TIME-WAIT is unknown")


SIMULTANEOUS_WIRE_CHECKS = (simultaneous_fins_cross, simultaneous_closing_from_the_captures,
                            simultaneous_time_wait_on_the_wire)
