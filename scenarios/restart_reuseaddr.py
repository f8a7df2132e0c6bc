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
"""

from __future__ import annotations

import errno

from lab.core import Lab
from lab.evidence import Evidence
from lab.shaping import OPTIONAL
from lab.verdict import Check

from ._premise import time_wait_room

NAME = "restart-reuseaddr"
INTENT = "a restarted server's bind() fails with EADDRINUSE over its own TIME-WAIT unless old and new socket both set SO_REUSEADDR; never over a live listener"
SHAPING = OPTIONAL
PORT = 5000          # the first case's port (the sampler follows it); case i uses PORT + i

# name, SO_REUSEADDR on the old listener, on the new one, old server still running
CASES = (
    ("neither", False, False, False),
    ("both", True, True, False),
    ("old-without-new-with", False, True, False),
    ("old-with-new-without", True, False, False),
    ("live-listener", True, True, True),
)

CITE_RULE = ("reference R-REUSEADDR-BIND: Linux inet_csk_bind_conflict() (net/ipv4/inet_connection_sock.c): a socket on the port "
             "conflicts unless both it and the new socket have SO_REUSEADDR and it is not LISTEN; a TIME-WAIT "
             "socket keeps its listener's flag (tw_reuse). Socket FAQ: SO_REUSEADDR reuses a port busy only in TIME_WAIT")
CITE_SETUP = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first (here the server) lingers in TIME-WAIT"


def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"server": len(CASES)}, "each case's old connection, over which a restarted server binds")


def run(lab: Lab) -> dict:
    client = lab.peer("client")
    srv_addr = lab.host("server").address
    view = lab.views["server"]
    cases = {}
    for i, (name, old_flag, new_flag, old_alive) in enumerate(CASES):
        port = PORT + i
        old = lab.peer("server", process=f"old-{name}")
        old.listen("L", port, reuseaddr=old_flag)
        client.connect(name, srv_addr, port)
        old.accept("L", as_="conn")
        client.send(name, b"req")
        old.recv("conn")
        old.close("conn")                                        # the server closes first
        client.recv(name)                                        # EOF
        client.close(name)
        lab.wait_for(f"{name}: the server's connection in TIME_WAIT on :{port}",
                     lambda: view.sockets(port=port, states={"TIME_WAIT"}), timeout_s=5)
        if not old_alive:
            lab.stop_peer("server", f"old-{name}")               # the process exits: its listener closes
            lab.wait_for(f"{name}: the old listener on :{port} to be gone",
                         lambda: not view.sockets(port=port, states={"LISTEN"}), timeout_s=5)
        new = lab.peer("server", process=f"new-{name}")
        before = view.sockets(port=port)
        bound = new.call("bind", sock="L", port=port, reuseaddr=new_flag)
        after = view.sockets(port=port)
        client_socks = lab.views["client"].sockets(port=port)
        case = {"port": port, "old_reuseaddr": old_flag, "new_reuseaddr": new_flag, "old_alive": old_alive,
                "bind_ok": bound.ok, "bind_errno": bound.errno, "bind_error": bound.error, "bind_t": bound.t,
                "server_sockets_before_bind": [s.to_json() for s in before],
                "server_sockets_after_bind": [s.to_json() for s in after if s.state != "CLOSE"],
                "client_sockets_at_bind": [s.to_json() for s in client_socks]}
        if bound.ok:                                             # the restarted server serves
            listened = new.listen("L", port)
            case["listen_ok"] = listened.ok
            if listened.ok:
                conn = client.connect(f"{name}-again", srv_addr, port)
                case["reconnect_ok"] = conn.ok
                if conn.ok:
                    new.accept("L", as_="conn2")
                    client.close(f"{name}-again")
                    new.close("conn2")
        lab.stop_peer("server", f"new-{name}")
        if old_alive:
            lab.stop_peer("server", f"old-{name}")
        cases[name] = case
    return {"cases": cases}


def _expect(case: dict) -> tuple[bool, list[str]]:
    """Linux's rule applied to what held the port at the moment of bind(): (bind ok?, why not)."""
    conflicts = []
    for s in case["server_sockets_before_bind"]:
        holder_flag = case["old_reuseaddr"]          # the old listener and every socket made from it
        if not (case["new_reuseaddr"] and holder_flag and s["state"] != "LISTEN"):
            conflicts.append(f"{s['state']} {s['src']}:{s['sport']}"
                             + ("" if s["state"] == "LISTEN" and case["new_reuseaddr"] and holder_flag else
                                f" (SO_REUSEADDR: holder {'yes' if holder_flag else 'no'}, "
                                f"new {'yes' if case['new_reuseaddr'] else 'no'})"))
    return not conflicts, conflicts


def check(ev: Evidence) -> list[Check]:
    checks = []
    cases = ev.facts.get("cases", {})
    for name, old_flag, new_flag, old_alive in CASES:
        case = cases.get(name)
        if case is None:
            checks.append(Check(f"{name}", CITE_RULE, "the case runs", "the case never ran", False, {}))
            continue
        before = case["server_sockets_before_bind"]
        after = case["server_sockets_after_bind"]
        tw_before = [s for s in before if s["state"] == "TIME_WAIT"]
        tw_after = [s for s in after if s["state"] == "TIME_WAIT"]
        listen_before = [s for s in before if s["state"] == "LISTEN"]
        client_tw = [s for s in case["client_sockets_at_bind"] if s["state"] == "TIME_WAIT"]

        # the setup: the server (which closed first) holds TIME-WAIT on the port at the moment of
        # bind, the client does not; the old listener is gone unless it is meant to be alive
        ok = bool(tw_before) and bool(tw_after) and not client_tw and bool(listen_before) == old_alive
        checks.append(Check(
            f"{name}-time-wait-holds-port", CITE_SETUP,
            f"at bind() the server's own TIME_WAIT socket(s) hold :{case['port']} (not the client's); "
            + ("the old listener is still open" if old_alive else "the old listener is gone"),
            f"sock_diag just before bind: {_states(before)}; just after: {_states(after)}; "
            f"client TIME_WAIT sockets: {len(client_tw)}",
            ok, {"port": case["port"], "server_time_wait_before": len(tw_before),
                 "server_time_wait_after": len(tw_after), "listeners_before": len(listen_before),
                 "client_time_wait": len(client_tw),
                 "time_wait_expires_ms": [s["expires_ms"] for s in tw_before]}))

        checks.append(_check_bind(name, case, tw_before, listen_before))
    return checks


def _check_bind(name: str, case: dict, tw_before: list, listen_before: list) -> Check:
    """The verdict on bind(): Linux's rule, applied to what sock_diag saw holding the port. With
    nothing on the port at that moment (no TIME-WAIT, no listener) the rule has nothing to act
    on: a bind() that succeeds then shows nothing about SO_REUSEADDR (the setup check fails)."""
    old_flag, new_flag, old_alive = case["old_reuseaddr"], case["new_reuseaddr"], case["old_alive"]
    want_ok, conflicts = _expect(case)
    got = "ok" if case["bind_ok"] else (case["bind_error"] or str(case["bind_errno"]))
    want = "ok" if want_ok else "EADDRINUSE"
    served = case.get("reconnect_ok")
    expected = (f"old listener {'with' if old_flag else 'without'} SO_REUSEADDR"
                f"{' and still running' if old_alive else ', exited'}, new one {'with' if new_flag else 'without'} it: "
                f"bind() -> {want}" + (" and the new server accepts a connection" if want_ok else
                                      f" (conflicts with {'; '.join(conflicts)})"))
    observed = (f"bind(:{case['port']}) -> {got}"
                + (f" ({errno.errorcode.get(case['bind_errno'], '?')} = errno {case['bind_errno']})" if not case["bind_ok"]
                   else f"; listen {'ok' if case.get('listen_ok') else 'failed'}, a client connected "
                        f"{'fine' if served else 'NOT'}")
                + f", with {len(tw_before)} TIME_WAIT socket(s) and {len(listen_before)} listener(s) on the port")
    values = {"port": case["port"], "old_reuseaddr": old_flag, "new_reuseaddr": new_flag, "old_alive": old_alive,
              "errno": case["bind_errno"], "error": case["bind_error"], "expected": want,
              "reconnect_ok": served, "server_time_wait_at_bind": len(tw_before)}
    if not tw_before and not listen_before and case["bind_ok"]:
        return Check.not_applicable(
            f"{name}-bind", CITE_RULE, expected,
            f"sock_diag saw nothing on :{case['port']} just before bind() (no TIME_WAIT, no listener): "
            f"the rule had nothing to refuse, so {observed} shows nothing about SO_REUSEADDR", values)
    ok = got == want and (not case["bind_ok"] or (case.get("listen_ok") and served))
    return Check(f"{name}-bind", CITE_RULE, expected, observed, bool(ok), values)


def _states(socks: list[dict]) -> str:
    counts: dict[str, int] = {}
    for s in socks:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    return ", ".join(f"{n} {st}" for st, n in counts.items()) or "nothing"
