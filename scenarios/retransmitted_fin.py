"""retransmitted-fin: every final ACK is lost; the server, which has close()d (an orphaned socket in
LAST-ACK), retransmits its FIN - a tail-loss probe first, then RTO retransmissions with the timeout
doubling - and gives up when tcp_orphan_retries says so, silently (no RST).

Checks RFC 9293 §3.8.1 / RFC 6298 §5.5 (retransmit on timeout, back off by doubling), RFC 8985 §7
(one tail-loss probe before the RTO), RFC 1122 §4.2.3.5 (R2: eventually close the connection) as
Linux implements it for orphans: tcp_write_timeout() takes retry_until = tcp_orphan_retries() for a
SOCK_DEAD socket (0 means 8 while the RTO is below TCP_RTO_MAX) and gives up at the first
retransmission timeout where retransmits_timed_out() holds:

    now - retrans_stamp >= tcp_model_timeout(b) = ((2 << b) - 1) x TCP_RTO_MIN     (b <= 9)

where retrans_stamp is the time of the FIRST RTO retransmission T1 (tcp_retransmit_skb() sets it;
the tail-loss probe, sent by __tcp_retransmit_skb(), does not). So the limit is a time budget, not a
count: with a first RTO of rto0 jiffies the timeout after the k-th RTO retransmission is armed for
rto0 x 2^k, and each runs late by the timer wheel's rounding (up to a granule of its level: 32 ms at
400 ms, 256 ms at 3 s, at HZ=250) and now and then a jiffy more. How many retransmissions fit is
therefore a prediction from the measured rto0 and the wheel (scenarios/_orphan_budget.py), not N or
N + 1: with rto0 = 204 ms at HZ=250 it is 2, 3, 4, 4, 5, 6 for tcp_orphan_retries = 1..6 (N=4: the
5th timeout comes at T1 + 6204..6460 ms, past the 6200 ms budget; 20 of 20 runs each here), and
where the budget falls among the possible times of a timeout (rto0 = 208 ms, N=3: 2980..3012 ms
against 3000 ms) either count is right.
Giving up is tcp_write_err() -> tcp_done(): no segment is sent (only tcp_out_of_resources(), under
orphan or memory pressure, sends a RST). Kernel sources: net/ipv4/tcp_timer.c, tcp_output.c,
kernel/time/timer.c (Linux v6.18); reference R-ORPHAN-RETRIES, R-ORPHAN-GIVES-UP,
R-TIMER-WHEEL.

The client's ACKs are all lost, yet it never sends a RST: it holds TIME-WAIT (RFC 9293 §3.10.7.4,
tcp_timewait_state_process(); reference R-TW-FIN) and answers each FIN with an ACK, so no RST needs dropping.
A gVisor client (--stack client=gvisor) is seen through its answers and one probe from the router at
the end (lab.twprobe), sock_diag having none of its sockets. A gVisor server (--stack server=gvisor)
has no orphan limit (tcp_orphan_retries is not set there): its FINs are watched on the wire for a
few seconds and their schedule judged; the budget's checks say not applicable (_orphan_wire).

    t      who      step                                    wire                      state
    0      server   listen :5000                                                      LISTEN
    0      client   connect, send "hello"                   SYN, SYN-ACK, ACK, data   ESTABLISHED
    0      client   close()                                 FIN ->, <- ACK            client FIN_WAIT2
    0      router   drop every pure ACK client -> server (until the end)
    0      server   close()  (orphan: no file, inode 0)     <- FIN                    server LAST_ACK
    0      client   (kernel) ACK, lost in the router        ACK -> x                  client TIME_WAIT
    0.2    server   (kernel) tail-loss probe                <- FIN, ACK -> x          idiag_retrans 0
    0.4    server   (kernel) RTO retransmission 1 (T1)      <- FIN, ACK -> x          retrans 1, RTO 2 x rto0
    0.8    server   (kernel) RTO retransmission 2           <- FIN, ACK -> x          retrans 2, RTO 4 x rto0
    1.7    server   (kernel) RTO retransmission 3           <- FIN, ACK -> x          retrans 3, RTO 8 x rto0
    3.4    server   (kernel) RTO retransmission 4           <- FIN, ACK -> x          T - T1 = 2.9 s < 3.0 s
    6.6+   server   (kernel) timeout: T - T1 = 6.2 s >= 3.0 s: tcp_write_err()    (nothing sent)   gone
    end    client   still TIME_WAIT: it never learns the server gave up
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import TCP_RTO_MAX_MS, TCP_RTO_MIN_MS
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.timerwheel import max_late_s
from lab.verdict import Check

from . import _orphan_wire as on_wire
from ._keys.retransmitted_fin import KEY
from ._orphan_budget import budget_of
from ._orphan_checks import (
    backoff_holes,
    client_holds_at_end,
    give_up_is_silent,
    give_up_when_budget_spent,
    orphan_retries_count,
    retransmission_kinds,
)
from ._premise import time_wait_room
from ._steps import client_closes_first

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence
    from lab.packets import Segment

INTENT = ("every final ACK is lost; the orphaned server retransmits its FIN (TLP, then RTO doubling) "
          "and gives up silently when tcp_orphan_retries' time budget is spent")
PORT = 5000

CITE_ORPHAN = ("tcp_close() (net/ipv4/tcp.c): close() in CLOSE_WAIT sends FIN -> LAST_ACK and orphans the "
               "socket (sock_orphan(): no file, sock_diag inode 0); tcp_write_timeout() applies "
               "tcp_orphan_retries only to SOCK_DEAD sockets")
CITE_LOST = ("lab fault: nft drop of pure ACKs client->server in the router's forward path; RFC 9293 §3.10.7.4 "
             "TIME-WAIT: acknowledge a retransmitted FIN")
CITE_BACKOFF = ("RFC 8985 §7 (one tail-loss probe, Linux tcp_send_loss_probe(): not counted in "
                "icsk_retransmits) then RFC 6298 §5.5 / RFC 9293 §3.8.1: on each RTO retransmit and "
                "double the timeout (tcp_retransmit_timer(): icsk_rto <<= 1, min TCP_RTO_MIN 200 ms)")

def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"client": 1}, "the client's, which answers each FIN with an ACK instead of a RST "
                                                  "that would end the orphan's retries")


def run(lab: Lab) -> dict:
    if wire.stack_of(lab, "server") == "gvisor":        # no sock_diag there, no orphan limit: on the wire
        return on_wire.run(lab, PORT)
    _, _, budget_ms = budget_of(lab.sysctls["server"].get("net.ipv4.tcp_orphan_retries"))

    server, client = client_closes_first(lab, PORT)            # ... FIN ->, <- ACK: FIN_WAIT2

    lab.faults.drop("client-acks", lab.host("client"), lab.host("server"), flags="ack")
    closed = server.close("conn")                                # <- FIN; the socket is orphaned
    lab.wait_for("the server's orphan in LAST_ACK",
                 lambda: lab.sockets("server", {"LAST_ACK"}), timeout_s=5)
    # gives up about 2 x budget after T1 (the next doubling overshoots it by at most that)
    now = time.time()
    lab.wait_for("the orphaned server socket to give up",
                 lambda: not lab.sockets("server", {"LAST_ACK"}),
                 timeout_s=2.2 * budget_ms / 1000 + 5, due=(now + budget_ms / 1000, now + 2.2 * budget_ms / 1000))
    gone_at = time.time()
    time.sleep(0.5)                       # anything the server sends as it gives up (a RST?) arrives
    client_end = lab.sockets("client")
    server_end = [s for s in lab.sockets("server") if s.dport != 0]
    server.close("L")
    cport = next(r for r in client.results if r.op == "connect")["local"][1]
    return {
        "server_close_ok": closed.ok,
        "server_close_state_before": closed.result.get("state_before"),
        "server_gone_seen_at": gone_at,
        "server_connections_at_end": [s.to_json() for s in server_end],
        "client_sockets_at_end": [s.to_json() for s in client_end],
        "client_port": cport,
        **on_wire.client_probe(lab, cport, PORT),       # a gVisor client: the router's probe instead
    }


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """The orphan's retransmissions as server.pcap and sock_diag show them: its FINs, what each
    retransmission was (a tail-loss probe leaves idiag_retrans as it was, an RTO adds one), how far
    ahead each retransmit timer was armed and how late it fired, when the socket went; and the
    budget tcp_orphan_retries gives."""

    ev: Evidence
    conn: Conn
    fins: list[Segment]              # the server's FINs in server.pcap
    kinds: list                      # each retransmission's kind: "TLP", "RTO", "?", None (unseen)
    counts: list                     # idiag_retrans in the first sample after each (None: no sample)
    unseen: list[str]                # where no sample told a kind, with the sampler's gap ("" if none)
    armed: list                      # the timer armed after the TLP and after each RTO (ms; None: unread)
    fired_late: list                 # how late each of those fired (ms), but the last
    gone: float | None               # when sock_diag saw the server's connection go
    orphan_retries: int              # the sysctl in force, what it means, and the budget from T1
    retry_until: int
    budget_ms: int

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        conn = ev.conn(_client_port(ev), PORT)
        fins = [f for f in conn.segments("server", sender="server", flag="FIN") if f.t <= _watched(ev)]
        kinds, counts, unseen = retransmission_kinds(ev, conn, fins)
        marks = _marks(fins, kinds)
        armed, fired_late = [], []
        for i, f in enumerate(marks):
            until = marks[i + 1].t if i + 1 < len(marks) else f.t + 300
            a = _armed_ms(conn, f.t, until)
            armed.append(a)
            if i + 1 < len(marks):          # None where no sample read the timer: judged as not shown
                fired_late.append(None if a is None else round((marks[i + 1].t - f.t) * 1000 - a, 1))
        return cls(ev, conn, fins, kinds, counts, unseen, armed, fired_late, conn.gone_at("server"),
                   *budget_of(ev.sysctl("server", "net.ipv4.tcp_orphan_retries")))

    @property
    def rto_fins(self) -> list[Segment]:
        return [f for f, k in zip(self.fins[1:], self.kinds) if k == "RTO"]

    @property
    def tlps(self) -> list[Segment]:
        return [f for f, k in zip(self.fins[1:], self.kinds) if k == "TLP"]

    @property
    def marks(self) -> list[Segment]:
        """The FINs that armed the retransmit timers read in *armed*."""
        return _marks(self.fins, self.kinds)

    @property
    def want_tlp(self) -> int:
        """Tail-loss probes the kernel sends first: one with tcp_early_retrans 3 or 4 and SACK."""
        return 1 if self.early_retrans in (3, 4) and self.sack else 0

    @property
    def early_retrans(self) -> int:
        return int(self.ev.sysctl("server", "net.ipv4.tcp_early_retrans", "3") or 3)

    @property
    def sack(self) -> int:
        return int(self.ev.sysctl("server", "net.ipv4.tcp_sack", "1") or 1)

    @property
    def tick_ms(self) -> float:
        return 1000 / (self.ev.hz or 100)

    def rel(self, t: float) -> float:
        """ms after the first FIN."""
        return round((t - (self.fins[0].t if self.fins else 0.0)) * 1000, 1)


def _watched(ev: Evidence) -> float:
    """Until when the run watched (a gVisor server's orphan goes on retransmitting after the run
    stopped watching and lifted the ACK drop: what came later is not the scenario's)."""
    return ev.facts.get("watched_until") or float("inf")


def _client_port(ev: Evidence) -> int | None:
    """The client's port: from its connect() (facts), else its first segment to PORT in a capture."""
    if ev.facts.get("client_port"):
        return ev.facts["client_port"]
    return next((s.sport for at in ("client", "server") for s in ev.segments(at, src="client", dst="server")
                 if s.dport == PORT), None)


def _marks(fins: list[Segment], kinds: list) -> list[Segment]:
    """The TLP (else the first FIN), then each RTO retransmission: each armed the timer anew."""
    tlps = [f for f, k in zip(fins[1:], kinds) if k == "TLP"]
    return (tlps[-1:] if tlps else fins[:1]) + [f for f, k in zip(fins[1:], kinds) if k == "RTO"]


def _armed_ms(conn: Conn, t: float, until: float) -> float | None:
    """How far ahead the retransmit timer was armed at *t* (a retransmission): its due time as the
    samples wholly in (t, until) saw it (each bounds it between ask + expires and answer +
    expires; the median of their midpoints), minus *t*. A single late sample would read less."""
    dues = sorted(sum(x.due) / 2 for x in conn.samples("server", state="LAST_ACK")
                  if t < x.asked and x.answered < until)
    if not dues:
        return None
    return round((dues[len(dues) // 2] - t) * 1000, 1)


# -- the checks, in the timeline's order ----------------------------------------------------------

def server_orphaned_in_last_ack(s: Seen) -> Check:
    """close() orphaned the socket in LAST_ACK. tcp_close() sets LAST_ACK and sends the FIN before
    sock_orphan(), so a first sample may still see the file; the last sample before the socket
    went (carried by the GONE event) is the orphan's."""
    states = s.conn.states("server")
    seen_last_ack = any(e.state == "LAST_ACK" for e in states)
    last = next((e.socket for e in states if e.state == "GONE" and e.data.get("previous") == "LAST_ACK"), None)
    before = s.ev.facts.get("server_close_state_before")
    ok = before == "CLOSE_WAIT" and seen_last_ack and last is not None and last.inode == 0
    # LAST_ACK lasts from the first FIN to the give-up (seconds): a sampler that never polled in
    # that span could not have seen it
    blind = s.ev.sampler_blind_ms(s.fins[0].t, s.fins[-1].t) if len(s.fins) > 1 else None
    if not ok and before == "CLOSE_WAIT" and last is None and blind:
        ok = None
    return Check.judged(
        "server-orphaned-in-last-ack", CITE_ORPHAN,
        "close() in CLOSE_WAIT: sock_diag shows the connection in LAST_ACK, and with no file "
        "(inode 0) by the time it retransmits",
        f"close() from {before}; sock_diag: LAST_ACK {'seen' if seen_last_ack else 'never seen'}; "
        f"last LAST_ACK sample before it went: inode {last.inode if last else '-'}, "
        f"idiag_retrans {last.retrans if last else '-'}",
        ok, {"state_before_close": before, "last_ack_seen": seen_last_ack,
             "last_sample_inode": last.inode if last else None},
        missing=f"no sock_diag poll from the first FIN to the last (the sampler's gap: {blind} ms), so "
                "LAST_ACK could not be seen")


def every_fin_acked_every_ack_lost(s: Seen) -> Check:
    """Every FIN reaches the client's TIME-WAIT and is answered; every answer is lost. What the
    captures show (an ACK at the server, a RST, fewer drops than ACKs) fails; FINs or ACKs absent
    from a capture whose tcpdump dropped packets are not judged - nft's counter, not server.pcap's
    silence, is the proof that the ACKs were dropped."""
    ev, fins = s.ev, s.fins
    fins_cli = [f for f in s.conn.segments("client", sender="server", flag="FIN") if f.t <= _watched(ev)]
    acks = []
    for i, f in enumerate(fins_cli):
        until = fins_cli[i + 1].t if i + 1 < len(fins_cli) else float("inf")
        acks += [a for a in ev.acks_of("client", f, after=f.t) if a.t < until][:1]
    arrived = [a for a in acks if s.conn.arrived(a, "server")]
    drop = ev.faults.get("client-acks", {})
    rst_cli = s.conn.segments("client", sender="client", flag="RST")
    tw = s.conn.ever_in("client", "TIME_WAIT") or client_holds_at_end(ev)      # None: a probe unanswered
    wrong = bool(arrived) or bool(rst_cli) or drop.get("dropped", 0) < len(acks) or tw is False
    short = not len(fins_cli) == len(fins) >= 2 or len(acks) != len(fins_cli)
    hole = ev.capture_hole("client", "server")
    ok = False if wrong else (None if hole else False) if short else (None if tw is None else True)
    return Check.judged(
        "every-fin-acked-every-ack-lost", CITE_LOST,
        "each server FIN reaches the client (TIME_WAIT) and is answered by an ACK that never reaches "
        "the server; the client sends no RST",
        f"client.pcap: {len(fins_cli)} of {len(fins)} FINs arrived, {len(acks)} answered; "
        f"{len(arrived)} of those ACKs in server.pcap; nft dropped {drop.get('dropped', 0)}; "
        f"client RSTs {len(rst_cli)}; client TIME_WAIT {_client_tw_said(ev, tw)}",
        ok, {"fins_sent": len(fins), "fins_at_client": len(fins_cli), "acks_from_client": len(acks),
             "acks_seen_by_server": len(arrived), "nft_dropped": drop.get("dropped", 0),
             "client_rsts": len(rst_cli)},
        missing=("the router's probe of the gVisor client got no answer: whether it held TIME-WAIT is unseen"
                 if tw is None and not short else
                 f"client.pcap has {len(fins_cli)} of {len(fins)} FINs and {len(acks)} answers, but {hole}: "
                 "the segments missing may be among them"))


def _client_tw_said(ev: Evidence, tw: bool) -> str:
    probe = ev.facts.get("client_probe_at_end")
    if probe is not None:
        return f"(gVisor, no sock_diag) answered the router's probe at the end with {probe.get('answer')}"
    return "seen" if tw else "never seen"


def tlp_then_rto_doubling(s: Seen) -> Check:
    """The retransmissions: the tail-loss probe(s) first (icsk_retransmits unchanged), then RTO
    retransmissions of the same FIN, the timer doubling. Each reading is within a tick of the
    armed value (jiffies lag the wall clock by up to a tick), so a doubling is judged pairwise to
    within three ticks."""
    ev, tick_ms, armed, kinds = s.ev, s.tick_ms, s.armed, s.kinds
    probes = ev.counter("server", "TcpExtTCPLossProbes")
    rto0 = armed[0] if armed else None
    doubling_ok = rto0 is not None and rto0 >= TCP_RTO_MIN_MS - tick_ms and all(
        a is not None and p is not None and abs(a - min(2 * p, TCP_RTO_MAX_MS)) <= 3 * tick_ms + 2
        for p, a in zip(armed, armed[1:]))
    late_ok = all(late is not None and -tick_ms - 1 <= late <= max_late_s(a / 1000, ev.hz) * 1000 + tick_ms + 20
                  for late, a in zip(s.fired_late, armed))
    seqs = sorted({f.seq for f in s.fins})
    want_tlp = s.want_tlp
    ok = (len(s.tlps) == want_tlp == probes and kinds[:want_tlp] == ["TLP"] * want_tlp
          and "?" not in kinds and None not in kinds and len(seqs) == 1 and doubling_ok and late_ok
          and bool(s.rto_fins))
    holes = backoff_holes(s, ok, seqs, probes)
    return Check.judged(
        "tlp-then-rto-doubling", CITE_BACKOFF,
        f"{want_tlp} tail-loss probe(s) (tcp_early_retrans={s.early_retrans}, tcp_sack={s.sack}) that leave "
        "idiag_retrans unchanged, then RTO retransmissions of the same FIN, the timer armed at "
        "rto0 >= 200 ms then doubling, each firing no earlier than armed and no later than one "
        "timer-wheel granule",
        f"server.pcap: FINs at {[s.rel(f.t) for f in s.fins]} ms, seq {seqs}; kinds {kinds} "
        f"(idiag_retrans after each: {s.counts}); TCPLossProbes +{probes}; timer armed "
        f"{armed} ms; fired late by {s.fired_late} ms",
        None if holes else ok,
        {"fin_times_ms": [s.rel(f.t) for f in s.fins], "kinds": kinds, "idiag_retrans": s.counts,
         "TCPLossProbes": probes, "armed_ms": armed, "fired_late_ms": s.fired_late, "rto0_ms": rto0,
         "tcp_early_retrans": s.early_retrans, "tcp_sack": s.sack},
        missing="; ".join(holes))


# then how many RTO retransmissions the budget allows, each decision against it, and the silence
# of the give-up: scenarios/_orphan_checks.py

def checks(ev: Evidence):
    """A Linux server judged through sock_diag and its budget; a gVisor server's FINs from the wire."""
    if wire.stack_of(ev, "server") != "gvisor":
        return (server_orphaned_in_last_ack, every_fin_acked_every_ack_lost, tlp_then_rto_doubling,
                orphan_retries_count, give_up_when_budget_spent, give_up_is_silent)
    return (on_wire.orphan_unseen, every_fin_acked_every_ack_lost, on_wire.fin_schedule, on_wire.no_budget_count,
            on_wire.no_budget_end, on_wire.give_up_unseen)


SCENARIO = Scenario(
    name="retransmitted-fin", intent=INTENT, run=run, analyse=Seen.of,
    checks=checks,
    precondition=precondition, shaping=OPTIONAL, port=PORT, key=KEY,
    sysctls={"server": {"net.ipv4.tcp_orphan_retries": "3"}},      # short: gives up ~6.5 s after close
    stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("FIN times (ms)", "tlp-then-rto-doubling", "fin_times_ms", rel_tol=0.1, abs_tol=20),
        KeyValue("retransmission kinds", "tlp-then-rto-doubling", "kinds"),
        KeyValue("first RTO (ms)", "tlp-then-rto-doubling", "rto0_ms", rel_tol=0.1),
        KeyValue("RTO retransmissions", "orphan-retries-count", "observed_rto_retransmissions"),
        KeyValue("gave up after (ms)", "give-up-when-budget-spent", "gone_after_first_fin_ms", rel_tol=0.1),
    ))
