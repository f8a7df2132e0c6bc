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
"""

from __future__ import annotations

from lab.core import Lab
from lab.evidence import Evidence
from lab.packets import Segment
from lab.shaping import OPTIONAL
from lab.verdict import Check

from ._premise import time_wait_room

NAME = "who-closes-first"
INTENT = "the side that calls close() first holds TIME-WAIT; a simultaneous close takes both sides through CLOSING to TIME-WAIT"
SHAPING = OPTIONAL
PORT = 5000

CASES = ("client-first", "server-first", "simultaneous")

CITE_CLOSER = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 (the side that closes first lingers in TIME-WAIT); "
               "reference R-TW-CLOSER: the side that calls close() first enters TIME-WAIT")
CITE_CROSS = ("RFC 9293 §3.6 (simultaneous close, figure 13 / RFC 793 figure 14): both sides send FIN "
              "before receiving the other's")
CITE_CLOSING = ("RFC 9293 §3.10.7.4 (RFC 793 p.75): FIN-WAIT-1, a FIN arrives whose ACK does not cover "
                "our FIN: enter CLOSING; Linux tcp_fin() (FIN_WAIT1 -> TCP_CLOSING)")
CITE_BOTH_TW = ("RFC 9293 §3.10.7.4 (RFC 793 p.73): CLOSING, the ACK of our FIN arrives: enter TIME-WAIT; "
                "Linux tcp_rcv_state_process() TCP_CLOSING -> tcp_time_wait(); reference R-CLOSING")
CITE_NO_ROOM = "reference R-MAX-TW-BUCKETS: tcp_max_tw_buckets exhausted: the closing socket skips TIME-WAIT (tcp_time_wait(), TCPTimeWaitOverflow)"


# -- the steps -------------------------------------------------------------------------------

def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """tcp_max_tw_buckets=0 is a lesson of its own here (no TIME-WAIT room: the expectations follow
    it); a limit of 1 is not: the simultaneous close needs a second TIME-WAIT in each host while
    the first case's (client-first's, server-first's) is still there."""
    need = {h: 2 for h in ("client", "server")
            if sysctls.get(h, {}).get("net.ipv4.tcp_max_tw_buckets", "2").strip() != "0"}
    return time_wait_room(sysctls, need, "the simultaneous close's, beside the earlier case's",
                          lesson="with 0 (no room at all) the scenario shows a close without TIME-WAIT")


def run(lab: Lab) -> dict:
    server, client = lab.peer("server"), lab.peer("client")
    C, S = lab.host("client"), lab.host("server")
    server.listen("L", PORT)
    cases: dict[str, dict] = {}

    def open_pair(name: str) -> int:
        r = client.connect(name, S.address, PORT)
        server.accept("L", as_=f"s-{name}")
        port = r["local"][1]
        cases[name] = {"client_port": port}
        lab.sampled()           # the sampler follows both ends: their state changes reach the timeline
        return port

    def tuple_in(host: str, port: int, states: set[str]) -> list:
        if host == "client":
            return [s for s in lab.sockets("client", states) if s.sport == port]
        return [s for s in lab.sockets("server", states) if s.dport == port]

    def one_side_first(closer: str) -> None:
        """Case "<closer>-first": *closer* closes, the other end closes once the FIN is in."""
        case, other = f"{closer}-first", "server" if closer == "client" else "client"
        peers, socks = {"client": client, "server": server}, {"client": case, "server": f"s-{case}"}
        p = open_pair(case)
        peers[closer].close(socks[closer])
        lab.wait_for(f"the {closer}'s FIN to arrive ({other} CLOSE_WAIT)",
                     lambda: tuple_in(other, p, {"CLOSE_WAIT"}), timeout_s=5)
        peers[other].close(socks[other])
        lab.wait_for(f"the {closer} connection to finish closing",
                     lambda: not tuple_in(other, p, {"CLOSE_WAIT", "LAST_ACK"})
                     and not tuple_in(closer, p, {"FIN_WAIT1", "FIN_WAIT2"}), timeout_s=5)
        cases[case]["sockets_after"] = _snapshot(lab, p)

    one_side_first("client")                    # 1. the client closes first
    one_side_first("server")                    # 2. the server closes first

    # 3. both close at once: the FINs cross in the router
    p = open_pair("simultaneous")
    faults = lab.faults
    faults.hold("fin-c2s", C, S, has="fin")
    faults.hold("fin-s2c", S, C, has="fin")
    faults.hold("ack-c2s", C, S, flags="ack")       # only to make CLOSING long enough to sample
    faults.hold("ack-s2c", S, C, flags="ack")
    client.shutdown("simultaneous", "wr")
    server.shutdown("s-simultaneous", "wr")
    lab.wait_for("both ends in FIN_WAIT1",
                 lambda: tuple_in("client", p, {"FIN_WAIT1"}) and tuple_in("server", p, {"FIN_WAIT1"}),
                 timeout_s=5)
    fin_c = lab.wait_for("the client's FIN held in the router", lambda: faults.logged("fin-c2s"), timeout_s=5)
    fin_s = lab.wait_for("the server's FIN held in the router", lambda: faults.logged("fin-s2c"), timeout_s=5)
    # injected packets leave through the router's output path: the holds do not see them
    faults.inject([fin_c[0]], S)
    faults.inject([fin_s[0]], C)
    lab.wait_for("both ends in CLOSING",
                 lambda: tuple_in("client", p, {"CLOSING"}) and tuple_in("server", p, {"CLOSING"}),
                 timeout_s=5)
    closing = _snapshot(lab, p)
    ack_c = lab.wait_for("the client's ACK of the server's FIN held", lambda: faults.logged("ack-c2s"), timeout_s=5)
    ack_s = lab.wait_for("the server's ACK of the client's FIN held", lambda: faults.logged("ack-s2c"), timeout_s=5)
    faults.inject([ack_c[0]], S)
    faults.inject([ack_s[0]], C)
    for name in ("fin-c2s", "fin-s2c", "ack-c2s", "ack-s2c"):
        faults.lift(name)
    lab.wait_for("both ends out of CLOSING",
                 lambda: not tuple_in("client", p, {"FIN_WAIT1", "CLOSING"})
                 and not tuple_in("server", p, {"FIN_WAIT1", "CLOSING"}), timeout_s=10)
    cases["simultaneous"].update(sockets_closing=closing, sockets_after=_snapshot(lab, p),
                                 injected_fins={"client": fin_c[0].seq, "server": fin_s[0].seq})
    client.close("simultaneous")
    server.close("s-simultaneous")
    server.close("L")
    return {"cases": cases}


def _snapshot(lab: Lab, port: int) -> dict:
    """sock_diag now: the sockets of the connection from client port *port*, per host."""
    return {"client": [s.to_json() for s in lab.sockets("client") if s.sport == port],
            "server": [s.to_json() for s in lab.sockets("server") if s.dport == port]}


# -- the judgement ----------------------------------------------------------------------------

def _states(ev: Evidence, host: str, port: int) -> list[str]:
    """The states sock_diag saw for the connection from client port *port*, in order."""
    out = []
    for e in ev.states(host):
        s = e.data["socket"]
        mine = (s["sport"] == port and s["dport"] == PORT) if host == "client" else \
               (s["sport"] == PORT and s["dport"] == port)
        if mine and (not out or out[-1] != s["state"]):
            out.append(s["state"])
    return out


def _conn(ev: Evidence, at: str, port: int) -> list[Segment]:
    return [s for s in ev.packets.get(at, []) if port in (s.sport, s.dport) and PORT in (s.sport, s.dport)]


def _fins(ev: Evidence, at: str, src: str, port: int) -> list[Segment]:
    return [s for s in _conn(ev, at, port) if s.src == ev.addresses[src] and s.has("FIN")]


def _room(ev: Evidence, host: str) -> bool:
    return int(ev.sysctl(host, "net.ipv4.tcp_max_tw_buckets", "1") or 1) > 0


def _before(a: int, b: int) -> bool:
    """Sequence-space a < b (RFC 9293 §3.4, mod 2^32)."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def check(ev: Evidence) -> list[Check]:
    cases = ev.facts.get("cases", {})
    checks = [_check_one_first(ev, "client-first", "client", "server", cases),
              _check_one_first(ev, "server-first", "server", "client", cases)]
    checks += _check_simultaneous(ev, cases)
    return checks


def _check_one_first(ev: Evidence, case: str, first: str, second: str, cases: dict) -> Check:
    port = (cases.get(case) or {}).get("client_port")
    if port is None:
        return Check(f"{case}-holds-time-wait", CITE_CLOSER, f"the {first} closes first", "the case never ran",
                     False, {})
    # the order of the FINs, from each end's own capture
    first_fin = (_fins(ev, first, first, port) or [None])[0]
    second_fin_sent = (_fins(ev, second, second, port) or [None])[0]
    first_fin_at_second = (_fins(ev, second, first, port) or [None])[0]
    ordered = bool(first_fin and second_fin_sent and first_fin_at_second
                   and first_fin_at_second.t <= second_fin_sent.t
                   and second_fin_sent.ack == (first_fin.seq + first_fin.length + 1) & 0xFFFFFFFF)
    st_first, st_second = _states(ev, first, port), _states(ev, second, port)
    want_first, want_second = _room(ev, first), False
    got_first, got_second = "TIME_WAIT" in st_first, "TIME_WAIT" in st_second
    overflow = ev.counter(first, "TcpExtTCPTimeWaitOverflow")
    ok = ordered and got_first == want_first and got_second == want_second \
        and (want_first or overflow >= 1)
    unseen = None in (first_fin, second_fin_sent, first_fin_at_second)
    hole = ev.capture_hole(first, second)
    if not ok and unseen and hole and got_first == want_first and got_second == want_second \
            and (want_first or overflow >= 1):
        ok = None           # only the FINs' order is unknown: a capture missed one
    expected = (f"the {first}'s FIN goes first and the {second}'s FIN acknowledges it; "
                + (f"the {first} enters TIME_WAIT, the {second} never does" if want_first else
                   f"the {first} has no TIME-WAIT room (tcp_max_tw_buckets=0): neither end enters TIME_WAIT, "
                   "TCPTimeWaitOverflow rises"))
    observed = (f"pcap: {first} FIN seq={first_fin.seq if first_fin else None} "
                f"{'sent first' if ordered else 'not clearly first'}; {second} FIN ack="
                f"{second_fin_sent.ack if second_fin_sent else None}; sock_diag (client port {port}): "
                f"{first} {' -> '.join(st_first) or 'nothing'}; {second} {' -> '.join(st_second) or 'nothing'}"
                + ("" if want_first else f"; {first} TcpExtTCPTimeWaitOverflow +{overflow}"))
    return Check.judged(f"{case}-only-{first}-holds-time-wait", CITE_CLOSER if want_first else CITE_NO_ROOM,
                 expected, observed, ok,
                 {"client_port": port, "fin_order_ok": ordered,
                  f"{first}_fin_seq": first_fin.seq if first_fin else None,
                  f"{first}_fin_t": first_fin.t if first_fin else None,
                  f"{second}_fin_t": second_fin_sent.t if second_fin_sent else None,
                  f"{second}_fin_ack": second_fin_sent.ack if second_fin_sent else None,
                  f"{first}_states": st_first, f"{second}_states": st_second,
                  f"{first}_time_wait": got_first, f"{second}_time_wait": got_second,
                  f"{first}_tw_room": want_first, "TCPTimeWaitOverflow": overflow},
                 missing=f"{observed}; a FIN is missing from the captures ({hole})")


def _closing_proof(ev: Evidence, me: str, peer: str, port: int) -> dict:
    """From *me*'s capture: my FIN, the peer's FIN arriving while mine was unacknowledged and not
    covering it, my ACK of it, then the ACK of my FIN."""
    mine = (_fins(ev, me, me, port) or [None])[0]
    theirs = (_fins(ev, me, peer, port) or [None])[0]
    out = {"my_fin_seq": mine.seq if mine else None, "my_fin_t": mine.t if mine else None,
           "peer_fin_seq": theirs.seq if theirs else None, "peer_fin_t": theirs.t if theirs else None,
           "peer_fin_ack": theirs.ack if theirs else None}
    if not mine or not theirs:
        out["proved"] = False
        return out
    my_end = (mine.seq + mine.length + 1) & 0xFFFFFFFF
    from_peer = [s for s in _conn(ev, me, port) if s.src == ev.addresses[peer]]
    acked_before = [s for s in from_peer if s.t < theirs.t and s.has("ACK") and not _before(s.ack, my_end)]
    my_ack = next((s for s in _conn(ev, me, port) if s.src == ev.addresses[me] and s.t >= theirs.t
                   and s.has("ACK") and s.ack == (theirs.seq + theirs.length + 1) & 0xFFFFFFFF), None)
    fin_acked = next((s for s in from_peer if s.t > theirs.t and s.has("ACK")
                      and not _before(s.ack, my_end)), None)
    out.update(sent_before_peer_fin_arrived=mine.t < theirs.t,
               peer_fin_covers_my_fin=not _before(theirs.ack, my_end),
               my_fin_acked_before_peer_fin=bool(acked_before),
               my_ack_of_peer_fin_t=my_ack.t if my_ack else None,
               my_fin_acked_t=fin_acked.t if fin_acked else None)
    out["proved"] = (mine.t < theirs.t and _before(theirs.ack, my_end) and not acked_before
                     and my_ack is not None and fin_acked is not None)
    return out


def _check_simultaneous(ev: Evidence, cases: dict) -> list[Check]:
    port = (cases.get("simultaneous") or {}).get("client_port")
    if port is None:
        return [Check("simultaneous-close", CITE_CROSS, "both ends close at once", "the case never ran", False, {})]
    checks = []
    proof = {h: _closing_proof(ev, h, "server" if h == "client" else "client", port) for h in ("client", "server")}

    hole = ev.capture_hole("client", "server")
    # 1. the FINs crossed: each was sent before the other's arrived
    crossed = all(p.get("sent_before_peer_fin_arrived") for p in proof.values())
    unseen = any(p["my_fin_seq"] is None or p["peer_fin_seq"] is None for p in proof.values())
    observed = "pcap: " + "; ".join(
        f"{h} sent FIN seq={p['my_fin_seq']} at {_rel(p['my_fin_t'], ev)}, the peer's FIN arrived at "
        f"{_rel(p['peer_fin_t'], ev)}" for h, p in proof.items())
    checks.append(Check.judged(
        "simultaneous-fins-cross", CITE_CROSS,
        "each end sends its FIN before the other's FIN reaches it", observed,
        None if not crossed and unseen and hole else crossed,
        {h: {k: proof[h].get(k) for k in ("my_fin_seq", "my_fin_t", "peer_fin_t")} for h in proof},
        missing=f"{observed}; a FIN is missing from the captures ({hole})"))

    # 2. both pass through CLOSING: from the capture, and seen by sock_diag
    st = {h: _states(ev, h, port) for h in ("client", "server")}
    seen = {h: "CLOSING" in st[h] for h in st}
    proved = {h: proof[h]["proved"] for h in proof}
    ok, missing = _closing_judged(ev, port, proof, seen, hole)
    checks.append(Check.judged(
        "simultaneous-both-closing", CITE_CLOSING,
        "each end receives the peer's FIN while its own FIN is unacknowledged (the FIN's ack = its own "
        "FIN's seq, not seq+1), ACKs it and enters CLOSING (sock_diag), until the ACK of its FIN comes",
        "; ".join(
            f"{h}: peer FIN ack={proof[h]['peer_fin_ack']} vs own FIN seq={proof[h]['my_fin_seq']} "
            f"({'does not cover' if not proof[h].get('peer_fin_covers_my_fin') else 'covers'} it), own FIN "
            f"{'already' if proof[h].get('my_fin_acked_before_peer_fin') else 'not yet'} acked, "
            f"capture proof {'holds' if proved[h] else 'fails'}; sock_diag "
            + ("saw CLOSING" if seen[h] else "did not sample CLOSING") for h in proof),
        ok, {"capture": proof, "sock_diag_states": st, "sock_diag_saw_closing": seen}, missing=missing))

    # 3. both hold TIME-WAIT (each with room for it)
    want = {h: _room(ev, h) for h in st}
    got = {h: "TIME_WAIT" in st[h] for h in st}
    after = (cases["simultaneous"].get("sockets_after") or {})
    left = {h: [(s["state"], s["expires_ms"]) for s in after.get(h, [])] for h in ("client", "server")}
    checks.append(Check(
        "simultaneous-both-hold-time-wait", CITE_BOTH_TW if all(want.values()) else CITE_NO_ROOM,
        "; ".join(f"{h} {'enters TIME_WAIT' if want[h] else 'has no TIME-WAIT room and skips it'}" for h in want),
        "sock_diag: " + "; ".join(f"{h} {' -> '.join(st[h])} (after: {left[h]})" for h in st),
        got == want, {"time_wait": got, "tw_room": want, "sockets_after": left}))
    return checks


def _closing_judged(ev: Evidence, port: int, proof: dict, seen: dict, hole: str) -> tuple[bool | None, str]:
    """CLOSING, from both captures and sock_diag. A capture proof that fails on segments that are
    there fails; one that lacks segments a dropping capture may have missed cannot judge. Where
    the proof holds and sock_diag never showed CLOSING, the samples of the socket taken while the
    capture says it was CLOSING decide: another state there fails, no sample there (the sampler
    fell behind, or CLOSING was shorter than its pace) cannot judge."""
    lacking = [h for h, p in proof.items() if not p["proved"] and (
        p.get("my_fin_seq") is None or p.get("peer_fin_seq") is None
        or p.get("my_ack_of_peer_fin_t") is None or p.get("my_fin_acked_t") is None)]
    wrong = [h for h, p in proof.items() if not p["proved"] and h not in lacking]
    if wrong or (lacking and not hole):
        return False, ""
    if lacking:
        return None, f"the captures lack segments of the close at {lacking} ({hole})"
    holes = []
    for h in (h for h in proof if not seen[h]):
        states = _sampled_between(ev, h, port, proof[h]["peer_fin_t"] + 0.001, proof[h]["my_fin_acked_t"] - 0.001)
        if states:
            return False, ""
        gap = ev.sampler_gap_ms(proof[h]["peer_fin_t"], proof[h]["my_fin_acked_t"])
        holes.append(f"no sock_diag sample of the {h}'s socket in the "
                     f"{(proof[h]['my_fin_acked_t'] - proof[h]['peer_fin_t']) * 1000:.1f} ms its capture shows it "
                     "CLOSING" + (f" (the sampler's longest gap there: {gap} ms)" if gap else ""))
    return (None, "; ".join(holes)) if holes else (True, "")


def _sampled_between(ev: Evidence, host: str, port: int, t0: float, t1: float) -> list[str]:
    """The states sock_diag's samples of the connection from client port *port* showed in *host*,
    asked after *t0* and answered before *t1* (samples are kept while a timer runs: CLOSING's
    retransmission timer does)."""
    cli, srv = ev.addresses["client"], ev.addresses["server"]
    key = f"{cli}:{port}-{srv}:{PORT}" if host == "client" else f"{srv}:{PORT}-{cli}:{port}"
    return [s[2] for s in ev.timer_samples.get(host, [])
            if s[1] == key and s[0] > t0 and (s[6] if len(s) > 6 else s[0]) < t1]


def _rel(t: float | None, ev: Evidence) -> str:
    if t is None:
        return "never"
    t0 = min((s.t for segs in ev.packets.values() for s in segs), default=t)
    return f"{t - t0:.4f} s"
