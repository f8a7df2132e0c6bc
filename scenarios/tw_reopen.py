"""tw-reopen: a SYN for a 4-tuple the server holds in TIME-WAIT reopens the connection directly; the
new server ISN lies above everything the old incarnation used (old snd_nxt + 65537 on Linux). The
SYN is accepted if its sequence number is above the old rcv_nxt or, with timestamps, if its
timestamp is newer (RFC 6191); RFC 1122's condition (2), "return to TIME-WAIT if the SYN turns
out to be an old duplicate", is not implemented by Linux.

Checks RFC 1122 §4.2.2.13 (MAY-2: accept a new SYN in TIME-WAIT if (1) the new ISN is larger
than the largest sequence number used before and (2) the socket returns to TIME-WAIT if the SYN
turns out to be an old duplicate), RFC 6191 §2 (with timestamps, accept a SYN whose timestamp is
larger than the last one seen, whatever its sequence number), and Linux
net/ipv4/tcp_minisocks.c tcp_timewait_state_process(): accept when not PAWS-rejected and
(after(seq, rcv_nxt) or the timestamp is newer), isn = tw_snd_nxt + 65535 + 2; the "RED-PEN"
comment admits condition (2) is violated (reference R-TW-RED-PEN). Without an accepted SYN, TIME-WAIT
answers with an ACK; the client, in SYN-SENT, answers that with RST, which kills the TIME-WAIT
when net.ipv4.tcp_rfc1337=0 (reference R-TW-RST), and its next SYN (Linux retransmits it after
TCP_TIMEOUT_MIN, tcp_rcv_synsent_state_process()) reaches the listener: a fresh ISN, not +65537.

    t      who      step                                         wire                    server state
    -- seq-ahead: a few bytes, so the new client ISN (clock-driven, reference R-ISN-CLOCK) is above rcv_nxt --
    0      client   connect from :41001, send 5 bytes
    0      server   close() first; client close()                <- FIN, FIN ->          TIME_WAIT
    0      client   connect again from :41001                    SYN seq > rcv_nxt ->    accepted by TIME-WAIT
                                                                 <- SYN-ACK seq = old snd_nxt + 65537
    -- seq-behind: 24 MiB first, so rcv_nxt runs ahead of the ISN clock ---------------------------
    ~0.1   client   connect from :41002, send 24 MiB (~0.1 s)
    ~0.2   server   close() first; client close()                                        TIME_WAIT
    ~0.2   client   connect again from :41002                    SYN seq < rcv_nxt ->
                    timestamps on:  TSval newer -> accepted      <- SYN-ACK seq = old snd_nxt + 65537
                    timestamps off: not acceptable               <- ACK ack=rcv_nxt, RST ->  TW killed
                                                                 SYN again -> <- SYN-ACK (fresh ISN)
    -- old-duplicate: condition (2) --------------------------------------------------------------
    ~0.3   server   close() first; client close()                                        TIME_WAIT
    ~0.3   router   hold the client's SYNs
    ~0.3   client   connect from :41003, gives up after 0.3 s    SYN -> x (held)
    ~0.6   router   inject that SYN (an abandoned attempt: to the server an old duplicate)
    ~0.6   server                                                SYN -> <- SYN-ACK       TIME-WAIT gone
    ~0.6   client   (no socket)                                  RST ->                  nothing: not TIME_WAIT

Flip: --sysctl client:net.ipv4.tcp_timestamps=0 (or server:...): seq-behind is refused by TIME-WAIT.
--stack client=gvisor: gVisor's SYNs meet Linux's TIME-WAIT (the client's waits read the wire);
--stack server=gvisor: gVisor's TIME-WAIT and its own rule, judged from the wire (_tw_reopen_wire).

A case whose premise the run did not produce is not applicable, not failed: seq-behind's SYN
above rcv_nxt (the transfer did not outrun the ISN clock: a slow machine), or an injected SYN that
TIME-WAIT did not accept or that no RST showed to be an old duplicate (condition (2) has nothing
to act on). A segment missing from a capture that dropped packets makes its check inconclusive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.scenario import KeyValue, Scenario
from lab.shaping import UNUSED
from lab.verdict import Check

from . import _tw_reopen_wire as on_wire
from ._keys.tw_reopen import KEY
from ._premise import time_wait_room
from ._steps import client_closed_second
from ._steps import rebinds_for_gvisor as _reuse
from ._tw_reopen_incarnation import M32, Decision, Incarnation
from ._tw_reopen_isn import new_isn_above_old
from ._tw_reopen_rst import refused_syn_recovery, rfc1122_condition_2_not_implemented

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence

INTENT = ("a SYN reopens a 4-tuple in TIME-WAIT (seq above rcv_nxt or newer timestamp, RFC 6191) with ISN = old "
          "snd_nxt + 65537; RFC 1122 condition (2) is not implemented")
PORT = 5000
BULK = 24 << 20             # 24 MiB: the ISN clock moves 15.6 M per second (reference R-ISN-CLOCK)
CASES = {"seq-ahead": 41001, "seq-behind": 41002, "old-duplicate": 41003}
ABANDON_S = 0.3             # how long the client waits for its held SYN before giving up
CAPTURE_SETTLE_S = 0.3      # after the bulk transfer, before closing: tcpdump drops packets while
                            # it is behind, and the close must be captured (the ISN clock moves
                            # only 4.7 M meanwhile, far less than the 25 M bytes sent)

CITE_SETUP = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the server closed first and lingers in TIME-WAIT"
CITE_ACCEPT = ("RFC 1122 §4.2.2.13 (MAY-2) and RFC 6191 §2; Linux tcp_timewait_state_process() "
               "(net/ipv4/tcp_minisocks.c): a SYN is accepted if not PAWS-rejected and after(seq, rcv_nxt) "
               "or its timestamp is newer than tw_ts_recent; otherwise TIME-WAIT answers with an ACK (reference "
               "R-TW-SYN)")
CITE_TS = ("RFC 7323 §3.2: timestamps are used only if both SYN and SYN-ACK carry the option; "
           "net.ipv4.tcp_timestamps (reference R-TIMESTAMPS)")


# -- the steps -------------------------------------------------------------------------------

def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"server": 1}, "the old incarnation a new SYN meets")


def run(lab: Lab) -> dict:
    server = lab.peer("server")
    server.listen("L", PORT)
    cases = {name: _reopen(lab, name, nbytes)                 # the client reconnects from the same port
             for name, nbytes in (("seq-ahead", 5), ("seq-behind", BULK))}
    cases["old-duplicate"] = _old_duplicate(lab)
    server.close("L")
    return {"cases": cases, "bulk_bytes": BULK}


def _server_side(lab: Lab, lport: int) -> list:
    return [s for s in lab.views["server"].sockets(port=PORT) if s.dport == lport]


def _client_side(lab: Lab, lport: int) -> list:
    return [s for s in lab.views["client"].sockets(port=PORT) if s.sport == lport]


def _old_incarnation(lab: Lab, name: str, lport: int, nbytes: int) -> dict:
    """Connect from :lport, send *nbytes*, the server closes first: its 4-tuple in TIME_WAIT, the
    client's port free again."""
    server, client = lab.peer("server"), lab.peer("client")
    client.connect(name, lab.host("server").address, PORT, lport=lport, **_reuse(lab))
    server.accept("L", as_=f"s-{name}")
    t0 = time.time()
    if nbytes > 1024:
        sent: dict = {}
        th = threading.Thread(target=lambda: sent.update(r=client.blast(name, nbytes, "DATA", timeout_s=60)))
        th.start()
        moved = server.drain(f"s-{name}", nbytes, timeout_s=30)["len"]
        th.join()
    else:
        client.send(name, b"x" * nbytes)
        moved = server.recv(f"s-{name}")["len"]
    transfer_s = time.time() - t0
    if nbytes > 1024:
        time.sleep(CAPTURE_SETTLE_S)                       # let tcpdump drain the burst
    server.close(f"s-{name}")                              # the server closes first
    client.recv(name)                                      # EOF
    client.close(name)
    if on_wire.on_gvisor(lab):                              # no sock_diag there: the wire, then a probe
        on_wire.wait_for_time_wait(lab, name, lport, PORT)
    else:
        lab.wait_for(f"{name}: the server's 4-tuple in TIME_WAIT",
                     lambda: [s for s in _server_side(lab, lport) if s.state == "TIME_WAIT"], timeout_s=5)
    client_closed_second(lab, name, lport, PORT, lambda: _client_side(lab, lport))
    return {"client_port": lport, "bytes": moved, "transfer_s": round(transfer_s, 4),
            "server_before": [s.to_json() for s in _server_side(lab, lport)],
            "client_before": [s.to_json() for s in _client_side(lab, lport)],
            **({"server_probe_before": on_wire.probe(lab, lport, PORT)} if on_wire.on_gvisor(lab) else {})}


def _reopen(lab: Lab, name: str, nbytes: int) -> dict:
    """seq-ahead and seq-behind: the old incarnation, then a connect() from the same port."""
    server, client, lport = lab.peer("server"), lab.peer("client"), CASES[name]
    case = _old_incarnation(lab, name, lport, nbytes)
    r = client.connect(f"{name}-new", lab.host("server").address, PORT, lport=lport,
                       timeout_s=on_wire.reconnect_timeout(lab), **_reuse(lab))
    case.update(reconnect_ok=r.ok, reconnect_errno=r.errno, reconnect_error=r.error, reconnect_t=r.t)
    if r.ok:
        server.accept("L", as_=f"s-{name}-new")
        case["server_after"] = [s.to_json() for s in _server_side(lab, lport)]
        client.close(f"{name}-new")
        server.close(f"s-{name}-new")
    return case


def _old_duplicate(lab: Lab) -> dict:
    """old-duplicate: a SYN the client has given up on reaches the server's TIME-WAIT."""
    client, name, lport = lab.peer("client"), "old-duplicate", CASES["old-duplicate"]
    case = _old_incarnation(lab, name, lport, 5)
    lab.faults.hold("held-syn", lab.host("client"), lab.host("server"), flags="syn")
    r = client.connect(f"{name}-try", lab.host("server").address, PORT, lport=lport, timeout_s=ABANDON_S,
                       **_reuse(lab))
    client.close(f"{name}-try")                                # SYN_SENT: closes without a packet
    held = lab.wait_for("the client's SYN held in the router", lambda: lab.faults.logged("held-syn"), timeout_s=5)
    if wire.stack_of(lab, "client") == "linux":   # gVisor's is unseen: a SYN-SENT close sends nothing
        lab.wait_for("the abandoned socket gone", lambda: not _client_side(lab, lport), timeout_s=5)
    case["server_before_inject"] = [s.to_json() for s in _server_side(lab, lport)]
    injected = lab.faults.inject([held[0]], lab.host("server"))
    lab.faults.lift("held-syn")
    # give the exchange (SYN-ACK, RST) time, then look: Linux leaves nothing; RFC 1122 (2) would
    # have restored TIME_WAIT
    deadline = time.time() + 2
    while time.time() < deadline and _server_side(lab, lport):
        time.sleep(0.01)
    time.sleep(0.2)
    case.update(abandoned_connect_ok=r.ok, abandoned_connect_error=r.error, held_syn_seq=held[0].seq,
                injected_at=injected, server_after=[s.to_json() for s in _server_side(lab, lport)],
                looked_at=time.time())
    if on_wire.on_gvisor(lab):
        case["server_probe_after"] = on_wire.probe(lab, lport, PORT)
    return case


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One case of the run: what its steps recorded, its 4-tuple, server.pcap's story of it."""

    ev: Evidence
    name: str
    facts: dict                      # {} when the case never ran
    conn: Conn | None
    inc: Incarnation | None          # server.pcap's; None when it lacks the old connection
    decision: Decision | None        # None when there is no reopening SYN

    @classmethod
    def of(cls, ev: Evidence, name: str) -> Case:
        facts = ev.facts.get("cases", {}).get(name) or {}
        if not facts:
            return cls(ev, name, {}, None, None, None)
        conn = ev.conn(facts["client_port"], PORT)
        inc = Incarnation.of(conn, "server")
        stack = wire.stack_of(ev, "server")
        return cls(ev, name, facts, conn, inc, Decision.of(inc, stack) if inc is not None and inc.answers else None)

    @property
    def at_client(self) -> Incarnation | None:
        return Incarnation.of(self.conn, "client") if self.conn is not None else None

    @property
    def hole(self) -> str:
        return self.ev.capture_hole("client", "server")

    @property
    def unsure(self) -> bool:
        """With a capture that dropped packets, the first answer seen may not be the first sent:
        only the opposite answer shows the rule broken."""
        d = self.decision
        return d is not None and not d.rule_held and not d.refuted and bool(self.hole)


@dataclass(frozen=True)
class Seen:
    ev: Evidence
    cases: dict[str, Case]

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        return cls(ev, {name: Case.of(ev, name) for name in CASES})


# -- the checks, in the timeline's order ----------------------------------------------------------

def timestamps_as_configured(s: Seen) -> Check:
    ev = s.ev
    syns = [x for x in ev.segments("server", src="client") if x.flags == "SYN"]
    acks = [x for x in ev.segments("server", src="server", flag="SYN") if x.has("ACK")]
    syn_ts = {x.tsval is not None for x in syns}
    ack_ts = {x.tsval is not None for x in acks}
    gvisor = wire.stack_of(ev, "client") == "gvisor"      # its option is its own default, not a sysctl
    want_syn = syn_ts == {True} if gvisor else int(ev.sysctl("client", "net.ipv4.tcp_timestamps", "1") or 0) != 0
    # a gVisor server has no sysctl for it: it answers in kind (RFC 7323 §3.2)
    want_both = want_syn and (on_wire.on_gvisor(ev)
                              or int(ev.sysctl("server", "net.ipv4.tcp_timestamps", "1") or 0) != 0)
    ok = bool(syns) and bool(acks) and syn_ts == {want_syn} and ack_ts == {want_both}
    client = "client gVisor (its own default)" if gvisor else \
        f"client tcp_timestamps={ev.sysctl('client', 'net.ipv4.tcp_timestamps')}"
    return Check(
        "timestamps-as-configured", CITE_TS,
        f"{client}, server {'gVisor' if on_wire.on_gvisor(ev) else ev.sysctl('server', 'net.ipv4.tcp_timestamps')}"
        ": SYNs "
        f"{'all carry' if want_syn else 'lack'} the option, SYN-ACKs {'carry' if want_both else 'lack'} it",
        f"server.pcap: {len(syns)} SYNs, TSval present {sorted(syn_ts)}; {len(acks)} SYN-ACKs, TSval present "
        f"{sorted(ack_ts)}",
        ok, {"syns": len(syns), "syn_has_ts": sorted(syn_ts), "syn_acks": len(acks), "syn_ack_has_ts": sorted(ack_ts)})


# each of seq-ahead and seq-behind: a check of its Case (_of_case names it after the case)

def reopen(c: Case) -> Check:
    return Check(f"{c.name}-reopen", CITE_ACCEPT, "the case runs", "the case never ran", False, {})


def server_holds_time_wait(c: Case) -> Check:
    """The run waited for the server's TIME_WAIT, so the old connection's SYN and FINs were sent:
    captures without them say nothing about who closed first."""
    inc, f, lport = c.inc, c.facts, c.facts["client_port"]
    tw_before = [x for x in f.get("server_before", []) if x["state"] == "TIME_WAIT"]
    ok = None if inc is None else (inc.server_closed_first and bool(tw_before) and not f.get("client_before"))
    return Check.judged(
        f"{c.name}-server-holds-time-wait", CITE_SETUP,
        f"the server's FIN goes first; just before the client reconnects from :{lport} the server holds the "
        "4-tuple in TIME_WAIT and the client has no socket on it",
        f"server.pcap: server FIN {'first' if inc and inc.server_closed_first else 'NOT first'}"
        + (f" ({', '.join(inc.borrowed)} missing from server.pcap, taken from client.pcap)"
           if inc and inc.borrowed else "")
        + "; sock_diag: server "
        f"{[(x['state'], x['expires_ms']) for x in f.get('server_before', [])]}, client "
        f"{[x['state'] for x in f.get('client_before', [])] or _client_nothing(c.ev)}",
        ok, {"client_port": lport, "server_time_wait_ms_left": [x["expires_ms"] for x in tw_before],
             "old_bytes": f.get("bytes"), "transfer_s": f.get("transfer_s")},
        missing=f"the captures lack the old connection's SYN or FINs on :{lport}" + (f" ({c.hole})" if c.hole else ""))


def _client_nothing(ev: Evidence) -> str:
    gvisor = wire.stack_of(ev, "client") == "gvisor"
    return "unseen (gVisor: its LAST-ACK ended on the wire before the reconnect)" if gvisor else "nothing"


def syn_judged_by_time_wait(c: Case) -> Check:
    """TIME-WAIT accepts the reopening SYN or answers it with an ACK, as the rule asks. Each case
    has its premise (seq-ahead's SYN lies above rcv_nxt, seq-behind's below it): the rule holding
    for a SYN that is not the case's is not applicable."""
    d, inc, name = c.decision, c.inc, c.name
    if d is None:
        return _no_new_syn(c)
    premise = d.seq_after if name == "seq-ahead" else not d.seq_after
    gap = (d.syn.seq - inc.rcv_nxt) & M32
    gap = gap - (1 << 32) if gap >= 1 << 31 else gap
    values = {"syn_seq": d.syn.seq, "rcv_nxt": inc.rcv_nxt, "seq_minus_rcv_nxt": gap, "syn_tsval": d.syn.tsval,
              "ts_recent": inc.ts_recent, "timestamps": d.ts_used, "seq_after_rcv_nxt": d.seq_after,
              "ts_newer": d.ts_newer, "expected_accept": d.want_accept, "accepted": d.accepted,
              "answer": f"{d.ans.flags} seq={d.ans.seq} ack={d.ans.ack}" if d.ans else None,
              "reopened_after_time_wait_s": round(d.syn.t - inc.client_fin_t, 4), "old_bytes": c.facts.get("bytes")}
    decided_by = ("sequence number" if d.seq_after else "timestamp (RFC 6191)" if d.want_accept
                  else "nothing: not acceptable")
    expected = (f"SYN seq {'above' if d.seq_after else 'below'} rcv_nxt ({gap:+d}), timestamps "
                f"{'on, TSval ' + ('newer' if d.ts_newer else 'not newer') if d.ts_used else 'off'}: "
                + (f"accepted by TIME-WAIT (decided by the {decided_by})" if d.want_accept else
                   f"not acceptable: TIME-WAIT {d.refusal}" + (" (gVisor has no RFC 6191 rule)"
                                                                            if d.stack == "gvisor" else ""))
                + (f"; premise of {name}: SYN {'above' if name == 'seq-ahead' else 'below'} rcv_nxt"))
    observed = (f"server.pcap: SYN seq={d.syn.seq} TSval={d.syn.tsval}, old rcv_nxt={inc.rcv_nxt} "
                f"ts_recent={inc.ts_recent}; answered by {values['answer'] or 'nothing'}, "
                f"{values['reopened_after_time_wait_s']} s after the old connection closed")
    if d.rule_held and not premise:
        # the rule held for the SYN that was sent, but it is not the SYN this case is about
        why = (f"{c.facts.get('bytes')} bytes in {c.facts.get('transfer_s')} s did not put rcv_nxt ahead of the ISN "
               "clock (a slow or busy machine)" if name == "seq-behind" else "the new ISN was not above rcv_nxt")
        return Check.not_applicable(
            f"{name}-syn-judged-by-time-wait", CITE_ACCEPT, expected,
            f"premise not met: {why}; {observed} - the rule held, but for the other case's SYN", values)
    return Check.judged(
        f"{name}-syn-judged-by-time-wait", CITE_ACCEPT + (f"; {on_wire.CITE_DROP}" if d.stack == "gvisor" else ""),
        expected,
        observed + ("" if premise else "; PREMISE NOT MET"),
        None if c.unsure else d.rule_held, values,
        missing=f"{observed}: TIME-WAIT's answer may be missing from server.pcap ({c.hole})")


def _no_new_syn(c: Case) -> Check:
    """No reopening SYN in server.pcap: a connect() that succeeded sent its SYN, so one missing is
    the capture's hole."""
    sent = bool(c.facts.get("reconnect_ok")) or c.inc is None
    return Check.judged(
        f"{c.name}-syn-judged-by-time-wait", CITE_ACCEPT, "a new SYN from the same port",
        "server.pcap: no new SYN after the old connection", None if sent else False, {},
        missing=(f"server.pcap has no new SYN from :{c.facts['client_port']} although connect() "
                 f"{'succeeded' if c.facts.get('reconnect_ok') else 'ran'}" + (f" ({c.hole})" if c.hole else "")))


# a refused SYN's recovery, and the old duplicate (RFC 1122 condition (2)): scenarios/_tw_reopen_rst.py

def _of_case(name: str, fn: Callable[[Case], Check]) -> Callable[[Seen], Check]:
    """*fn*, a check of one Case, as a check of the analysis, named after the case."""
    def check(s: Seen) -> Check:
        return fn(s.cases[name])
    check.__name__ = f"{name.replace('-', '_')}_{fn.__name__}"
    check.check_name = f"{name}-{fn.__name__.replace('_', '-')}"
    return check


def _case_checks(c: Case) -> list:
    held = on_wire.server_holds_time_wait if on_wire.on_gvisor(c.ev) else server_holds_time_wait
    if not c.facts:
        return [_of_case(c.name, reopen)]
    if c.decision is None:
        return [_of_case(c.name, held), _of_case(c.name, syn_judged_by_time_wait)]
    after = new_isn_above_old if c.decision.want_accept else refused_syn_recovery
    return [_of_case(c.name, fn) for fn in (held, syn_judged_by_time_wait, after)]


def checks(ev: Evidence) -> list:
    """The timestamps, each reopening case (what follows the SYN depends on whether TIME-WAIT must
    accept it), then the old duplicate."""
    try:
        s = Seen.of(ev)
    except Exception:           # a bug in the analysis: judge() reports its trace on each check
        return [timestamps_as_configured] + [_of_case(name, fn) for name in ("seq-ahead", "seq-behind")
                                             for fn in (server_holds_time_wait, syn_judged_by_time_wait)] \
            + [rfc1122_condition_2_not_implemented]
    return ([timestamps_as_configured] + _case_checks(s.cases["seq-ahead"]) + _case_checks(s.cases["seq-behind"])
            + [rfc1122_condition_2_not_implemented])


SCENARIO = Scenario(
    name="tw-reopen", intent=INTENT, run=run, analyse=Seen.of, checks=checks, precondition=precondition,
    shaping=UNUSED,             # seq-behind needs a fast transfer: 24 MiB must outrun the ISN clock
    port=PORT, key=KEY, stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("SYN ahead accepted", "seq-ahead-syn-judged-by-time-wait", "accepted"),
        KeyValue("SYN behind accepted", "seq-behind-syn-judged-by-time-wait", "accepted"),
        KeyValue("new ISN - old snd_nxt", "seq-ahead-new-isn-above-old", "difference"),
        KeyValue("RFC 1122 cond. (2): TIME-WAIT restored", "rfc1122-condition-2-*", "time_wait_restored"),
    ))
