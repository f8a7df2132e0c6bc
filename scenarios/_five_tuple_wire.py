"""five-tuple with a gVisor client (``--stack client=gvisor``): part B only - a port pinned with
bind() - whose old 4-tuple is followed on the wire and confirmed by the router's probe before the
attempts (gVisor has no sock_diag). Not a scenario (the leading underscore keeps it out of the
catalog): five_tuple runs and judges through it.

Part A pins the client's ephemeral range to one port with ip_local_port_range, a Linux sysctl that
does not reach gVisor (not set there): its connect() picks another port, so the attempts onto A's
4-tuple cannot be made, and they, Linux's tcp_tw_reuse rule and nstat's TWRecycled say not
applicable. What the socket FAQ claims for any stack is judged on B: bind() of a port TIME-WAIT
holds fails without SO_REUSEADDR, works with it toward another server port, and connect() onto the
very 4-tuple either fails or starts the new connection above the old one's sequence numbers (RFC
1122 §4.2.2.13 (1)): one 4-tuple never has two incarnations mixed.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from lab import twprobe
from lab.verdict import Check

from ._five_tuple_steps import PORT, Tries, old_connection

if TYPE_CHECKING:
    from lab.core import Lab

    from .five_tuple import Seen

__all__ = ["ATTEMPTS", "run", "held_before", "time_wait_held", "connect_onto_time_wait", "a_now_unseen",
           "a_later_unseen", "isn_step_unseen", "counter_unseen"]

ATTEMPTS = ("b-bind", "b-other", "b-same")
CITE_PROBE = ("RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the client closed first and lingers in TIME-WAIT; gVisor's "
              "TIME-WAIT answers the router's ACK probe with an ACK (reference R-TW-PROBE)")
CITE_UNIQUE = ("socket FAQ: SO_REUSEADDR reuses the local address and port, the 5-tuple stays unique; RFC 1122 "
               "§4.2.2.13 (1): a connection reopened from TIME-WAIT starts above every sequence number used before")


def run(lab: Lab, other_port: int, bound: int) -> dict:
    """Part B: the old connection from a bound port, a probe of its 4-tuple, the three attempts, a
    probe again before the last."""
    server = lab.peer("server")
    server.listen("L", PORT)
    server.listen("L2", other_port)
    tries = Tries(lab)
    b_port, b_entered = old_connection(lab, "b-old", lport=bound, reuseaddr=True)
    probes = {"b-bind": twprobe.probe_once(lab, "client", "server", b_port, PORT)}
    tries.bind_plain("b-bind", "B", b_port, "bind() without SO_REUSEADDR", b_entered)
    tries.connect("b-other", "B", b_port, other_port, True, "L2",
                  "bind()+SO_REUSEADDR, connect() to another server port", b_entered)
    probes["b-same"] = twprobe.probe_once(lab, "client", "server", b_port, PORT)
    tries.connect("b-same", "B", b_port, PORT, True, "L", "bind()+SO_REUSEADDR, connect() to the same server port",
                  b_entered)
    return {"ephemeral_port": None, "bound_port": b_port, "b_time_wait_at": b_entered, "attempts": tries.made,
            "probes_before": probes}


def held_before(s: Seen, label: str) -> bool | None:
    """Did the router's probe find the old 4-tuple in TIME-WAIT just before attempt *label*?"""
    answer = (s.ev.facts.get("probes_before", {}).get(label) or {}).get("answer")
    return None if answer in (None, "none") else answer == "ack"


def time_wait_held(s: Seen) -> Check:
    """B's old 4-tuple answered the probe as TIME-WAIT before the first attempt and before the last."""
    seen = {k: held_before(s, k) for k in ("b-bind", "b-same")}
    return Check.judged(
        "old-4-tuples-in-time-wait", CITE_PROBE,
        "the router's probe finds B's old 4-tuple in TIME-WAIT (an ACK) before b-bind and before b-same",
        f"probe answers: {({k: (s.ev.facts['probes_before'].get(k) or {}).get('answer') for k in seen})}; old "
        f"connection used timestamps: {s.olds['B'].get('timestamps')}",
        None if None in seen.values() else all(seen.values()), {"held_before": seen},
        missing=f"a probe got no answer: {seen}")


def connect_onto_time_wait(s: Seen) -> Check:
    """connect() from B's bound port to the same server port while TIME-WAIT holds the 4-tuple: it
    fails (EADDRINUSE or EADDRNOTAVAIL), or its SYN starts above the old snd_nxt."""
    a, old = s.attempts["b-same"], s.olds["B"]
    syn = next((r[1] for r in s.recycled if r[0] == "b-same"), None)
    step = (syn.seq - old["snd_nxt"]) & 0xFFFFFFFF if syn is not None and old else None
    refused = not a["ok"] and a["errno"] in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
    ok = refused or (a["ok"] and step is not None and 0 < step < 1 << 31)
    held = held_before(s, "b-same")
    if held is False:        # the premise: TIME-WAIT holds the 4-tuple (old-4-tuples-in-time-wait judges it)
        return Check.not_applicable("connect-same-4-tuple-b-same", CITE_UNIQUE, a["note"], "the router's probe "
                                    "found nothing holding the 4-tuple just before: no TIME-WAIT to keep unique",
                                    {"held_before": held})
    return Check.judged(
        "connect-same-4-tuple-b-same", CITE_UNIQUE,
        f"{a['note']}: refused (EADDRINUSE or EADDRNOTAVAIL), or a new incarnation whose SYN lies above the old "
        "snd_nxt", f"connect from :{a['lport']} to server:{PORT} -> {'ok' if a['ok'] else a['error']}"
        + (f" (errno {a['errno']})" if not a["ok"] else f"; new SYN seq {syn.seq if syn else None}, "
           f"{step} above the old snd_nxt"),
        None if (a["ok"] and step is None) or held is None else ok,
        {"errno": a["errno"], "error": a["error"], "difference": step, "held_before": held_before(s, "b-same"),
         "stack": "gvisor"},
        missing="the router's probe got no answer just before: whether TIME-WAIT held the 4-tuple is unseen"
        if held is None else "client.pcap lacks the new SYN or the old connection")


NO_RANGE = ("the lab sets ip_local_port_range in the namespace's Linux stack, which gVisor's sockets do not read "
            "(gVisor keeps its own, writable inside the sandbox: not done yet), so its connect() picks another "
            "ephemeral port and part A's 4-tuple cannot be tried")


def _na(name: str, cite: str, expected: str, why: str) -> Check:
    return Check.not_applicable(name, cite, expected, f"the client runs gVisor: {why}")


def a_now_unseen(s: Seen) -> Check:
    return _na("connect-same-4-tuple-a-now", "reference R-TW-REUSE (Linux tcp_twsk_unique())",
               "connect() at once from the only ephemeral port", NO_RANGE)


def a_later_unseen(s: Seen) -> Check:
    return _na("connect-same-4-tuple-a-later", "reference R-TW-REUSE-DELAY (Linux tcp_twsk_unique())",
               "connect() after tcp_tw_reuse_delay from the only ephemeral port", NO_RANGE)


def isn_step_unseen(s: Seen) -> Check:
    return _na("recycled-isn-above-old-snd-nxt", "reference R-TW-REUSE: Linux's write_seq = tw_snd_nxt + 65537",
               "a recycled 4-tuple's SYN at old snd_nxt + 65537", "that step is Linux's; "
               "connect-same-4-tuple-b-same judges gVisor's new ISN against the old snd_nxt")


def counter_unseen(s: Seen) -> Check:
    return _na("tw-recycled-counter", "reference R-CNT-TWRECYCLED", "TcpExtTWRecycled counts recycled connects",
               "nstat counts Linux's sockets; gVisor's are its own")
