"""who-closes-first: the side that closes first holds TIME-WAIT; when both close at once (the FINs
cross) both pass through CLOSING and both hold TIME-WAIT.

Checks RFC 9293 §3.6 / §3.10.7.4 (RFC 793 p.75: FIN-WAIT-1, a FIN arrives: "If our FIN has been
ACKed ... enter TIME-WAIT ... otherwise enter the CLOSING state"; CLOSING, the ACK of our FIN
arrives: "enter the TIME-WAIT state"), RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 (the side that closes
first lingers in TIME-WAIT) and the socket FAQ's rule "先调用close()的一方会进入TIME_WAIT状态"
(reference R-TW-CLOSER). Three connections, one after the other, in one lab. Expectations
follow each host's net.ipv4.tcp_max_tw_buckets: a host with no room (0) skips TIME-WAIT
(tcp_time_wait(), TCPTimeWaitOverflow; reference R-MAX-TW-BUCKETS).

    t      who      step                                   wire                      state
    -- 1. client closes first ---------------------------------------------------------------
    0      client   connect, close()                       FIN ->, <- ACK            client FIN_WAIT2
    0      server   (CLOSE_WAIT) close()                   <- FIN, ACK ->            server LAST_ACK, gone
    0      client                                                                    client TIME_WAIT 60 s
    -- 2. server closes first ---------------------------------------------------------------
    ~0.2   server   close()                                <- FIN, ACK ->            server FIN_WAIT2
    ~0.2   client   (CLOSE_WAIT) close()                   FIN ->, <- ACK            client gone
    ~0.2   server                                                                    server TIME_WAIT 60 s
    -- 3. simultaneous close -----------------------------------------------------------------
    ~0.4   router   hold FIN-carrying segments and pure ACKs, both directions
    ~0.4   both     shutdown(SHUT_WR)                      FIN -> x, x <- FIN (held) both FIN_WAIT1
    ~0.6   router   inject each held FIN toward its peer   FIN ->  <- FIN (crossed)  both CLOSING
                    (each FIN acks nothing new: ack = the receiver's FIN seq, not + 1)
    ~0.7   router   inject each held ACK, lift the holds   ACK ->  <- ACK            both TIME_WAIT 60 s

The pure ACKs are held for a moment only so that CLOSING (one round trip on an unimpeded path)
lasts long enough for sock_diag to see it; the capture proves CLOSING as well: each side received
the peer's FIN while its own FIN was unacknowledged.

With a gVisor end (``--stack client=gvisor`` or ``server=gvisor``) the same cases run with their
waits on the wire, and who holds TIME-WAIT is asked of each end by the router's prober
(_who_closes_first_wire.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check

from . import _who_closes_first_wire as wired
from ._keys.who_closes_first import KEY
from ._premise import time_wait_room
from ._who_closes_first_simultaneous import (
    CITE_NO_ROOM,
    SIMULTANEOUS_CHECKS,
    closing_proof,
    first_fin,
    other_end,
    simultaneous_never_ran,
)

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence

INTENT = ("the side that calls close() first holds TIME-WAIT; a simultaneous close takes both sides through CLOSING "
          "to TIME-WAIT")
PORT = 5000

CASES = ("client-first", "server-first", "simultaneous")

CITE_CLOSER = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 (the side that closes first lingers in TIME-WAIT); "
               "reference R-TW-CLOSER: the side that calls close() first enters TIME-WAIT")
CITE_UNPROVOKED = ("reference R-UNPROVOKED-TWA, R-TW-RST: an in-window RST kills TIME-WAIT unless tcp_rfc1337=1 "
                   "(Linux tcp_timewait_state_process())")


# -- the steps -------------------------------------------------------------------------------

def _precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """tcp_max_tw_buckets=0 is a lesson of its own here (no TIME-WAIT room: the expectations follow
    it); a limit of 1 is not: the simultaneous close needs a second TIME-WAIT in each host while
    the first case's (client-first's, server-first's) is still there."""
    need = {h: 2 for h in ("client", "server")
            if sysctls.get(h, {}).get("net.ipv4.tcp_max_tw_buckets", "2").strip() != "0"}
    return time_wait_room(sysctls, need, "the simultaneous close's, beside the earlier case's",
                          lesson="with 0 (no room at all) the scenario shows a close without TIME-WAIT")


def run(lab: Lab) -> dict:
    if wire.any_gvisor(lab):                  # no sock_diag there: the same cases, on the wire
        return wired.run(lab, PORT)
    lab.peer("server").listen("L", PORT)
    cases = {"client-first": _one_side_first(lab, "client"),        # 1. the client closes first
             "server-first": _one_side_first(lab, "server"),        # 2. the server closes first
             "simultaneous": _simultaneous(lab)}                    # 3. both at once: the FINs cross
    lab.peer("server").close("L")
    return {"cases": cases}


def _open_pair(lab: Lab, name: str) -> int:
    """Connect client socket *name* to the server (its end "s-<name>"): the client's port."""
    r = lab.peer("client").connect(name, lab.host("server").address, PORT)
    lab.peer("server").accept("L", as_=f"s-{name}")
    lab.sampled()               # the sampler follows both ends: their state changes reach the timeline
    return r["local"][1]


def _tuple_in(lab: Lab, host: str, port: int, states: set[str]) -> list:
    """*host*'s sockets of the connection from client port *port*, in *states*."""
    if host == "client":
        return [s for s in lab.sockets("client", states) if s.sport == port]
    return [s for s in lab.sockets("server", states) if s.dport == port]


def _one_side_first(lab: Lab, closer: str) -> dict:
    """Case "<closer>-first": *closer* closes, the other end closes once the FIN is in."""
    case, other = f"{closer}-first", "server" if closer == "client" else "client"
    socks = {"client": case, "server": f"s-{case}"}
    p = _open_pair(lab, case)
    lab.peer(closer).close(socks[closer])
    lab.wait_for(f"the {closer}'s FIN to arrive ({other} CLOSE_WAIT)",
                 lambda: _tuple_in(lab, other, p, {"CLOSE_WAIT"}), timeout_s=5)
    lab.peer(other).close(socks[other])
    lab.wait_for(f"the {closer} connection to finish closing",
                 lambda: not _tuple_in(lab, other, p, {"CLOSE_WAIT", "LAST_ACK"})
                 and not _tuple_in(lab, closer, p, {"FIN_WAIT1", "FIN_WAIT2"}), timeout_s=5)
    return {"client_port": p, "sockets_after": _snapshot(lab, p)}


def _simultaneous(lab: Lab) -> dict:
    """Both ends shut down at once; the router holds each FIN (and, for a moment, each pure ACK)
    and hands it to the peer only once both are sent."""
    server, client, faults = lab.peer("server"), lab.peer("client"), lab.faults
    C, S = lab.host("client"), lab.host("server")
    p = _open_pair(lab, "simultaneous")
    faults.hold("fin-c2s", C, S, has="fin")
    faults.hold("fin-s2c", S, C, has="fin")
    faults.hold("ack-c2s", C, S, flags="ack")       # only to make CLOSING long enough to sample
    faults.hold("ack-s2c", S, C, flags="ack")
    client.shutdown("simultaneous", "wr")
    server.shutdown("s-simultaneous", "wr")
    lab.wait_for("both ends in FIN_WAIT1", lambda: _tuple_in(lab, "client", p, {"FIN_WAIT1"})
                 and _tuple_in(lab, "server", p, {"FIN_WAIT1"}), timeout_s=5)
    fin_c = lab.wait_for("the client's FIN held in the router", lambda: faults.logged("fin-c2s"), timeout_s=5)
    fin_s = lab.wait_for("the server's FIN held in the router", lambda: faults.logged("fin-s2c"), timeout_s=5)
    # injected packets leave through the router's output path: the holds do not see them
    faults.inject([fin_c[0]], S)
    faults.inject([fin_s[0]], C)
    lab.wait_for("both ends in CLOSING", lambda: _tuple_in(lab, "client", p, {"CLOSING"})
                 and _tuple_in(lab, "server", p, {"CLOSING"}), timeout_s=5)
    closing = _snapshot(lab, p)
    ack_c = lab.wait_for("the client's ACK of the server's FIN held", lambda: faults.logged("ack-c2s"), timeout_s=5)
    ack_s = lab.wait_for("the server's ACK of the client's FIN held", lambda: faults.logged("ack-s2c"), timeout_s=5)
    faults.inject([ack_c[0]], S)
    faults.inject([ack_s[0]], C)
    for name in ("fin-c2s", "fin-s2c", "ack-c2s", "ack-s2c"):
        faults.lift(name)
    lab.wait_for("both ends out of CLOSING",
                 lambda: not _tuple_in(lab, "client", p, {"FIN_WAIT1", "CLOSING"})
                 and not _tuple_in(lab, "server", p, {"FIN_WAIT1", "CLOSING"}), timeout_s=10)
    after = _snapshot(lab, p)
    client.close("simultaneous")
    server.close("s-simultaneous")
    return {"client_port": p, "sockets_closing": closing, "sockets_after": after,
            "injected_fins": {"client": fin_c[0].seq, "server": fin_s[0].seq}}


def _snapshot(lab: Lab, port: int) -> dict:
    """sock_diag now: the sockets of the connection from client port *port*, per host."""
    return {"client": [s.to_json() for s in lab.sockets("client") if s.sport == port],
            "server": [s.to_json() for s in lab.sockets("server") if s.dport == port]}


# -- what the checks share ------------------------------------------------------------------------

def _path(conn: Conn, host: str) -> list[str]:
    """The states sock_diag saw of *conn*'s socket in *host*, in order, each change once."""
    out: list[str] = []
    for e in conn.states(host):
        if not out or out[-1] != e.state:
            out.append(e.state)
    return out


@dataclass(frozen=True)
class Seen:
    """Each case's connection (by the client's port), the states sock_diag saw of it in each host,
    and for the simultaneous close what each end's capture proves of CLOSING."""

    ev: Evidence
    cases: dict                              # run()'s facts, per case
    conns: dict[str, Conn]                   # the connection of each case that ran
    paths: dict[str, dict[str, list[str]]]   # case -> host -> its states, in order
    proof: dict[str, dict]                   # host -> closing_proof() of the simultaneous close
    hole: str                                # what the captures' tcpdumps dropped, if anything

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        cases = ev.facts.get("cases", {})
        conns = {name: ev.conn(c["client_port"], PORT) for name, c in cases.items()
                 if name in CASES and (c or {}).get("client_port") is not None}
        paths = {name: {h: _path(c, h) for h in ("client", "server")} for name, c in conns.items()}
        sim = conns.get("simultaneous")
        proof = {h: closing_proof(sim, h) for h in ("client", "server")} if sim else {}
        return cls(ev, cases, conns, paths, proof, ev.capture_hole("client", "server"))

    def room(self, host: str) -> bool:
        """*host* has TIME-WAIT room (its tcp_max_tw_buckets is not 0)."""
        return int(self.ev.sysctl(host, "net.ipv4.tcp_max_tw_buckets", "1") or 1) > 0

    def rel(self, t: float | None) -> str:
        if t is None:
            return "never"
        t0 = min((x.t for segs in self.ev.packets.values() for x in segs), default=t)
        return f"{t - t0:.4f} s"


# -- 1., 2. one side closes first ----------------------------------------------------------------

def _fin_order(s: Seen, case: str, first: str) -> dict:
    """The order of the FINs, from each end's own capture: the first FIN sent, the second end's
    FIN, and the first FIN where the second end saw it; ordered when it arrived before the
    second was sent and the second acknowledges it."""
    conn, second = s.conns[case], other_end(first)
    fin1, fin2 = first_fin(conn, first, first), first_fin(conn, second, second)
    fin1_at_second = first_fin(conn, second, first)
    ordered = bool(fin1 and fin2 and fin1_at_second and fin1_at_second.t <= fin2.t
                   and fin2.ack == (fin1.seq + fin1.length + 1) & 0xFFFFFFFF)
    return {"first": fin1, "second": fin2, "ordered": ordered, "unseen": None in (fin1, fin2, fin1_at_second)}


def _only_first_holds(s: Seen, case: str, first: str) -> Check:
    """The side that closes first holds TIME-WAIT (given room for it), the other never does. With a
    gVisor end, asked of each end on the wire (_who_closes_first_wire.py)."""
    if wire.any_gvisor(s.ev):
        return wired.only_first_holds(s, case, first)
    second, conn = other_end(first), s.conns[case]
    fins, port = _fin_order(s, case, first), conn.client_port
    fin1, fin2 = fins["first"], fins["second"]
    st_first, st_second = s.paths[case][first], s.paths[case][second]
    want_first = s.room(first)
    got_first, got_second = "TIME_WAIT" in st_first, "TIME_WAIT" in st_second
    killed = _killed_unseen(s, case, first, fin2) if want_first and not got_first else None
    got_first = got_first or killed is not None
    overflow = s.ev.counter(first, "TcpExtTCPTimeWaitOverflow")
    states_right = got_first == want_first and not got_second and (want_first or overflow >= 1)
    hole = s.ev.capture_hole(first, second)
    ok = fins["ordered"] and states_right
    if not ok and fins["unseen"] and hole and states_right:
        ok = None           # only the FINs' order is unknown: a capture missed one
    expected = (f"the {first}'s FIN goes first and the {second}'s FIN acknowledges it; "
                + (f"the {first} enters TIME_WAIT, the {second} never does" if want_first else
                   f"the {first} has no TIME-WAIT room (tcp_max_tw_buckets=0): neither end enters TIME_WAIT, "
                   "TCPTimeWaitOverflow rises"))
    observed = (f"pcap: {first} FIN seq={fin1.seq if fin1 else None} "
                f"{'sent first' if fins['ordered'] else 'not clearly first'}; {second} FIN ack="
                f"{fin2.ack if fin2 else None}; sock_diag (client port {port}): "
                f"{first} {' -> '.join(st_first) or 'nothing'}; {second} {' -> '.join(st_second) or 'nothing'}"
                + ("" if want_first else f"; {first} TcpExtTCPTimeWaitOverflow +{overflow}")
                + (_killed_words(first, second, killed) if killed else ""))
    cite = (CITE_CLOSER + ("; " + CITE_UNPROVOKED if killed else "")) if want_first else CITE_NO_ROOM
    return Check.judged(f"{case}-only-{first}-holds-time-wait", cite,
                        expected, observed, ok,
                        {"client_port": port, "fin_order_ok": fins["ordered"],
                         f"{first}_fin_seq": fin1.seq if fin1 else None,
                         f"{first}_fin_t": fin1.t if fin1 else None,
                         f"{second}_fin_t": fin2.t if fin2 else None,
                         f"{second}_fin_ack": fin2.ack if fin2 else None,
                         f"{first}_states": st_first, f"{second}_states": st_second,
                         f"{first}_time_wait": got_first, f"{second}_time_wait": got_second,
                         f"{first}_tw_room": want_first, "TCPTimeWaitOverflow": overflow,
                         f"{first}_time_wait_killed": killed},
                        missing=f"{observed}; a FIN is missing from the captures ({hole})")


def _killed_unseen(s: Seen, case: str, first: str, fin2) -> dict | None:
    """The closer's TIME-WAIT, gone before the sampler's first look: the closer ACKed the other
    end's FIN (which makes TIME-WAIT), and an in-window RST from the other end (seq = the closer's
    RCV.NXT) reached it afterwards - tcp_timewait_state_process() kills on it with tcp_rfc1337=0.
    Seen under TCG: the other end's pure ACK, sent before its FIN, crossed the router after it; the
    closer's TIME-WAIT ACKed that old segment and the already closed end answered with the RST,
    within 3 ms. None when that is not what the closer's capture shows, or tcp_rfc1337=1 (it then
    ignores the RST: TIME-WAIT must have been seen)."""
    if fin2 is None or s.ev.sysctl(first, "net.ipv4.tcp_rfc1337", "0") == "1":
        return None
    port, second = s.conns[case].client_port, other_end(first)
    nxt = (fin2.seq + fin2.length + 1) & 0xFFFFFFFF
    mine = [x for x in s.ev.packets.get(first, []) if port in (x.sport, x.dport)]
    acked = [x.t for x in mine if x.src == s.ev.addresses[first] and x.has("ACK") and not x.has("RST")
             and x.ack == nxt]
    # TIME-WAIT's own answer (an ACK after the final one), then the RST that answered it
    rst = [x.t for x in mine if x.src == s.ev.addresses[second] and x.has("RST") and x.seq == nxt
           and len(acked) >= 2 and acked[0] < acked[1] < x.t]
    return {"rst_t": rst[0], "after_ms": round((rst[0] - acked[0]) * 1000, 1)} if rst else None


def _killed_words(first: str, second: str, killed: dict) -> str:
    return (f"; the {first}'s TIME-WAIT killed {killed['after_ms']} ms after its ACK of the {second}'s FIN, "
            f"before a sample saw it, by the {second}'s RST at its RCV.NXT (a late segment of the {second}'s "
            "drew TIME-WAIT's answer, which the closed end reset: R-UNPROVOKED-TWA)")


def client_first_only_client_holds_time_wait(s: Seen) -> Check:
    return _only_first_holds(s, "client-first", "client")


def server_first_only_server_holds_time_wait(s: Seen) -> Check:
    return _only_first_holds(s, "server-first", "server")


# -- a case that never ran: one failing check in its place ----------------------------------------

def client_first_never_ran(s: Seen) -> Check:
    return Check("client-first-holds-time-wait", CITE_CLOSER, "the client closes first", "the case never ran",
                 False, {})


def server_first_never_ran(s: Seen) -> Check:
    return Check("server-first-holds-time-wait", CITE_CLOSER, "the server closes first", "the case never ran",
                 False, {})


CHECKS = {"client-first": (client_first_only_client_holds_time_wait,),
          "server-first": (server_first_only_server_holds_time_wait,),
          "simultaneous": SIMULTANEOUS_CHECKS}
NEVER_RAN = {"client-first": (client_first_never_ran,), "server-first": (server_first_never_ran,),
             "simultaneous": (simultaneous_never_ran,)}


def checks(ev: Evidence):
    """The cases in the timeline's order; a case that never ran is one failing check. With a gVisor
    host, judged from the wire (_who_closes_first_wire.py)."""
    ran = ev.facts.get("cases", {})
    judged = {**CHECKS, "simultaneous": wired.SIMULTANEOUS_WIRE_CHECKS} if wire.any_gvisor(ev) else CHECKS
    return tuple(fn for case in CASES
                 for fn in (judged if (ran.get(case) or {}).get("client_port") is not None else NEVER_RAN)[case])


SCENARIO = Scenario(
    name="who-closes-first", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=OPTIONAL, port=PORT, precondition=_precondition, key=KEY, stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("client first: client TIME-WAIT", "client-first-*", "client_time_wait"),
        KeyValue("server first: server TIME-WAIT", "server-first-*", "server_time_wait"),
        KeyValue("simultaneous: both TIME-WAIT", "simultaneous-both-hold-time-wait", "time_wait"),
    ))
