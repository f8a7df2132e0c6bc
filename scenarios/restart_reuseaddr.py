"""restart-reuseaddr: a server that closed its connections first exits and is restarted on the same
port while those connections sit in TIME-WAIT on the server side; bind() fails with EADDRINUSE
unless the old and the new listening socket both set SO_REUSEADDR, and never succeeds while a
listener still holds the port.

Checks the socket FAQ ("bind: address already in use" on restart; SO_REUSEADDR lets the port be
reused when it is busy only in TIME-WAIT, not when a listener holds it) against Linux's rule
(reference R-REUSEADDR-BIND, inet_csk_bind_conflict() in net/ipv4/inet_connection_sock.c: two sockets on an
overlapping address conflict unless BOTH have SO_REUSEADDR and the holder is not LISTEN; a
TIME-WAIT socket keeps its parent's flag, tw_reuse). RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the
server, closing first, holds TIME-WAIT. Each case has its own port, and sock_diag is read just
before and just after each bind to show what held the port at that moment.

    case                     old listener   new listener   port held by               bind()
    neither                  -              -              TIME-WAIT                  EADDRINUSE
    both                     SO_REUSEADDR   SO_REUSEADDR   TIME-WAIT                  ok
    old-without-new-with     -              SO_REUSEADDR   TIME-WAIT                  EADDRINUSE (Linux)
    old-with-new-without     SO_REUSEADDR   -              TIME-WAIT                  EADDRINUSE
    live-listener            SO_REUSEADDR   SO_REUSEADDR   LISTEN (+ TIME-WAIT)       EADDRINUSE

    t      who               step                                 wire               state
    0      server (old)      listen :P                                               LISTEN
    0      client            connect, send "req"                  SYN.., data
    0      server (old)      recv, close() the connection first   <- FIN, ACK ->     FIN_WAIT2
    0      client            recv EOF, close()                    FIN ->, <- ACK     server TIME_WAIT 60 s
    0      server (old)      exits (all but live-listener)                           LISTEN gone
    0      sock_diag         server sockets on :P                                    TIME_WAIT (, LISTEN)
    0      server (new)      socket(), [SO_REUSEADDR], bind(:P)   -                  EADDRINUSE or ok
    0      sock_diag         server sockets on :P again
    0      client            (bind ok) connect to the new server  SYN..              ESTABLISHED

With a gVisor server (--stack server=gvisor) the TIME-WAIT is followed on the wire and confirmed by
the router's prober just before each bind(); gVisor's own port rule decides (_reuseaddr_wire.py).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.records import SocketInfo
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check

from . import _reuseaddr_wire as wired
from ._keys.restart_reuseaddr import KEY
from ._premise import time_wait_room

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence

INTENT = ("a restarted server's bind() fails with EADDRINUSE over its own TIME-WAIT unless old and new socket both "
          "set SO_REUSEADDR; never over a live listener")
PORT = 5000          # the first case's port (the sampler follows it); case i uses PORT + i

# name, SO_REUSEADDR on the old listener, on the new one, old server still running
CASES = (
    ("neither", False, False, False),
    ("both", True, True, False),
    ("old-without-new-with", False, True, False),
    ("old-with-new-without", True, False, False),
    ("live-listener", True, True, True),
)

CITE_RULE = ("reference R-REUSEADDR-BIND: Linux inet_csk_bind_conflict() (net/ipv4/inet_connection_sock.c): a "
             "socket on the port "
             "conflicts unless both it and the new socket have SO_REUSEADDR and it is not LISTEN; a TIME-WAIT "
             "socket keeps its listener's flag (tw_reuse). Socket FAQ: SO_REUSEADDR reuses a port busy only in "
             "TIME_WAIT")
CITE_SETUP = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first (here the server) lingers in TIME-WAIT"


def _precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"server": len(CASES)},
                          "each case's old connection, over which a restarted server binds")


def run(lab: Lab) -> dict:
    return {"cases": {name: _case(lab, PORT + i, name, old_flag, new_flag, old_alive)
                      for i, (name, old_flag, new_flag, old_alive) in enumerate(CASES)}}


def _case(lab: Lab, port: int, name: str, old_flag: bool, new_flag: bool, old_alive: bool) -> dict:
    """One case on its own port. A gVisor server (no sock_diag) is followed on the wire, and the
    router's prober asks whether its TIME-WAIT holds the old connection just before bind()."""
    client, srv_addr = lab.peer("client"), lab.host("server").address
    view, on_wire = lab.views["server"], wire.stack_of(lab, "server") == "gvisor"
    old = lab.peer("server", process=f"old-{name}")
    old.listen("L", port, reuseaddr=old_flag)
    cport = client.connect(name, srv_addr, port)["local"][1]
    old.accept("L", as_="conn")
    client.send(name, b"req")
    old.recv("conn")
    old.close("conn")                                        # the server closes first
    client.recv(name)                                        # EOF
    client.close(name)
    if on_wire:
        lab.wait_for(f"{name}: the server's ACK of the client's FIN (on the wire: server TIME-WAIT)",
                     lambda: wire.fin_acked(lab, "client", cport, port), timeout_s=5)
    else:
        lab.wait_for(f"{name}: the server's connection in TIME_WAIT on :{port}",
                     lambda: view.sockets(port=port, states={"TIME_WAIT"}), timeout_s=5)
    if not old_alive:
        lab.stop_peer("server", f"old-{name}")               # the process exits: its listener closes
        if not on_wire:
            lab.wait_for(f"{name}: the old listener on :{port} to be gone",
                         lambda: not view.sockets(port=port, states={"LISTEN"}), timeout_s=5)
    new = lab.peer("server", process=f"new-{name}")
    before = view.sockets(port=port)
    probe = twprobe.probe_once(lab, "server", "client", port, cport) if on_wire else None
    bound = new.call("bind", sock="L", port=port, reuseaddr=new_flag)
    after = view.sockets(port=port)
    case = {"port": port, "client_port": cport, "old_reuseaddr": old_flag, "new_reuseaddr": new_flag,
            "old_alive": old_alive, "bind_ok": bound.ok, "bind_errno": bound.errno, "bind_error": bound.error,
            "bind_t": bound.t, "server_sockets_before_bind": [s.to_json() for s in before],
            "server_sockets_after_bind": [s.to_json() for s in after if s.state != "CLOSE"],
            "client_sockets_at_bind": [s.to_json() for s in lab.views["client"].sockets(port=port)],
            **({"server_probe": probe} if probe is not None else {})}
    if bound.ok:
        case.update(_serve_again(lab, new, name, srv_addr, port))
    lab.stop_peer("server", f"new-{name}")
    if old_alive:
        lab.stop_peer("server", f"old-{name}")
    return case


def _serve_again(lab: Lab, new, name: str, srv_addr, port: int) -> dict:
    """The restarted server listens and a client connects to it."""
    out = {}
    listened = new.listen("L", port)
    out["listen_ok"] = listened.ok
    if listened.ok:
        client = lab.peer("client")
        conn = client.connect(f"{name}-again", srv_addr, port)
        out["reconnect_ok"] = conn.ok
        if conn.ok:
            new.accept("L", as_="conn2")
            client.close(f"{name}-again")
            new.close("conn2")
    return out


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One case as the steps saw it: what sock_diag showed on its port just before and just after
    bind(), and what bind() (and, when it worked, the restarted server) did."""

    name: str
    facts: dict                     # the case's facts, as run() recorded them
    before: list[SocketInfo]        # the server's sockets on the port just before bind()
    after: list[SocketInfo]         # ... just after it
    client_at_bind: list[SocketInfo]
    client_rsts: tuple[float, ...] = ()  # RSTs from the client that reached the server's port (server.pcap)

    @classmethod
    def of(cls, name: str, facts: dict, ev: Evidence | None = None) -> Case:
        def socks(key: str) -> list[SocketInfo]:
            return [SocketInfo.from_json(x) for x in facts[key]]
        rsts = () if ev is None else tuple(
            s.t for s in ev.packets.get("server", []) if s.has("RST") and s.dport == facts["port"]
            and s.src == ev.addresses.get("client"))
        return cls(name, facts, socks("server_sockets_before_bind"), socks("server_sockets_after_bind"),
                   socks("client_sockets_at_bind"), rsts)

    def holding(self, state: str, when: str = "before") -> list[SocketInfo]:
        return [x for x in (self.before if when == "before" else self.after) if x.state == state]

    @property
    def old_flag(self) -> bool:
        return self.facts["old_reuseaddr"]

    @property
    def new_flag(self) -> bool:
        return self.facts["new_reuseaddr"]


@dataclass(frozen=True)
class Seen:
    cases: dict[str, Case]          # the cases that ran, by name

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        ran = ev.facts.get("cases", {})
        return cls({name: Case.of(name, ran[name], ev) for name, *_ in CASES if name in ran})


@dataclass(frozen=True)
class Held:
    """What held a case's port at bind(), as one source saw it: each holder's state and name, the
    words that say how it was seen, why the rule had nothing to act on (None: it had), and the
    source's own values, citation and where bind() ran."""

    holders: list[tuple[str, str]]
    said: str
    nothing: str | None
    values: dict
    cite: str = CITE_RULE
    where: str = ""


def _held_by_sock_diag(case: Case) -> Held:
    f = case.facts
    tw, listen = case.holding("TIME_WAIT"), case.holding("LISTEN")
    return Held([(s.state, f"{s.state} {s.src}:{s.sport}") for s in case.before],
                f", with {len(tw)} TIME_WAIT socket(s) and {len(listen)} listener(s) on the port",
                None if tw or listen or not f["bind_ok"] else
                f"sock_diag saw nothing on :{f['port']} just before bind() (no TIME_WAIT, no listener)",
                {"server_time_wait_at_bind": len(tw)})


def _conflicts(case: Case, holders: list[tuple[str, str]]) -> list[str]:
    """The rule (Linux's; gVisor's gives the same) applied to what held the port: a holder
    conflicts unless both it (the old listener's flag) and the new socket have SO_REUSEADDR and it
    is not LISTEN."""
    both = case.new_flag and case.old_flag       # the old listener and every socket made from it
    return [name + ("" if state == "LISTEN" and both else
                    f" (SO_REUSEADDR: holder {'yes' if case.old_flag else 'no'}, "
                    f"new {'yes' if case.new_flag else 'no'})")
            for state, name in holders if not (both and state != "LISTEN")]


# -- the checks: per case, in the timeline's order ------------------------------------------------

def time_wait_holds_port(case: Case) -> Check:
    """The setup: the server (which closed first) holds TIME-WAIT on the port at the moment of
    bind, the client does not; the old listener is gone unless it is meant to be alive. A gVisor
    server: asked on the wire (_reuseaddr_wire.py)."""
    if "server_probe" in case.facts:
        return wired.time_wait_holds_port_wire(case)
    tw_before, tw_after = case.holding("TIME_WAIT"), case.holding("TIME_WAIT", "after")
    listen_before = case.holding("LISTEN")
    client_tw = [x for x in case.client_at_bind if x.state == "TIME_WAIT"]
    old_alive = case.facts["old_alive"]
    ok = bool(tw_before) and bool(tw_after) and not client_tw and bool(listen_before) == old_alive
    if not tw_before and case.client_rsts:
        # the client's ACK and FIN left microseconds apart and swapped on the way: the server's
        # TIME-WAIT ACKed the late ACK, the closed client answered with a RST, and the RST killed
        # TIME-WAIT (tcp_rfc1337=0; reference R-UNPROVOKED-TWA): the setup raced, nothing to judge
        ok = None
    return Check.judged(
        f"{case.name}-time-wait-holds-port", CITE_SETUP,
        f"at bind() the server's own TIME_WAIT socket(s) hold :{case.facts['port']} (not the client's); "
        + ("the old listener is still open" if old_alive else "the old listener is gone"),
        f"sock_diag just before bind: {_tally(case.before)}; just after: {_tally(case.after)}; "
        f"client TIME_WAIT sockets: {len(client_tw)}",
        ok,
        {"port": case.facts["port"], "server_time_wait_before": len(tw_before),
         "server_time_wait_after": len(tw_after), "listeners_before": len(listen_before),
         "client_time_wait": len(client_tw), "time_wait_expires_ms": [x.expires_ms for x in tw_before],
         "client_rsts_at_server": len(case.client_rsts)},
        missing=f"sock_diag just before bind: {_tally(case.before)} - no TIME_WAIT: a RST from the client reached the "
                f"server's port "
                f"{len(case.client_rsts)} time(s) - TIME-WAIT assassinated by a reordered close (R-UNPROVOKED-TWA)")


def bind_follows_the_rule(case: Case) -> Check:
    """The verdict on bind(): the rule, applied to what held the port just before it - what
    sock_diag saw, or for a gVisor server what the router's probe found (_reuseaddr_wire.py). With
    nothing on the port at that moment the rule has nothing to act on: a bind() that succeeds then
    shows nothing about SO_REUSEADDR (the setup check fails)."""
    held = wired.held(case) if "server_probe" in case.facts else _held_by_sock_diag(case)
    f, name = case.facts, case.name
    conflicts = _conflicts(case, held.holders)
    got = "ok" if f["bind_ok"] else (f["bind_error"] or str(f["bind_errno"]))
    want = "EADDRINUSE" if conflicts else "ok"
    served = f.get("reconnect_ok")
    expected = (f"old listener {'with' if case.old_flag else 'without'} SO_REUSEADDR"
                f"{' and still running' if f['old_alive'] else ', exited'}, new one "
                f"{'with' if case.new_flag else 'without'} it: bind() -> {want}"
                + (f" (conflicts with {'; '.join(conflicts)})" if conflicts else
                   " and the new server accepts a connection"))
    observed = (f"bind(:{f['port']}){held.where} -> {got}"
                + (f" ({errno.errorcode.get(f['bind_errno'], '?')} = errno {f['bind_errno']})" if not f["bind_ok"]
                   else f"; listen {'ok' if f.get('listen_ok') else 'failed'}, a client connected "
                        f"{'fine' if served else 'NOT'}")
                + held.said)
    values = {"port": f["port"], "old_reuseaddr": case.old_flag, "new_reuseaddr": case.new_flag,
              "old_alive": f["old_alive"], "errno": f["bind_errno"], "error": f["bind_error"], "expected": want,
              "reconnect_ok": served, **held.values}
    if held.nothing is not None:
        return Check.not_applicable(
            f"{name}-bind", held.cite, expected,
            f"{held.nothing}: the rule had nothing to refuse, so {observed} shows nothing about SO_REUSEADDR", values)
    ok = got == want and (not f["bind_ok"] or (f.get("listen_ok") and served))
    return Check(f"{name}-bind", held.cite, expected, observed, bool(ok), values)


def case_never_ran(name: str) -> Check:
    return Check(f"{name}", CITE_RULE, "the case runs", "the case never ran", False, {})


def _tally(socks: list[SocketInfo]) -> str:
    counts: dict[str, int] = {}
    for s in socks:
        counts[s.state] = counts.get(s.state, 0) + 1
    return ", ".join(f"{n} {st}" for st, n in counts.items()) or "nothing"


def _of_case(name: str, judge: Callable[[Case], Check], suffix: str) -> Callable[[Seen], Check]:
    """*judge* applied to case *name*: one check function of the scenario."""
    def check(s: Seen) -> Check:
        return judge(s.cases[name])
    check.__name__ = check.check_name = f"{name}-{suffix}"     # type: ignore[attr-defined]
    return check


def _never_ran(name: str) -> Callable[[Seen], Check]:
    def check(s: Seen) -> Check:
        return case_never_ran(name)
    check.__name__ = check.check_name = name                     # type: ignore[attr-defined]
    return check


# per case: the setup, then bind()'s verdict; a case that never ran, one failing check
_CASE_CHECKS = {name: (_of_case(name, time_wait_holds_port, "time-wait-holds-port"),
                       _of_case(name, bind_follows_the_rule, "bind")) for name, *_ in CASES}
_NEVER_RAN = {name: (_never_ran(name),) for name, *_ in CASES}


def checks(ev: Evidence):
    """The cases in order, two checks each (one for a case that never ran)."""
    ran = ev.facts.get("cases", {})
    return tuple(fn for name, *_ in CASES for fn in (_CASE_CHECKS if name in ran else _NEVER_RAN)[name])


SCENARIO = Scenario(
    name="restart-reuseaddr", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=OPTIONAL, port=PORT, precondition=_precondition, key=KEY, stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("neither SO_REUSEADDR: bind", "neither-bind", "error"),
        KeyValue("both: bind", "both-bind", "error"),
        KeyValue("old without, new with: bind", "old-without-new-with-bind", "error"),
        KeyValue("live listener: bind", "live-listener-bind", "error"),
    ))
