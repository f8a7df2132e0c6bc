"""five-tuple: while the client's old connection is in TIME-WAIT its 4-tuple stays taken: a new
socket bound to the same local port fails (EADDRINUSE), and connect() from the same port to the
same server fails (EADDRNOTAVAIL) unless the kernel may recycle the TIME-WAIT socket. SO_REUSEADDR
reuses the local address and port only; with net.ipv4.tcp_tw_reuse=1, timestamps and the reuse
delay passed, connect() recycles TIME-WAIT (TWRecycled) with an ISN 65537 above the old snd_nxt.

Checks the socket FAQ ("SO_REUSEADDR 仅仅表示可以重用本地本地地址、本地端口，整个相关五元组还是唯一确定的")
against Linux (reference R-TW-4TUPLE, R-TW-REUSE, R-TW-PINNED-PORT, R-REUSEADDR-BIND, R-SELFTESTS):
__inet_hash_connect() / __inet_check_established() / tcp_twsk_unique() (net/ipv4/inet_hashtables.c,
net/ipv4/tcp_ipv4.c). An ephemeral connect() may take a 4-tuple in TIME-WAIT only if tcp_tw_reuse allows it (1 = on,
2 = loopback only, the default), the old connection had timestamps and tcp_tw_reuse_delay has passed since it entered
TIME-WAIT; a connect() from a port pinned with bind() (SO_REUSEADDR on both sockets) skips tcp_tw_reuse and the delay.
The new write_seq is tw_snd_nxt + 65535 + 2. The client's ephemeral range is pinned to one port
(ip_local_port_range 40000 40000) so that connect() without bind() must use the old port.

    t      who      step                                      wire             client 4-tuple state
    -- A. ephemeral port (the only one: 40000) -----------------------------------------------------
    0      client   connect (-> :40000), send, close() first  FIN.., <- FIN   40000->srv:5000 TIME_WAIT
    0      client   connect again at once (no bind)            -               EADDRNOTAVAIL (delay)
    -- B. a port pinned with bind(), SO_REUSEADDR on the old socket -------------------------------
    0      client   bind :40100 +SO_REUSEADDR, connect, close() first         40100->srv:5000 TIME_WAIT
    0      client   new socket bind :40100 (no SO_REUSEADDR)   -               EADDRINUSE
    0      client   bind :40100 +SO_REUSEADDR, connect :5001   SYN..           a different 4-tuple: ok
    0      client   bind :40100 +SO_REUSEADDR, connect :5000   SYN seq=old+65537   Linux recycles TIME-WAIT
    -- A again, tcp_tw_reuse_delay (1 s) + 0.5 s after A's TIME-WAIT began ---------------------------
    ~1.5   client   connect (no bind)                          tcp_tw_reuse=2: EADDRNOTAVAIL
                                                               tcp_tw_reuse=1: SYN seq=old+65537, TWRecycled +1

Flip: --sysctl client:net.ipv4.tcp_tw_reuse=1 (A's second connect succeeds);
      --sysctl client:net.ipv4.tcp_timestamps=0 (no recycling at all, B's last connect fails too; with
      nothing recycled, the ISN and TWRecycled checks are not applicable).
--stack server=gvisor changes nothing judged; with --stack client=gvisor only part B runs (the ephemeral
range cannot be pinned there), judged from the wire and the router's probe (_five_tuple_wire).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import TW_ISN_STEP
from lab.records import SocketInfo
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check

from . import _five_tuple_wire as on_wire
from ._five_tuple_steps import PORT, Tries, old_connection
from ._keys.five_tuple import KEY
from ._premise import time_wait_room

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence
    from lab.packets import Segment
INTENT = ("TIME-WAIT keeps its 4-tuple: same port + same server fails (EADDRINUSE/EADDRNOTAVAIL); tcp_tw_reuse=1 "
          "recycles it after the delay with ISN = old snd_nxt + 65537")
OTHER_PORT = 5001              # a second listener: same local port, another 4-tuple
EPHEMERAL = 40000              # the client's whole ephemeral range
BOUND = 40100                  # the port part B pins with bind()
DELAY_MARGIN_S = 0.5           # wait tcp_tw_reuse_delay + this before the last attempt
# the attempts on an old connection's 4-tuple, in the order they are made
ATTEMPTS = ("a-now", "b-bind", "b-other", "b-same", "a-later")
# the connect()s onto an old connection's very 4-tuple: (attempt, whose old connection, port pinned by bind())
CONNECTS = (("a-now", "A", False), ("b-same", "B", True), ("a-later", "A", False))

CITE_BIND = ("reference R-REUSEADDR-BIND: Linux inet_csk_bind_conflict(): the TIME-WAIT socket conflicts unless "
             "both sockets have SO_REUSEADDR; socket FAQ: SO_REUSEADDR reuses only the local address and port")
CITE_OTHER = ("socket FAQ: SO_REUSEADDR reuses the local address and port; the 5-tuple (protocol, both addresses, "
              "both ports) stays unique")
CITE_REUSE = ("reference R-TW-REUSE, R-TW-REUSE-DELAY, R-TW-PINNED-PORT: tcp_twsk_unique() (net/ipv4/tcp_ipv4.c): "
              "connect() may recycle a TIME-WAIT 4-tuple if tcp_tw_reuse allows (1 on, 2 loopback only) and the old "
              "connection had timestamps and tcp_tw_reuse_delay has passed; a bind()-pinned port skips tcp_tw_reuse "
              "and the delay; otherwise __inet_hash_connect() fails with EADDRNOTAVAIL")
CITE_ISN = ("reference R-TW-REUSE: tcp_twsk_unique(): the recycled connection's write_seq = tw_snd_nxt + 65535 + 2 "
            "(RFC 1122 §4.2.2.13 (1) in spirit: above anything used before)")
CITE_COUNTER = ("reference R-CNT-TWRECYCLED: TcpExtTWRecycled counts each TIME-WAIT socket recycled by connect() "
                "(__inet_check_established())")


# -- the steps -------------------------------------------------------------------------------

def _precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"client": 2}, "part A's and part B's old connections, whose 4-tuples it holds")


def run(lab: Lab) -> dict:
    if wire.stack_of(lab, "client") == "gvisor":      # part B, followed on the wire (_five_tuple_wire)
        return on_wire.run(lab, OTHER_PORT, BOUND)
    server = lab.peer("server")
    server.listen("L", PORT)
    server.listen("L2", OTHER_PORT)
    tries = Tries(lab)

    # A. the ephemeral port: the old connection, then at once a new connect() (no bind)
    a_port, a_entered = old_connection(lab, "a-old")
    tries.connect("a-now", "A", a_port, PORT, None, "L", "connect() at once, no bind", a_entered)

    # B. a port pinned with bind(), the old socket with SO_REUSEADDR
    b_port, b_entered = old_connection(lab, "b-old", lport=BOUND, reuseaddr=True)
    tries.bind_plain("b-bind", "B", b_port, "bind() without SO_REUSEADDR", b_entered)
    tries.connect("b-other", "B", b_port, OTHER_PORT, True, "L2",
                  "bind()+SO_REUSEADDR, connect() to another server port", b_entered)
    tries.connect("b-same", "B", b_port, PORT, True, "L", "bind()+SO_REUSEADDR, connect() to the same server port",
                  b_entered)

    # A again, once tcp_tw_reuse_delay has passed since A's TIME-WAIT began
    delay_ms = int(lab.sysctls.get("client", {}).get("net.ipv4.tcp_tw_reuse_delay", "1000") or 1000)
    time.sleep(max(0.0, a_entered + delay_ms / 1000 + DELAY_MARGIN_S - time.time()))
    tries.connect("a-later", "A", a_port, PORT, None, "L", "connect() after tcp_tw_reuse_delay, no bind", a_entered)

    return {"ephemeral_port": a_port, "bound_port": b_port, "a_time_wait_at": a_entered,
            "b_time_wait_at": b_entered, "tw_reuse_delay_ms": delay_ms, "attempts": tries.made,
            "client_sockets_at_end": [s.to_json() for s in lab.views["client"].sockets(port=PORT)]}


# -- what the checks share ------------------------------------------------------------------------

def _old(ev: Evidence, lport: int) -> dict:
    """The old connection on client:lport -> server:PORT: its client FIN (snd_nxt after it), the
    client's last segment (entering TIME-WAIT), whether it used timestamps."""
    conn = ev.conn(lport, PORT)
    syns = conn.segments("client", sender="client", flag="SYN")
    fin = next(iter(conn.segments("client", sender="client", flag="FIN")), None)
    if not syns or fin is None:
        return {}
    reopened = next((x for x in syns if x.t > fin.t), None)       # a later incarnation, if any
    probed = [p["t"] for p in ev.facts.get("probes_before", {}).values() if p.get("t")]   # a gVisor client's
    until = min([x.t for x in (reopened,) if x is not None] + probed + [float("inf")])     # answers: not the close
    syn_ack = next((x for x in conn.segments("client", sender="server", flag="SYN")
                    if x.has("ACK") and x.t < until), None)
    last = max((x for x in conn.segments("client", sender="client", after=fin.t) if x.t < until),
               key=lambda x: x.t)
    return {"syn_seq": syns[0].seq, "fin_seq": fin.seq, "fin_t": fin.t,
            "snd_nxt": (fin.seq + fin.length + 1) & 0xFFFFFFFF, "time_wait_t": last.t,
            "timestamps": syns[0].tsval is not None and syn_ack is not None and syn_ack.tsval is not None}


def _new_syn(ev: Evidence, lport: int, after: float) -> Segment | None:
    """The client's SYN on client:lport -> server:PORT sent after *after* (a new incarnation)."""
    return next((x for x in ev.conn(lport, PORT).segments("client", sender="client", flag="SYN")
                 if x.flags == "SYN" and x.t > after), None)


@dataclass(frozen=True)
class Seen:
    """The attempts (by label), the sysctls that rule them, the two old connections as client.pcap
    shows them, and the connects that recycled a TIME-WAIT 4-tuple."""

    ev: Evidence
    attempts: dict[str, dict]
    reuse: int                      # tcp_tw_reuse in force on the client
    delay_ms: int                   # tcp_tw_reuse_delay
    olds: dict[str, dict]           # "A"/"B" -> _old() of part A's / part B's old connection
    recycled: list[tuple]           # (label, its new SYN or None, the old connection) per connect that worked

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        attempts = {a["label"]: a for a in ev.facts.get("attempts", [])}
        gvisor = wire.stack_of(ev, "client") == "gvisor"          # part B only (_five_tuple_wire)
        olds = {"A": {} if gvisor else _old(ev, ev.facts["ephemeral_port"]), "B": _old(ev, ev.facts["bound_port"])} \
            if all(k in attempts for k in (on_wire.ATTEMPTS if gvisor else ATTEMPTS)) else {}
        recycled = [(label, _new_syn(ev, attempts[label]["lport"], olds[part].get("fin_t", 0)), olds[part])
                    for label, part, _ in CONNECTS if olds and label in attempts and attempts[label]["ok"]]
        return cls(ev, attempts, int(ev.sysctl("client", "net.ipv4.tcp_tw_reuse", "2") or 2),
                   int(ev.sysctl("client", "net.ipv4.tcp_tw_reuse_delay", "1000") or 1000), olds, recycled)

    def before(self, label: str) -> list[SocketInfo]:
        """What sock_diag showed of the 4-tuple just before attempt *label*."""
        return [SocketInfo.from_json(x) for x in self.attempts[label]["sockets_before"]]


def _result(a: dict) -> str:
    return "ok" if a["ok"] else (a["error"] or f"errno {a['errno']}")


def _no_old(ev: Evidence, port: int) -> str:
    """Why the old connection on client:*port* cannot be read from client.pcap (its SYN or FIN is
    missing: the run waited for its TIME-WAIT, so both were sent; the capture lacks them)."""
    hole = ev.capture_hole("client")
    return f"client.pcap lacks the old connection's SYN or FIN on :{port}" + (f" ({hole})" if hole else "")


def _want_connect(pinned: bool, ts: bool, reuse: int, since_ms: float, delay_ms: int) -> tuple[bool, str]:
    """Linux's rule for a connect() onto a TIME-WAIT 4-tuple: (recycles?, why)."""
    if pinned:
        return ts, ("port pinned by bind() with SO_REUSEADDR: tcp_tw_reuse and the delay do not apply; "
                    + ("the old connection had timestamps -> recycled" if ts else "no timestamps -> EADDRNOTAVAIL"))
    allowed = reuse == 1       # 2 = loopback only; these are not loopback addresses
    past = since_ms > delay_ms
    return allowed and ts and past, (
        f"tcp_tw_reuse={reuse} ({'allows' if allowed else 'forbids: not loopback' if reuse == 2 else 'forbids'}), "
        f"timestamps {'used' if ts else 'not used'}, {since_ms:.0f} ms since TIME-WAIT began "
        f"({'past' if past else 'within'} tcp_tw_reuse_delay={delay_ms} ms)")


# -- the checks, in the timeline's order ----------------------------------------------------------

def five_tuple_steps(s: Seen) -> Check:
    """Not every attempt ran: nothing else can be judged."""
    return Check("five-tuple-steps", CITE_REUSE, "every step runs", f"steps that ran: {sorted(s.attempts)}",
                 False, {})


def old_4_tuples_in_time_wait(s: Seen) -> Check:
    """0. the old connections are in TIME-WAIT on the client when each attempt is made."""
    missing = [k for k in ATTEMPTS if not any(x.state == "TIME_WAIT" and x.dport == PORT for x in s.before(k))]
    unread = [_no_old(s.ev, s.ev.facts[k]) for k, part in (("ephemeral_port", "A"), ("bound_port", "B"))
              if not s.olds[part]]
    return Check.judged(
        "old-4-tuples-in-time-wait",
        "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the client closed first and lingers in TIME-WAIT",
        "sock_diag shows the old connection's 4-tuple in TIME_WAIT on the client just before every attempt",
        f"TIME_WAIT present before {len(ATTEMPTS) - len(missing)}/{len(ATTEMPTS)} attempts"
        + (f"; missing before {missing}" if missing else "")
        + f"; old connections used timestamps: A {s.olds['A'].get('timestamps')}, B {s.olds['B'].get('timestamps')}",
        False if missing else (None if unread else True),
        {k: [(x.state, x.expires_ms) for x in s.before(k)] for k in ATTEMPTS},
        missing="; ".join(unread))


def same_port_bind_without_reuseaddr(s: Seen) -> Check:
    """1. bind() to the same port without SO_REUSEADDR."""
    b, b_old = s.attempts["b-bind"], s.olds["B"]
    since = round(b["t"] - b_old["time_wait_t"], 4) if b_old else b["since_time_wait_s"]
    return Check(
        "same-port-bind-without-reuseaddr", CITE_BIND,
        f"bind(:{b['lport']}) without SO_REUSEADDR while the old socket is in TIME-WAIT -> EADDRINUSE",
        f"bind -> {_result(b)} (errno {b['errno']}), {since} s after the old connection entered TIME-WAIT",
        not b["ok"] and b["errno"] == errno.EADDRINUSE,
        {"errno": b["errno"], "error": b["error"], "since_time_wait_s": since})


def same_port_other_4_tuple(s: Seen) -> Check:
    """2. the same local port with SO_REUSEADDR toward another server port: a different 4-tuple."""
    o = s.attempts["b-other"]
    probed = on_wire.held_before(s, "b-same")               # a gVisor client's, by the router's probe
    still = any(x.state == "TIME_WAIT" for x in s.before("b-same")) or probed is True
    unseen = wire.stack_of(s.ev, "client") == "gvisor" and probed is None
    return Check.judged(
        "same-port-other-4-tuple", CITE_OTHER,
        f"bind(:{o['lport']}) with SO_REUSEADDR (old socket had it too), connect to server:{OTHER_PORT} -> ok "
        "(a different 4-tuple; the TIME-WAIT socket stays)",
        f"connect -> {_result(o)} from {o.get('local')}; the TIME_WAIT 4-tuple to :{PORT} was "
        f"{'still there' if still else 'gone'} after it",
        None if unseen and o["ok"] else o["ok"] and o.get("local", [None, None])[1] == o["lport"] and still,
        {"errno": o["errno"], "local": o.get("local")},
        missing="the router's probe of the old 4-tuple got no answer: whether TIME-WAIT stayed is unseen")


def _connect_same_4_tuple(s: Seen, label: str, part: str, pinned: bool) -> Check:
    """3. connect() to the same 4-tuple, judged by the kernel's rule. The rule needs to know whether
    the old connection used timestamps (client.pcap): without it, judged only where both answers
    agree."""
    a, old = s.attempts[label], s.olds[part]
    # from the client's last segment of the old connection (its ACK of the server's FIN: the
    # moment it entered TIME-WAIT) to the answer of connect()
    since_ms = (a["t"] - old["time_wait_t"]) * 1000 if old else a["since_time_wait_s"] * 1000
    ts = bool(old.get("timestamps"))
    if old:
        want_ok, why = _want_connect(pinned, ts, s.reuse, since_ms, s.delay_ms)
    else:
        both = {_want_connect(pinned, t, s.reuse, since_ms, s.delay_ms)[0] for t in (True, False)}
        want_ok = both.pop() if len(both) == 1 else None
        why = "the rule does not depend on the old connection's timestamps here"
    got = _result(a)
    want = {True: "ok", False: "EADDRNOTAVAIL", None: "?"}[want_ok]
    syn = _new_syn(s.ev, a["lport"], old.get("fin_t", 0)) if a["ok"] else None
    return Check.judged(
        f"connect-same-4-tuple-{label}", CITE_REUSE,
        f"{a['note']} -> {want} ({why})",
        f"connect from :{a['lport']} to server:{PORT} -> {got}"
        + (f" (errno {a['errno']})" if not a["ok"] else f"; new SYN seq={syn.seq if syn else None}"),
        None if want_ok is None else got == want,
        {"errno": a["errno"], "error": a["error"], "expected": want, "since_time_wait_ms": round(since_ms, 1),
         "tcp_tw_reuse": s.reuse, "tcp_tw_reuse_delay_ms": s.delay_ms, "old_used_timestamps": ts if old else None,
         "pinned_by_bind": pinned},
        missing=f"{_no_old(s.ev, a['lport'])}: whether it used timestamps decides; connect -> {got}")


def _connect(label: str, part: str, pinned: bool) -> Callable[[Seen], Check]:
    """The check of connect() attempt *label* onto part *part*'s old 4-tuple."""
    def check(s: Seen) -> Check:
        return _connect_same_4_tuple(s, label, part, pinned)
    check.__name__ = check.check_name = f"connect-same-4-tuple-{label}"    # type: ignore[attr-defined]
    return check


def recycled_isn_above_old_snd_nxt(s: Seen) -> Check:
    """4. every recycled connection starts 65537 above the old snd_nxt; none recycled: nothing to
    judge (connect-same-4-tuple-* judge whether one should have been)."""
    expected = (f"each connect() that reused a TIME-WAIT 4-tuple sends a SYN with seq = old snd_nxt + "
                f"{TW_ISN_STEP}")
    if not s.recycled:
        return Check.not_applicable(
            "recycled-isn-above-old-snd-nxt", CITE_ISN, expected,
            "no connect() reused a TIME-WAIT 4-tuple in this run, so no new ISN to compare", {"recycled": []})
    rows = []
    for label, syn, old in s.recycled:
        step = ((syn.seq - old["snd_nxt"]) & 0xFFFFFFFF) if syn and old else None
        rows.append({"attempt": label, "old_fin_seq": old.get("fin_seq"), "old_snd_nxt": old.get("snd_nxt"),
                     "new_syn_seq": syn.seq if syn else None, "difference": step})
    unknown = [r["attempt"] for r in rows if r["difference"] is None]
    wrong = [r for r in rows if r["difference"] is not None and r["difference"] != TW_ISN_STEP]
    hole = s.ev.capture_hole("client")
    return Check.judged(
        "recycled-isn-above-old-snd-nxt", CITE_ISN, expected,
        "client.pcap: " + "; ".join(f"{r['attempt']}: old FIN seq {r['old_fin_seq']} (snd_nxt {r['old_snd_nxt']}), "
                                    f"new SYN seq {r['new_syn_seq']}, difference {r['difference']}" for r in rows),
        False if wrong else (None if unknown else True), {"recycled": rows},
        missing=f"client.pcap lacks the new SYN or the old connection of {unknown}" + (f" ({hole})" if hole else ""))


def tw_recycled_counter(s: Seen) -> Check:
    """5. TWRecycled counts exactly the connects that reused a TIME-WAIT 4-tuple. With none, "+0"
    shows nothing about the counter: not applicable (a count above 0 still fails)."""
    n = s.ev.counter("client", "TcpExtTWRecycled")
    names = [r[0] for r in s.recycled]
    expected = (f"TcpExtTWRecycled +{len(s.recycled)} (the successful connects onto a TIME-WAIT 4-tuple: "
                f"{names or 'none'})")
    values = {"TWRecycled": n, "recycled_connects": names}
    if not s.recycled and n == 0:
        return Check.not_applicable("tw-recycled-counter", CITE_COUNTER, expected,
                                    "no connect() reused a TIME-WAIT 4-tuple: TcpExtTWRecycled +0 counts nothing",
                                    values)
    return Check("tw-recycled-counter", CITE_COUNTER, expected, f"TcpExtTWRecycled +{n}", n == len(s.recycled), values)


CHECKS = (old_4_tuples_in_time_wait, same_port_bind_without_reuseaddr, same_port_other_4_tuple,
          *(_connect(*c) for c in CONNECTS), recycled_isn_above_old_snd_nxt, tw_recycled_counter)


GVISOR_CHECKS = (on_wire.time_wait_held, same_port_bind_without_reuseaddr, same_port_other_4_tuple,
                 on_wire.a_now_unseen, on_wire.connect_onto_time_wait, on_wire.a_later_unseen, on_wire.isn_step_unseen,
                 on_wire.counter_unseen)


def checks(ev: Evidence):
    """Every attempt judged (a gVisor client's: part B's); a run in which not all were made: one
    failing check."""
    made = {a["label"] for a in ev.facts.get("attempts", [])}
    gvisor = wire.stack_of(ev, "client") == "gvisor"
    if not all(k in made for k in (on_wire.ATTEMPTS if gvisor else ATTEMPTS)):
        return (five_tuple_steps,)
    return GVISOR_CHECKS if gvisor else CHECKS


SCENARIO = Scenario(
    name="five-tuple", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=OPTIONAL, port=PORT, precondition=_precondition, key=KEY, stacks=("linux", "gvisor"),
    sysctls={"client": {"net.ipv4.ip_local_port_range": f"{EPHEMERAL} {EPHEMERAL}"}},
    key_values=(
        KeyValue("tcp_tw_reuse", "connect-same-4-tuple-a-later", "tcp_tw_reuse"),
        KeyValue("tw reuse delay (ms)", "connect-same-4-tuple-a-later", "tcp_tw_reuse_delay_ms"),
        KeyValue("connect after the delay", "connect-same-4-tuple-a-later", "error"),
        KeyValue("connect after the delay: tried at (ms)", "connect-same-4-tuple-a-later",
                 "since_time_wait_ms", rel_tol=0.2),
        KeyValue("connect at once", "connect-same-4-tuple-a-now", "error"),
        KeyValue("connect onto TIME-WAIT, port bound", "connect-same-4-tuple-b-same", "error"),
        KeyValue("new ISN - old snd_nxt", "recycled-isn-above-old-snd-nxt", "recycled.0.difference"),
        KeyValue("TWRecycled", "tw-recycled-counter", "TWRecycled"),
    ))
