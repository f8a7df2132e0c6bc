"""tw-buckets: with net.ipv4.tcp_max_tw_buckets = N on the client, closing N + 2 connections
leaves exactly N TIME-WAIT sockets; the 2 that find no bucket skip the state (TCPTimeWaitOverflow
+2) and answer the server's late FIN with RST.

Checks Linux's inet_twsk_alloc() (net/ipv4/inet_timewait_sock.c): no TIME-WAIT mini-socket is made
when the namespace already holds tcp_max_tw_buckets of them; tcp_time_wait() then counts
TCPTimeWaitOverflow and destroys the socket (tcp_done()) - reference R-MAX-TW-BUCKETS. An orphan's
FIN-WAIT-2 is itself such a mini-socket (tcp_rcv_state_process() -> tcp_time_wait(sk,
TCP_FIN_WAIT2, ...)), so the bucket is needed as soon as the ACK of the client's FIN arrives. A
connection with no state answers the peer's FIN with RST (RFC 9293 §3.10.7.1, tcp_v4_send_reset()),
where TIME-WAIT would have ACKed it (RFC 9293 §3.10.7.4) - the socket FAQ's warning: without the
state, "the server sees an error" (its connection is reset: lost-ack's RST lesson checks the
ECONNRESET itself). The limit is per network namespace, so it is set in the client
host only (its own sysctls: N = 3).

    t      who      step                                  wire                      state
    0      server   listen :5000
    0      client   connect c0 .. c4 (N + 2 = 5)          5 x handshake             ESTABLISHED
    0      client   close(c0)                             FIN ->, <- ACK            c0 FIN_WAIT2 mini-socket (bucket 1)
    0      client   close(c1), close(c2)                  likewise                  buckets 2, 3: full
    0      client   close(c3)                             FIN ->, <- ACK            no bucket: c3 gone, Overflow +1
    0      client   close(c4)                             FIN ->, <- ACK            no bucket: c4 gone, Overflow +2
    0+     server   close(s0 .. s4)  (late FINs)          <- FIN x 5
    0+     client   c0..c2: TIME_WAIT                     ACK -> x 3                3 TIME_WAIT
    0+     client   c3, c4: no socket                     RST -> x 2                server's s3, s4 reset

The server may run gVisor (--stack server=gvisor): what is judged is the Linux client's; the wait for
the late FINs' answers is then read from the wire. With a gVisor client (--stack client=gvisor) the
same N + 2 closes are followed on the wire; gVisor has no bucket limit, so each is expected to keep
its TIME-WAIT (_buckets_wire), and the checks of Linux's buckets say not applicable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check

from . import _buckets_wire as on_wire
from ._keys.tw_buckets import KEY

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence

INTENT = ("tcp_max_tw_buckets=N: N+2 closes leave exactly N TIME-WAIT sockets; the 2 overflowing "
          "ones skip the state and answer the late FIN with RST")
PORT = 5000
EXTRA = 2                      # connections beyond the limit (k)
MAX_CONNECTIONS = 32           # above this the limit is not reached: close DEFAULT_CONNECTIONS
DEFAULT_CONNECTIONS = 8

CITE_ALLOC = ("inet_twsk_alloc() (net/ipv4/inet_timewait_sock.c): no mini-socket when tw_refcount - 1 >= "
              "tcp_max_tw_buckets; tcp_time_wait(): TCPTimeWaitOverflow, tcp_done(); reference R-MAX-TW-BUCKETS")
CITE_FW2 = ("tcp_rcv_state_process(): an orphan whose FIN is ACKed becomes a TIME-WAIT mini-socket in "
            "substate FIN_WAIT2 (tcp_time_wait(sk, TCP_FIN_WAIT2, tcp_fin_time())); reference R-FIN-TIMEOUT")
CITE_ANSWER = ("RFC 9293 §3.10.7.4 (TIME-WAIT: acknowledge a FIN) vs §3.10.7.1 (no connection: RST "
               "<SEQ=SEG.ACK>); Linux tcp_timewait_state_process() / tcp_v4_send_reset(); reference R-TW-FIN, "
               "R-CLOSED-RST")
CITE_COUNTERS = ("__inet_twsk_schedule(): TW (or TWKilled, timeout <= 4 s) per mini-socket armed; "
                 "TCPTimeWaitOverflow per refusal; TcpOutRsts per RST; reference R-CNT-TW, R-CNT-OVERFLOW, "
                 "R-CNT-RST-RETRANS")


def plan(limit: int) -> tuple[int, int]:
    """(connections to close, how many of them must overflow) for tcp_max_tw_buckets=limit."""
    if limit + EXTRA <= MAX_CONNECTIONS:
        return limit + EXTRA, EXTRA
    return DEFAULT_CONNECTIONS, 0


def run(lab: Lab) -> dict:
    if wire.stack_of(lab, "client") == "gvisor":      # no sock_diag there, no buckets: on the wire
        return on_wire.run(lab, PORT, plan(int(SCENARIO.sysctls["client"]["net.ipv4.tcp_max_tw_buckets"]))[0])
    server, client = lab.peer("server"), lab.peer("client")
    srv_addr = lab.host("server").address
    view = lab.views["client"]
    limit = int(lab.sysctls["client"]["net.ipv4.tcp_max_tw_buckets"])
    n, _ = plan(limit)

    server.listen("L", PORT, backlog=64)
    keys = []
    for i in range(n):
        res = client.connect(f"c{i}", srv_addr, PORT)
        (lip, lport), (rip, rport) = res.result["local"], res.result["remote"]
        keys.append((lip, lport, rip, rport))
        server.accept("L", as_=f"s{i}")

    after_close = []
    for i, key in enumerate(keys):                 # one at a time: the buckets fill in this order
        client.close(f"c{i}")
        got = lab.wait_for(f"the ACK of c{i}'s FIN (FIN_WAIT2, or no socket at all)",
                           lambda k=key: ((s := view.lookup(k)) is None and "none")
                           or (s.state != "FIN_WAIT1" and s.state),
                           timeout_s=5, interval_s=0.002)
        after_close.append(got)

    # every mini-socket of the client's namespace (any port), before the server's FINs
    before_fins = [s.to_json() for s in view.sockets() if s.timer == "timewait"]
    for i in range(n):                             # the server's FINs, all late
        server.close(f"s{i}")
    if wire.stack_of(lab, "server") == "gvisor":      # no sock_diag there: each FIN's answer on the wire
        lab.wait_for("every server FIN answered (ACK or RST, on the wire)",
                     lambda: _answered(lab, [k[1] for k in keys]), timeout_s=10)
    else:
        lab.wait_for("every server connection to end (ACKed or reset)",
                     lambda: not [s for s in lab.sockets("server") if s.dport != 0], timeout_s=10)
    end = {f"{k[1]}": (s.state if (s := view.lookup(k)) else None) for k in keys}
    time_wait = [s.to_json() for s in view.sockets(states={"TIME_WAIT"})]
    time.sleep(0.15)            # the sampler's next dumps put the end states on the timeline too
    server.close("L")
    return {"limit": limit, "client_ports": [k[1] for k in keys], "after_close": after_close,
            "mini_sockets_before_fins": before_fins, "client_state_at_end": end,
            "client_time_wait_at_end": time_wait}


def _answered(lab: Lab, client_ports: list[int]) -> bool:
    """Each server FIN to *client_ports* answered by the client (an ACK of it, or a RST), as the
    router's capture facing the server shows."""
    segs = wire.at_router(lab, "server")
    return all(wire.fin_answered(segs, PORT, port) for port in client_ports)


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """The plan the limit in force makes (n closes, k of them overflowing) and what the steps saw."""

    ev: Evidence
    limit: int                      # the client's tcp_max_tw_buckets in force
    n: int                          # connections closed
    k: int                          # ... of which overflow (no bucket)
    ports: list[int]                # the client's ports, in close order
    after_close: list[str]          # sock_diag right after each close's ACK: FIN_WAIT2 or "none"

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        """A gVisor client has no limit: every connection it closed is expected to keep its state."""
        limit = int(ev.sysctl("client", "net.ipv4.tcp_max_tw_buckets", "-1"))
        n, k = plan(limit)
        if wire.stack_of(ev, "client") == "gvisor":        # the closes run() made: the scenario's own plan
            limit, n, k = -1, plan(int(SCENARIO.sysctls["client"]["net.ipv4.tcp_max_tw_buckets"]))[0], 0
        return cls(ev, limit, n, k, ev.facts.get("client_ports", []), ev.facts.get("after_close", []))

    @property
    def kept(self) -> int:
        """Connections that find a bucket."""
        return self.n - self.k


def _answer(s: Seen, port: int) -> str:
    """How the client answered the server's late FIN on *port* (client.pcap): "ACK" (from
    TIME-WAIT), "RST" (seq = the FIN's ack: no state), another segment's flags, or what is missing."""
    conn = s.ev.conn(port, PORT)
    fin = next(iter(conn.segments("client", sender="server", flag="FIN")), None)
    if fin is None:
        return "no FIN"
    first = next(iter(conn.segments("client", sender="client", after=fin.t)), None)
    if first is None:
        return "nothing"
    if first.has("RST") and first.seq == fin.ack:
        return "RST"
    if first.has("ACK") and not first.has("RST") and first.ack == (fin.seq + 1) & 0xFFFFFFFF:
        return "ACK"
    return first.flags


# -- the checks, in the timeline's order ----------------------------------------------------------

def buckets_fill_in_close_order(s: Seen) -> Check:
    """After close(): the first N became FIN_WAIT2 mini-sockets, the rest vanished."""
    want_after = ["FIN_WAIT2"] * s.kept + ["none"] * s.k
    return Check(
        "buckets-fill-in-close-order", CITE_FW2 + "; " + CITE_ALLOC,
        f"tcp_max_tw_buckets={s.limit}, {s.n} closes: the first {s.kept} are FIN_WAIT2 mini-sockets once "
        f"their FIN is ACKed, the last {s.k} have no socket at all",
        f"sock_diag right after each ACK: {s.after_close}",
        s.after_close == want_after and len(s.ports) == s.n,
        {"limit": s.limit, "connections": s.n, "after_close": s.after_close, "expected": want_after})


def exactly_n_time_wait(s: Seen) -> Check:
    """Exactly N mini-sockets in the whole namespace: N FIN_WAIT2 before the server's FINs, N
    TIME_WAIT after them (sock_diag dumps of every port), and they are the first N ports."""
    kept, ports = s.kept, s.ports
    before = s.ev.facts.get("mini_sockets_before_fins", [])
    tw_all = s.ev.facts.get("client_time_wait_at_end", [])
    fw2_ports = sorted(x["sport"] for x in before if x["state"] == "FIN_WAIT2")
    tw_ports = sorted(x["sport"] for x in tw_all)
    none_end = [p for p, st in s.ev.facts.get("client_state_at_end", {}).items() if st is None]
    ok = (len(before) == kept and fw2_ports == sorted(ports[:kept]) and tw_ports == sorted(ports[:kept])
          and len(none_end) == s.k)
    return Check(
        "exactly-n-time-wait", CITE_ALLOC,
        f"in the client's namespace exactly {kept} mini-sockets: FIN_WAIT2 before the server's FINs, "
        f"TIME_WAIT after them, on the first {kept} ports; the last {s.k} connections have no socket",
        f"sock_diag dumps: before the FINs {len(before)} mini-sockets (FIN_WAIT2 on {fw2_ports}); after "
        f"them {len(tw_all)} TIME_WAIT (on {tw_ports}); {len(none_end)} connections without a socket; "
        f"ports in close order {ports}",
        ok, {"mini_sockets_before_fins": len(before), "time_wait_at_end": len(tw_all),
             "time_wait_ports": tw_ports, "no_socket_at_end": len(none_end), "ports": ports})


def late_fin_ack_or_rst(s: Seen) -> Check:
    """The late FIN of each connection: ACK from TIME-WAIT, RST where no state is left. A FIN or an
    answer absent from a capture that dropped packets may have been on the wire: those ports cannot
    be judged; a wrong answer that is there stays a failure."""
    ports = s.ports
    answers = {port: _answer(s, port) for port in ports}
    want = {p: ("ACK" if i < s.kept else "RST") for i, p in enumerate(ports)}
    unseen = [p for p in ports if answers[p] in ("no FIN", "nothing")]
    wrong = [p for p in ports if answers[p] != want[p] and p not in unseen]
    hole = s.ev.capture_hole("client")
    return Check.judged(
        "late-fin-ack-or-rst", CITE_ANSWER,
        f"client.pcap: each of the first {s.kept} connections answers the server's late FIN with an ACK, "
        f"each of the last {s.k} with a RST (seq = the FIN's ack)",
        f"client.pcap, per client port: {answers}",
        False if wrong or not ports or (unseen and not hole) else (None if unseen else True),
        {"answers": {str(p): a for p, a in answers.items()}, "expected": {str(p): a for p, a in want.items()}},
        missing=f"client.pcap, per client port: {answers}; ports {unseen} unseen, but {hole}")


def overflow_counters(s: Seen) -> Check:
    ev = s.ev
    overflow = ev.counter("client", "TcpExtTCPTimeWaitOverflow")
    armed = ev.counter("client", "TcpExtTW") + ev.counter("client", "TcpExtTWKilled")
    rsts = ev.counter("client", "TcpOutRsts")
    return Check(
        "overflow-counters", CITE_COUNTERS,
        f"TCPTimeWaitOverflow +{s.k}, TW + TWKilled +{s.kept} (mini-sockets armed), TcpOutRsts +{s.k}",
        f"nstat: TCPTimeWaitOverflow +{overflow}, TW +{ev.counter('client', 'TcpExtTW')}, "
        f"TWKilled +{ev.counter('client', 'TcpExtTWKilled')}, TcpOutRsts +{rsts}",
        overflow == s.k and armed == s.kept and rsts == s.k,
        {"TCPTimeWaitOverflow": overflow, "TW_plus_TWKilled": armed, "TcpOutRsts": rsts})


def order_not_applicable(s: Seen) -> Check:
    return on_wire.not_applicable("buckets-fill-in-close-order", CITE_FW2, "the first N closes take a bucket")


def count_not_applicable(s: Seen) -> Check:
    return on_wire.not_applicable("exactly-n-time-wait", CITE_ALLOC, "exactly N mini-sockets in the namespace")


def counters_not_applicable(s: Seen) -> Check:
    return on_wire.not_applicable("overflow-counters", CITE_COUNTERS, "TCPTimeWaitOverflow counts the overflow")


def checks(ev: Evidence):
    if wire.stack_of(ev, "client") != "gvisor":
        return (buckets_fill_in_close_order, exactly_n_time_wait, late_fin_ack_or_rst, overflow_counters)
    return (order_not_applicable, count_not_applicable, late_fin_ack_or_rst, on_wire.every_close_holds_time_wait,
            counters_not_applicable)


SCENARIO = Scenario(
    name="tw-buckets", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=OPTIONAL, port=PORT, sysctls={"client": {"net.ipv4.tcp_max_tw_buckets": "3"}}, key=KEY,
    stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("tcp_max_tw_buckets", "buckets-fill-in-close-order", "limit"),
        KeyValue("TIME-WAIT sockets at the end", "exactly-n-time-wait", "time_wait_at_end"),
        KeyValue("late FIN answers", "late-fin-ack-or-rst", "answers", tally=True),
        KeyValue("TCPTimeWaitOverflow", "overflow-counters", "TCPTimeWaitOverflow"),
        KeyValue("TIME-WAITs held (probed)", "every-close-holds-time-wait", "held"),       # a gVisor client
    ))
