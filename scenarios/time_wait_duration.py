"""time-wait-duration: how long TIME-WAIT lasts on the wall clock (Linux: a fixed 60 s = BSD's
2 x 30 s, not RFC 1122's 2 x 2 min), and how long an orphaned FIN-WAIT-2 lasts (tcp_fin_timeout).

Checks RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 ("MUST linger in TIME-WAIT for 2xMSL", MSL "arbitrarily
defined to be 2 minutes", RFC 9293 §3.4.2) against Linux's TCP_TIMEWAIT_LEN (60*HZ, include/net/
tcp.h, reference R-TW-LEN) and the kernel's own words in __inet_twsk_schedule(): "Linux, following BSD,
violates this requirement waiting only for 60sec, we should wait at least for 240 secs". The 60 s
is reported as conformance to BSD (TCPTV_MSL = 30 s) and as Linux's known deviation from RFC 1122;
with --strict-rfc the deviation is a failure. Tolerance: the TIME-WAIT timer fires up to one granule of
its wheel level late (512 ticks = 2.05 s at HZ=250, reference R-TIMER-WHEEL, lab/timerwheel.py), never early.

The orphaned FIN-WAIT-2 part (tcp_rcv_state_process(), tcp_fin_time(), tcp_time_wait()): when the
ACK of an orphan's FIN arrives, Linux replaces the socket by a TIME-WAIT mini-socket in substate
FIN_WAIT2 (sock_diag: FIN_WAIT2 with a timewait timer) that dies after tcp_fin_time() =
max(tcp_fin_timeout, 3.5 x RTO) when that is at most 60 s (longer values first keep the full socket
on its keepalive timer). Arming such a timer counts TWKilled when it is <= 4 s, TW otherwise
(__inet_twsk_schedule(), reference R-CNT-TW). A FIN arriving after it died finds no socket: RST
(RFC 9293 §3.10.7.1). tcp(7): tcp_fin_timeout "is strictly a violation of the TCP specification,
but required to prevent denial-of-service attacks". The two parts run at once, on two connections.

    t      who      step                                   wire                       state
    0      server   listen :5000
    0      client   connect A, connect B                   2 x (SYN, SYN-ACK, ACK)    ESTABLISHED
    0      client   close(A), close(B)                     2 x (FIN ->, <- ACK)       A, B FIN_WAIT2 (orphans)
    0      server   close(A)                               <- FIN, ACK ->             A TIME_WAIT (60 s)
    5      client   (kernel) B's FIN_WAIT2 timer fires     (nothing sent)             B gone (tcp_fin_timeout=5)
    5+     server   close(B)                               <- FIN, RST ->             no state for B: RST
    60-62  client   (kernel) A's TIME-WAIT timer fires     (nothing sent)             A gone

The server may run gVisor (--stack server=gvisor): what is judged is the Linux client's, and the
wait for the answer to the late FIN is read from the wire. A gVisor client (--stack client=gvisor)
is followed on the wire and both its lifetimes measured by the router's prober (_tw_duration_wire);
tcp_fin_timeout, a Linux sysctl, is not set there, and the checks of Linux's machinery say not
applicable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import BSD_MSL_S, RFC_MSL_S, TCP_RTO_MIN_MS, TCP_TIMEWAIT_LEN_S, TW_KILL_S
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.timerwheel import latest_s, max_late_s
from lab.verdict import Check

from . import _tw_duration_wire as on_wire
from ._keys.time_wait_duration import KEY
from ._lifetime import Lifetime, judge, measured
from ._premise import time_wait_room

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence
INTENT = ("TIME-WAIT lasts Linux's fixed 60 s (BSD 2 x 30 s; RFC 1122 asks 2 x 2 min); an orphaned "
          "FIN-WAIT-2 lasts tcp_fin_timeout (up to 60 s)")
PORT = 5000
CLOSE_WATCH_S = 0.5                      # the sampler polls every 0.5 ms this long after a close that starts a lifetime

CITE_LINUX = ("include/net/tcp.h TCP_TIMEWAIT_LEN (60*HZ), armed by tcp_time_wait() / "
              "inet_twsk_reschedule(); BSD 2MSL = 2 x TCPTV_MSL (30 s); reference R-TW-LEN, R-MSL, R-TIMER-WHEEL; "
              "timer-wheel granularity: kernel/time/timer.c calc_index()")
CITE_RFC = ("RFC 1122 §4.2.2.13 / RFC 9293 §3.6.1 (MUST-13): linger in TIME-WAIT for 2 x MSL, "
            "MSL = 2 min (RFC 9293 §3.4.2); __inet_twsk_schedule(): \"Linux, following BSD, violates "
            "this requirement waiting only for 60sec, we should wait at least for 240 secs\"; reference R-MSL")
CITE_FW2 = ("tcp_rcv_state_process() FIN_WAIT1 -> FIN_WAIT2 for an orphan: tcp_time_wait(sk, "
            "TCP_FIN_WAIT2, tcp_fin_time()) with tcp_fin_time() = max(tcp_fin_timeout, 3.5 x RTO) "
            "(include/net/tcp.h); sock_diag reports the mini-socket's substate FIN_WAIT2; reference R-FIN-TIMEOUT, "
            "R-FW2-OVER60; tcp(7): tcp_fin_timeout is \"strictly a violation of the TCP specification\"")
CITE_COUNTERS = ("__inet_twsk_schedule() (net/ipv4/inet_timewait_sock.c): arming a TIME-WAIT "
                 "mini-socket counts TWKilled when timeo <= 4 s, TW otherwise; reference R-CNT-TW")
CITE_RST = ("RFC 9293 §3.10.7.1 (CLOSED: an incoming segment without RST gets a RST; for an ACK-"
            "bearing segment <SEQ=SEG.ACK><CTL=RST>); Linux tcp_v4_send_reset() when no socket matches")


@dataclass(frozen=True)
class FinWait2Plan:
    """What the kernel does with an orphaned FIN-WAIT-2 (fin_wait2_plan())."""

    tmo_s: float                 # tcp_fin_time(): max(tcp_fin_timeout, 3.5 x RTO)
    lifetime_s: float            # how long the orphan lives in all
    mini_armed_s: float          # what its TIME-WAIT mini-socket is armed for
    first_timer: str             # the first timer sock_diag shows: timewait or keepalive


def fin_wait2_plan(fin_timeout_s: float) -> FinWait2Plan:
    """What the kernel does with an orphaned FIN-WAIT-2, by tcp_fin_time() and the paths that use
    it. tmo = max(tcp_fin_timeout, 3.5 x RTO) (the floor taken with TCP_RTO_MIN; the lab's RTO is
    200 ms and a few ms). At most 60 s: one TIME-WAIT mini-socket armed for tmo
    (tcp_rcv_state_process()). Above: the full socket first waits tmo - 60 on its keepalive timer,
    then tcp_keepalive_timer() arms a mini-socket for tcp_fin_time() - 60, so it lives
    2 x (tmo - 60) in all."""
    tmo = max(fin_timeout_s, 3.5 * TCP_RTO_MIN_MS / 1000)
    if tmo <= TCP_TIMEWAIT_LEN_S:
        return FinWait2Plan(tmo, tmo, tmo, "timewait")
    return FinWait2Plan(tmo, 2 * (tmo - TCP_TIMEWAIT_LEN_S), tmo - TCP_TIMEWAIT_LEN_S, "keepalive")


def _key(res) -> tuple[str, int, str, int]:
    (lip, lport), (rip, rport) = res.result["local"], res.result["remote"]
    return (lip, lport, rip, rport)


def _room_for_time_wait(sysctls) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"client": 2}, "A's, whose length it measures, and B's orphaned FIN-WAIT-2, "
                          "which Linux keeps in a TIME-WAIT socket too")


def run(lab: Lab) -> dict:
    from lab.runner import kernel_hz

    if wire.stack_of(lab, "client") == "gvisor":      # no sock_diag there: the same steps, on the wire
        return on_wire.run(lab, PORT)
    server, client = lab.peer("server"), lab.peer("client")
    srv_addr = lab.host("server").address
    view = lab.views["client"]
    fin_timeout = float(lab.sysctls["client"].get("net.ipv4.tcp_fin_timeout", "60"))
    fw2_s = fin_wait2_plan(fin_timeout).lifetime_s
    hz = kernel_hz()                  # the due windows the sampler polls closely in cover the firing

    server.listen("L", PORT)
    key_a = _key(client.connect("a", srv_addr, PORT))          # A: will hold TIME-WAIT
    server.accept("L", as_="sa")
    key_b = _key(client.connect("b", srv_addr, PORT))          # B: orphaned FIN-WAIT-2
    server.accept("L", as_="sb")

    lab.sampled()                                                  # A and B followed from here, closely
    lab.sample_closely(time.time(), time.time() + CLOSE_WATCH_S)   # as they enter FIN_WAIT2
    client.close("a")
    client.close("b")
    lab.wait_for("the server's ACKs of both FINs (A and B in FIN_WAIT2)",
                 lambda: all((s := view.lookup(k)) is not None and s.state == "FIN_WAIT2"
                             for k in (key_a, key_b)), timeout_s=5, interval_s=0.002)
    acked = time.time()                                          # B's FIN_WAIT2 timer runs from about here
    lab.sample_closely(time.time(), time.time() + CLOSE_WATCH_S)
    server.close("sa")                                           # <- FIN: A enters TIME-WAIT
    lab.wait_for("A in TIME_WAIT", lambda: (s := view.lookup(key_a)) and s.state == "TIME_WAIT",
                 timeout_s=5, interval_s=0.002)
    entered = time.time()

    late_fw2 = latest_s(fw2_s, hz)
    lab.wait_for(f"B's orphaned FIN_WAIT2 to expire (about {fw2_s:g} s)",
                 lambda: view.lookup(key_b) is None, timeout_s=fw2_s + late_fw2 + 10,
                 interval_s=0.01, due=(acked + fw2_s, acked + fw2_s + late_fw2), closely=True)
    b_gone = time.time()
    server.close("sb")                                           # a late FIN: no state left for it
    if wire.stack_of(lab, "server") == "gvisor":      # no sock_diag there: the FIN's answer on the wire
        lab.wait_for("the client's answer to the server's late FIN for B (on the wire)",
                     lambda: wire.fin_answered(wire.at_router(lab, "server"), PORT, key_b[1]), timeout_s=5)
    else:
        lab.wait_for("the server's B socket to be reset",
                     lambda: not [s for s in lab.sockets("server") if s.dport == key_b[1]],
                     timeout_s=5)

    left = TCP_TIMEWAIT_LEN_S - (time.time() - entered)
    late = latest_s(TCP_TIMEWAIT_LEN_S, hz)
    lab.wait_for("A's TIME_WAIT to expire (60 s)", lambda: view.lookup(key_a) is None,
                 timeout_s=left + late + 10, interval_s=0.01,
                 due=(entered + TCP_TIMEWAIT_LEN_S, entered + TCP_TIMEWAIT_LEN_S + late), closely=True)
    a_gone = time.time()
    server.close("L")
    return {"key_a": list(key_a), "key_b": list(key_b), "fin_timeout_s": fin_timeout,
            "a_time_wait_seen_at": entered, "a_gone_seen_at": a_gone, "b_gone_seen_at": b_gone}


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """The two connections (A: TIME-WAIT, B: the orphaned FIN-WAIT-2) and their lifetimes."""

    ev: Evidence
    a: Conn | None
    b: Conn | None
    time_wait: Lifetime | None            # A's TIME_WAIT, from the server's FIN
    fin_wait2: Lifetime | None            # B's FIN_WAIT2, from the ACK of its FIN
    plan: FinWait2Plan
    fin_timeout_s: float

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        a, b = (ev.conn(k[1], k[3]) if k else None for k in (ev.facts.get("key_a"), ev.facts.get("key_b")))
        fin_a = a.segments("client", sender="server", flag="FIN") if a else []
        fin_b = b.segments("client", sender="client", flag="FIN") if b else []
        ack_b = ev.acks_of("client", fin_b[0]) if fin_b else []
        fin_timeout = float(ev.sysctl("client", "net.ipv4.tcp_fin_timeout", "60"))
        return cls(ev, a, b,
                   Lifetime.of(a, "TIME_WAIT", fin_a[0].t if fin_a else None) if a else None,
                   Lifetime.of(b, "FIN_WAIT2", ack_b[0].t if ack_b else None) if b else None,
                   fin_wait2_plan(fin_timeout), fin_timeout)


# -- the checks, in the timeline's order: A's TIME-WAIT, then B's orphaned FIN-WAIT-2 -------------

def time_wait_lasts_60s(s: Seen) -> Check:
    """A: TIME-WAIT on the wall clock, from the server's FIN (captured at the client)."""
    ev, a = s.ev, s.time_wait
    late_tw = max_late_s(TCP_TIMEWAIT_LEN_S, ev.hz)
    ok, missing = judge(ev, a, TCP_TIMEWAIT_LEN_S, late_tw, "A's TIME_WAIT")
    if a and a.timer != "timewait":
        ok = False
    observed = measured(a, "TIME_WAIT", "from the server's FIN in client.pcap and the samples around the end")
    if a:
        observed += f"; armed with {a.first_expires_ms} ms left ({a.timer} timer)"
    return Check.judged(
        "time-wait-lasts-60s", CITE_LINUX,
        f"TIME-WAIT lasts TCP_TIMEWAIT_LEN = 60 s (BSD: 2 x MSL {BSD_MSL_S:g} s): no earlier than "
        f"60 s - 1 tick, at most one timer-wheel granule late ({late_tw:.3f} s at HZ={ev.hz})",
        observed, ok,
        {"sampled_s": a.sampled_s if a else None, "bounds_s": a.bounds_s if a else None,
         "first_expires_ms": a.first_expires_ms if a else None,
         "tolerance_late_s": round(late_tw, 3), "hz": ev.hz, "samples": a.samples if a else 0},
        missing=f"{missing}; {observed}" if a else missing)


WHO = {"linux": "Linux", "gvisor": "gVisor"}
DEVIATION = {"linux": "a documented deviation (the kernel's own comment in __inet_twsk_schedule())",
             "gvisor": "the same choice as BSD's and Linux's (gVisor's DefaultTCPTimeWaitTimeout)"}


def _tw_bounds(s: Seen, basis: Check) -> tuple[tuple[float, float] | None, float | None]:
    """A's TIME-WAIT: the bounds on its length and the value reported, from sock_diag (Linux) or
    the router's probes (*basis*'s values, gVisor)."""
    if wire.stack_of(s.ev, "client") == "linux":
        a = s.time_wait
        return (a.bounds_s if a else None), (a.sampled_s if a else None)
    lo, hi = basis.values.get("held_until_s"), basis.values.get("gone_by_s")
    return ((lo, hi) if lo is not None and hi is not None else None), hi


def time_wait_vs_rfc1122(s: Seen) -> Check:
    """A against RFC 1122's 2 x 2 min: conformance, the client's stack's known deviation (when A's
    60 s passed time-wait-lasts-60s), or a failure."""
    stack = wire.stack_of(s.ev, "client")
    basis = time_wait_lasts_60s(s) if stack == "linux" else on_wire.time_wait_on_the_wire(s)
    strict = bool(s.ev.options.get("strict_rfc"))
    rfc_s, tick = 2 * RFC_MSL_S, 1 / (s.ev.hz or 100)
    bounds, sampled = _tw_bounds(s, basis)
    conforms = bool(bounds) and bounds[0] >= rfc_s - tick
    short = bool(bounds) and bounds[1] < rfc_s - tick
    if conforms:
        ok, words = True, "conforms to RFC 1122's 2 x MSL"
    elif strict:
        ok, words = (False if short else None), f"short of RFC 1122's {rfc_s:g} s"
    elif basis.outcome == "pass":
        ok, words = True, (f"{WHO[stack]}'s fixed {TCP_TIMEWAIT_LEN_S:g} s = BSD's 2 x {BSD_MSL_S:g} s, "
                           f"{rfc_s - TCP_TIMEWAIT_LEN_S:g} s short of RFC 1122's 2 x {RFC_MSL_S:g} s: "
                           f"{DEVIATION[stack]}, reported, not failed (--strict-rfc fails it)")
    else:
        ok = False if basis.outcome == "fail" and short else None
        words = f"neither RFC 1122's 240 s nor {WHO[stack]}'s 60 s"
    if strict and short:
        words += f" ({WHO[stack]}'s known deviation: --strict-rfc makes it a failure)"
    return Check.judged(
        "time-wait-vs-rfc1122-2msl", CITE_RFC,
        f"RFC 1122: at least {rfc_s:g} s" + (" (--strict-rfc)" if strict else
                                             f"; {WHO[stack]}'s 60 s is reported as a known deviation"),
        f"measured {sampled} s (within {list(bounds)} s): {words}" if bounds else "no measurement",
        ok, {"measured_s": sampled, "rfc1122_s": rfc_s, "stack": stack, "bsd_s": 2 * BSD_MSL_S,
             "linux_s": TCP_TIMEWAIT_LEN_S, "strict_rfc": strict, "conforms_to_rfc1122": conforms,
             "short_of_rfc1122_s": round(rfc_s - sampled, 3) if sampled is not None else None},
        missing=("no measurement of TIME-WAIT's lifetime" if not bounds else
                 f"the measurement cannot tell (time-wait-lasts-60s: {basis.observed})"))


def orphan_follows_fin_timeout(s: Seen) -> Check:
    """B: the orphaned FIN-WAIT-2, from the ACK of its FIN (captured at the client)."""
    b, plan = s.fin_wait2, s.plan
    late_fw = max_late_s(plan.mini_armed_s, s.ev.hz)
    b_tw = s.b is not None and bool(s.b.samples("client", state="TIME_WAIT"))
    ok, missing = judge(s.ev, b, plan.lifetime_s, late_fw, "B's FIN_WAIT2")
    if b_tw or (b and b.timer != plan.first_timer):
        ok = False
    observed = (measured(b, "FIN_WAIT2", "from the ACK of B's FIN in client.pcap and the samples around the end")
                + (f"; {b.timer} timer, armed with {b.first_expires_ms} ms left" if b else "")
                + f"; TIME_WAIT {'seen' if b_tw else 'never seen'}")
    return Check.judged(
        "orphan-fin-wait2-follows-tcp_fin_timeout", CITE_FW2,
        f"tcp_fin_timeout={s.fin_timeout_s:g} s: B (closed; the peer never closes) stays FIN_WAIT2 with a "
        f"{plan.first_timer} timer and is gone {plan.lifetime_s:g} s after the ACK of its FIN (+ at most "
        f"{late_fw:.3f} s), never TIME_WAIT",
        observed, ok,
        {"tcp_fin_timeout_s": s.fin_timeout_s, "expected_s": plan.lifetime_s,
         "sampled_s": b.sampled_s if b else None, "bounds_s": b.bounds_s if b else None,
         "first_expires_ms": b.first_expires_ms if b else None, "timer": b.timer if b else None,
         "tolerance_late_s": round(late_fw, 3)},
        missing=f"{missing}; {observed}" if b else missing)


def tw_counters_at_arming(s: Seen) -> Check:
    """B: a mini-socket armed for mini_armed_s. A: the same while tmo <= 60 s (re-armed to 60 s by
    the server's FIN, and a re-arm counts nothing); else a full FIN_WAIT2 socket that the FIN
    turns into a TIME-WAIT mini-socket armed for 60 s."""
    plan = s.plan
    armed = [plan.mini_armed_s, plan.mini_armed_s if plan.tmo_s <= TCP_TIMEWAIT_LEN_S else TCP_TIMEWAIT_LEN_S]
    want_killed = sum(1 for t in armed if t <= TW_KILL_S)
    want_tw = len(armed) - want_killed
    tw, killed = s.ev.counter("client", "TcpExtTW"), s.ev.counter("client", "TcpExtTWKilled")
    return Check(
        "tw-counters-at-arming", CITE_COUNTERS,
        f"two mini-sockets armed for {armed} s: TW +{want_tw}, TWKilled +{want_killed}",
        f"nstat: TcpExtTW +{tw}, TcpExtTWKilled +{killed}",
        (tw, killed) == (want_tw, want_killed),
        {"TW": tw, "TWKilled": killed, "armed_s": armed})


def late_fin_gets_rst(s: Seen) -> Check:
    """A FIN after B's FIN-WAIT-2 died finds nothing: RST. When the samples did not see B go,
    the moment the scenario's own lookup found it gone bounds it instead."""
    b, ev = s.fin_wait2, s.ev
    late_fin = s.b.segments("client", sender="server", flag="FIN") if s.b else []
    rsts = [r for r in s.b.segments("client", sender="client", flag="RST")
            if r.t >= late_fin[0].t] if late_fin else []
    last_seen = b.gone[0] if b else ev.facts.get("b_gone_seen_at")
    after = late_fin[0].t - last_seen if late_fin and last_seen is not None else None
    after_s = None if after is None else round(after, 4)
    hole = ev.capture_hole("client")
    if rsts and rsts[0].seq != late_fin[0].ack:
        ok = False
    elif not late_fin or not rsts:
        ok = None if hole else False            # a complete capture without them: none was sent
    else:
        ok = None if after is None else after > 0
    observed = ((f"client.pcap: the FIN arrived {after_s} s after B was "
                 f"{'last seen' if b else 'found gone'}; {len(rsts)} RST(s) from the client"
                 + (f", RST seq {rsts[0].seq}, FIN ack {late_fin[0].ack}" if rsts else ""))
                if late_fin else "client.pcap: no FIN from the server for B")
    return Check.judged(
        "late-fin-after-fin-wait2-gets-rst", CITE_RST,
        "the server's FIN for B, sent after B's FIN_WAIT2 expired, is answered with RST (seq = the FIN's ack)",
        observed, ok,
        {"fin_after_last_seen_s": after_s, "rsts": len(rsts),
         "rst_seq": rsts[0].seq if rsts else None, "fin_ack": late_fin[0].ack if late_fin else None},
        missing=f"{observed}, but {hole}" if hole else f"{observed}; nothing tells when B went")


def fin_timeout_not_applicable(s: Seen) -> Check:
    return on_wire.not_applicable(
        "orphan-fin-wait2-follows-tcp_fin_timeout", CITE_FW2, "B stays FIN_WAIT2 for tcp_fin_timeout",
        "tcp_fin_timeout is a Linux sysctl, not set there; gVisor's own orphan timeout is measured by "
        "orphan-fin-wait2-length-on-the-wire")


def counters_not_applicable(s: Seen) -> Check:
    return on_wire.not_applicable("tw-counters-at-arming", CITE_COUNTERS, "TW and TWKilled count the mini-sockets "
                                  "armed", "nstat counts Linux's TIME-WAIT sockets; gVisor's endpoints are its own")


def checks(ev: Evidence):
    """Linux's client judged through sock_diag and nstat; a gVisor client from the wire."""
    if wire.stack_of(ev, "client") != "gvisor":
        return (time_wait_lasts_60s, time_wait_vs_rfc1122, orphan_follows_fin_timeout, tw_counters_at_arming,
                late_fin_gets_rst)
    return (on_wire.time_wait_on_the_wire, time_wait_vs_rfc1122, fin_timeout_not_applicable,
            on_wire.orphan_on_the_wire, counters_not_applicable, late_fin_gets_rst)


SCENARIO = Scenario(
    name="time-wait-duration", intent=INTENT, run=run, analyse=Seen.of,
    checks=checks,
    shaping=OPTIONAL, port=PORT, sysctls={"client": {"net.ipv4.tcp_fin_timeout": "5"}},
    # a 60 s wall-clock measurement, never two at once; its edges are bounded by close polling
    # (lab.sampling), so it starts first and runs beside the parallel batch: its values with and
    # without that company are in the README ("How long the catalog takes")
    parallel_safe=False, beside=True,
    stacks=("linux", "gvisor"),
    precondition=_room_for_time_wait, key=KEY,
    key_values=(
        KeyValue("TIME-WAIT length (s)", "time-wait-lasts-60s", "sampled_s", abs_tol=0.5),
        KeyValue("TIME-WAIT armed (ms)", "time-wait-lasts-60s", "first_expires_ms", abs_tol=50),
        KeyValue("timer-wheel slack (s)", "time-wait-lasts-60s", "tolerance_late_s"),
        KeyValue("orphan FIN-WAIT-2 (s)", "orphan-fin-wait2-*", "sampled_s", abs_tol=0.5),   # gVisor: on the wire
        KeyValue("TW at arming", "tw-counters-at-arming", "TW"),
        KeyValue("TWKilled at arming", "tw-counters-at-arming", "TWKilled"),
    ))
