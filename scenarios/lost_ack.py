"""lost-ack: the client's final ACK is lost; the server retransmits its FIN, and the client's
TIME-WAIT answers every copy and restarts its 2MSL timer.

Checks RFC 9293 §3.10.7.4 / RFC 793 p.73 (TIME-WAIT: "The only thing that can arrive in this state
is a retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout"), RFC 9293
§3.6.1 / RFC 1122 §4.2.2.13 (the side that closes first lingers in TIME-WAIT), and the classic
lesson that without that state the client answers the server's FIN with RST. Expectations (and the
intent the run announces) follow the client's net.ipv4.tcp_max_tw_buckets: at 0 the
kernel has no room for TIME-WAIT (tcp_time_wait(): TCPTimeWaitOverflow; reference R-MAX-TW-BUCKETS)
and the RST path is what must be observed - the RST in both captures, no further FIN, the server's socket CLOSE
(TCP_INFO) and gone (sock_diag) with ECONNRESET: the socket FAQ's "the server would see an error" (tcp_reset();
reading SO_ERROR clears it, so the lab's peer keeps the first error any step read: reference
R-LASTACK-RST).

    t      who      step                                   wire                      state
    0      server   listen :5000                                                     LISTEN
    0      client   connect                                SYN, SYN-ACK, ACK         ESTABLISHED
    0      client   send "hello"                           data ->, <- ACK
    0      client   close()                                FIN ->, <- ACK            client FIN_WAIT2
    0      router   drop every pure ACK client -> server
    0      server   shutdown(SHUT_WR)                      <- FIN                    server LAST_ACK
    0      client   (kernel) ACK, lost in the router       ACK -> x                  client TIME_WAIT
    0.2..  server   (kernel) FIN again: TLP, then 2 RTOs   <- FIN  (backoff)         timer back to 60 s
    ~0.9   router   lift the drop
    ~1.7   server   (kernel) FIN again; its ACK arrives    <- FIN, ACK ->            server socket gone
    end    client   still in TIME_WAIT (about 58 s left)
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import TCP_TIMEWAIT_LEN_MS
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.twprobe import probing_started
from lab.verdict import Check

from . import _lost_ack_wire as wired
from ._keys.lost_ack import KEY
from ._lost_ack_armed import CITE_TW_LEN, time_wait_armed_for_60s
from ._lost_ack_rst import NO_TIME_WAIT_CHECKS
from ._lost_ack_v6 import CLIENT_TCLASS, SERVER_TCLASS, ack_flow_label, mapped_answers_over_ipv4, rst_flow_label
from ._steps import client_closes_first

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence
    from lab.packets import Segment

INTENT = "the final ACK is lost; TIME-WAIT re-ACKs each retransmitted FIN and restarts its 2MSL timer"
INTENT_NO_TIME_WAIT = ("tcp_max_tw_buckets=0: no TIME-WAIT on the client, so the server's FIN meets a RST "
                       "that ends the server's connection at once")
PORT = 5000
RETRANSMISSIONS_UNDER_DROP = 2        # RTO retransmissions of the FIN (sock_diag idiag_retrans; the
                                      # tail-loss probe before them is not counted) before lifting

CITE_ACK_RESTART = ("RFC 9293 §3.10.7.4 (RFC 793 p.73): TIME-WAIT, FIN arrives: acknowledge it, restart "
                    "the 2 MSL timeout; Linux tcp_timewait_state_process() (reference R-TW-FIN)")
CITE_CLOSER_WAITS = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first lingers in TIME-WAIT"
CITE_RETRANSMIT = ("RFC 9293 §3.8.1 and RFC 6298 §5.5: retransmit on RTO, doubling it each time (Linux sends "
                   "a tail-loss probe first: reference R-TLP)")
CITE_DROP = "lab fault: nft drop of pure ACKs client->server in the router's forward path"


def run(lab: Lab) -> dict:
    if wire.any_gvisor(lab):                  # no sock_diag there: the same steps, on the wire
        return wired.run(lab, PORT)

    v6 = lab.family == 6        # each end's own traffic class: whose an answer carries (_lost_ack_v6)
    server, client = client_closes_first(lab, PORT, {"tclass": SERVER_TCLASS} if v6 else {},
                                         {"tclass": CLIENT_TCLASS} if v6 else {})   # ... FIN_WAIT2

    lab.faults.drop("lost-ack", lab.host("client"), lab.host("server"), flags="ack")
    server.shutdown("conn", "wr")                                # <- FIN, server LAST_ACK

    def retransmitted_enough_or_closed():
        socks = lab.sockets("server", {"LAST_ACK"})
        return not socks or socks[0].retrans >= RETRANSMISSIONS_UNDER_DROP
    lab.wait_for(f"{RETRANSMISSIONS_UNDER_DROP} retransmissions of the server's FIN",
                 retransmitted_enough_or_closed, timeout_s=15)
    lab.faults.lift("lost-ack")

    lab.wait_for("the server's socket to leave LAST_ACK",
                 lambda: not lab.sockets("server", {"LAST_ACK"}), timeout_s=15)
    after = server.info("conn")
    client_end = lab.sockets("client")
    server.close("conn")
    server.close("L")
    return {
        # the first error the server's socket reported to any step (reading SO_ERROR clears it)
        "server_so_error": after.result.get("so_error_seen", after["so_error"]),
        "server_state_after": after["state"],
        "client_sockets_at_end": [s.to_json() for s in client_end],
        "client_port": next(r for r in client.results if r.op == "connect")["local"][1],
    }


def _no_time_wait(sysctls) -> bool:
    """The client's tcp_max_tw_buckets is 0: no TIME-WAIT socket can be made there."""
    return int(sysctls.get("client", {}).get("net.ipv4.tcp_max_tw_buckets", "1")) == 0


def intent(sysctls) -> str:
    """What this run shows, given the sysctls in force (read back from each host)."""
    return INTENT_NO_TIME_WAIT if _no_time_wait(sysctls) else INTENT


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """The connection as the captures show it: the server's FINs where they left and where they
    arrived, and the client's answer to each (the ACK it sent before the next FIN arrived)."""

    ev: Evidence
    conn: Conn
    fins_srv: list[Segment]          # the server's FINs in server.pcap
    fins_cli: list[Segment]          # ... in client.pcap
    answers: list[Segment | None]    # the client's ACK of each FIN in fins_cli, or None
    drop: dict                       # the router's fault, as lab.faults recorded it

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        conn = ev.conn(_client_port(ev), PORT)
        fins_cli = conn.segments("client", sender="server", flag="FIN")
        answers = []
        for i, f in enumerate(fins_cli):
            until = fins_cli[i + 1].t if i + 1 < len(fins_cli) else float("inf")
            answers.append(next((a for a in ev.acks_of("client", f, after=f.t) if a.t < until), None))
        return cls(ev, conn, conn.segments("server", sender="server", flag="FIN"), fins_cli, answers,
                   ev.faults.get("lost-ack", {}))

    @property
    def fin_times(self) -> list[float]:
        return [f.t for f in self.fins_srv]

    @property
    def lifted(self) -> float:
        """When the drop went: at some moment between asking nft and nft returning, so ACKs sent
        before the asking were certainly under it."""
        return self.drop.get("lift_asked_at") or self.drop.get("removed_at") or float("inf")


def _client_port(ev: Evidence) -> int | None:
    """The client's port: from its connect() (facts), else its SYN in client.pcap."""
    if ev.facts.get("client_port"):
        return ev.facts["client_port"]
    syn = next((s for s in ev.segments("client", src="client", flag="SYN")), None)
    return syn.sport if syn else None


# -- TIME-WAIT holds: the checks, in the timeline's order ----------------------------------------

def closer_holds_time_wait(s: Seen) -> Check:
    """The side that closed first holds TIME-WAIT, the other never does (which means something only
    where sock_diag saw the server's socket of the connection at all)."""
    cli_tw, srv_tw = s.ev.ever_in("client", "TIME_WAIT"), s.ev.ever_in("server", "TIME_WAIT")
    cli_seen, srv_seen = s.conn.followed("client"), s.conn.followed("server")
    ok = cli_tw and not srv_tw
    unseen = [h for h, seen in (("client", cli_seen), ("server", srv_seen)) if not seen]
    observed = (f"sock_diag: client {'entered' if cli_tw else 'never entered'} TIME_WAIT, "
                f"server {'entered' if srv_tw else 'never entered'} it"
                + (f" (the {' and '.join(unseen)}'s socket of this connection never sampled)" if unseen else ""))
    # a claim of absence rests on a socket sock_diag saw: the server's "never", the client's "never"
    unknown = (ok and not srv_seen) or (not cli_tw and not cli_seen and not srv_tw)
    return Check.judged(
        "client-closed-first-holds-time-wait", CITE_CLOSER_WAITS,
        "client enters TIME_WAIT; server never does", observed, None if unknown else ok,
        {"client_time_wait": cli_tw, "server_time_wait": srv_tw, "client_sampled": cli_seen,
         "server_sampled": srv_seen},
        missing=f"{observed}: the {' and '.join(unseen)}'s states are not known")


def server_retransmits_fin(s: Seen) -> Check:
    """The server retransmits its FIN (one sequence number) at growing intervals. With tail-loss
    probes on (tcp_early_retrans 3 or 4) the first retransmission is a probe sent after ~2 x SRTT,
    not an RTO: over a long path it can come later than the first RTO gap, so the backoff is
    judged on the RTO retransmissions after it."""
    times = s.fin_times
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    seqs = sorted({f.seq for f in s.fins_srv})
    tlp = s.ev.sysctl("server", "net.ipv4.tcp_early_retrans", "3") in ("3", "4")
    rto_gaps = gaps[1:] if tlp else gaps
    doubled = any(later >= 1.8 * earlier for i, earlier in enumerate(rto_gaps) for later in rto_gaps[i + 1:])
    growing = all(b >= 0.9 * a for a, b in zip(rto_gaps, rto_gaps[1:]))
    ok = len(s.fins_srv) >= 3 and len(seqs) == 1 and len(rto_gaps) >= 2 and growing and doubled
    hole = s.ev.capture_hole("server")
    if not ok and len(seqs) <= 1 and hole:
        ok = None       # a FIN among tcpdump's drops would change the count and merge two intervals
    return Check.judged(
        "server-retransmits-fin", CITE_RETRANSMIT,
        ">= 3 FINs from the server with one sequence number; "
        + ("after the tail-loss probe, " if tlp else "") + "RTO intervals not shrinking, the RTO doubling",
        f"server.pcap: {len(s.fins_srv)} FINs, seq {seqs}, intervals {gaps} s"
        + (f" (the first is the tail-loss probe's wait; RTO gaps {rto_gaps})" if tlp else ""),
        ok, {"fin_count": len(s.fins_srv), "fin_seqs": seqs, "fin_times": times, "intervals_s": gaps,
             "rto_intervals_s": rto_gaps, "tail_loss_probe": tlp},
        missing=f"server.pcap: {len(s.fins_srv)} FINs, intervals {gaps} s, but {hole}: a FIN may be missing")


def time_wait_acks_every_fin(s: Seen) -> Check:
    """TIME-WAIT acknowledges every FIN that reaches the client. A RST in answer is a wrong segment
    the capture shows; a FIN or ACK absent from a capture whose tcpdump dropped packets may have
    been on the wire: not judged."""
    first = s.fin_times[0] if s.fin_times else (s.fins_cli[0].t if s.fins_cli else 0.0)
    unanswered = [round(f.t - first, 3) for f, a in zip(s.fins_cli, s.answers) if a is None]
    acks = [a for a in s.answers if a is not None]
    probed = probing_started(s.ev.facts)       # a wire run's prober: its answers are not the close's
    rsts = [r for r in s.conn.segments("client", sender="client", flag="RST",
                                       after=s.fins_cli[0].t if s.fins_cli else None)
            if probed is None or r.t < probed] if s.fins_cli else []
    hole = s.ev.capture_hole("client")
    ok = bool(s.fins_cli) and not unanswered and len(s.fins_cli) >= 3
    observed = (f"client.pcap: {len(s.fins_cli)} FINs arrived, {len(acks)} answered by an ACK"
                + (f"; unanswered at {unanswered}" if unanswered else "")
                + (f"; {len(rsts)} RSTs from the client" if rsts else ""))
    return Check.judged(
        "time-wait-acks-every-fin", CITE_ACK_RESTART,
        "an ACK leaves the client after each FIN from the server",
        observed, False if rsts else None if not ok and hole else ok,
        {"fins_at_client": len(s.fins_cli), "acks_from_client": len(acks)},
        missing=f"{observed}, but {hole}: a FIN or its ACK may be among them")


def final_ack_lost_then_delivered(s: Seen) -> Check:
    """The client's ACKs never reached the server while the drop was in force; the next one did.
    An ACK under the drop that reached server.pcap, or fewer drops than nft counted, is on the
    record; too few ACKs in client.pcap, or the next one absent from server.pcap, may be tcpdump's
    drops (the drop's own proof is nft's counter, not an absence)."""
    acks = [a for a in s.answers if a is not None]
    during = [a for a in acks if a.t < s.lifted]
    after = [a for a in acks if a.t >= s.lifted]
    reached = [a for a in during if s.conn.arrived(a, "server")]
    after_reached = [a for a in after if s.conn.arrived(a, "server")]
    dropped = s.drop.get("dropped", 0)
    ok = len(during) >= 2 and not reached and bool(after_reached) and dropped >= len(during)
    hole = s.ev.capture_hole("client", "server")
    if not ok and hole and not reached and dropped >= len(during):
        ok = None
    said = (f"{len(during)} ACKs sent under the drop, {len(reached)} of them in server.pcap, nft dropped "
            f"{dropped}; after lifting {len(after)} sent, {len(after_reached)} arrived")
    return Check.judged(
        "final-ack-lost-then-delivered", CITE_DROP,
        ">= 2 client ACKs dropped (in client.pcap, absent from server.pcap); after the drop is lifted "
        "the next ACK reaches the server",
        said, ok, {"acks_under_drop": len(during), "acks_under_drop_seen_by_server": len(reached),
                   "nft_dropped": dropped, "drop_times": s.drop.get("drop_times", []),
                   "acks_after_lift": len(after), "acks_after_lift_seen_by_server": len(after_reached)},
        missing=f"{said} - but {hole}: the ACKs missing may be among them")


def time_wait_timer_restarts(s: Seen) -> Check:
    """After each retransmitted FIN, when the client's TIME-WAIT timer is due. The kernel restarts
    the timer before it sends the ACK (tcp_timewait_state_process(): inet_twsk_reschedule(), then
    TCP_TW_ACK), so every sock_diag sample asked after that ACK left must show the new deadline;
    each sample bounds the due time (Evidence.due_times), the narrowest tells. No sample between
    that ACK and the next FIN is a hole in the observation (the sampler fell behind): inconclusive
    for that FIN, never a failure."""
    ev, fins = s.ev, s.fins_cli
    tol_ms = 2 * 1000 / (ev.hz or 100) + 20      # two jiffies + a margin for the clocks
    offsets, widths, acks_ms, holes = [], [], [], []
    for i, f in enumerate(fins[1:], start=1):
        nxt = fins[i + 1].t if i + 1 < len(fins) else f.t + 5
        start = s.answers[i].t if s.answers[i] is not None else f.t
        # the restart lies between the FIN's capture and its ACK's: a loaded (or emulated) stack
        # may take tens of ms to process the FIN, and the ACK leaves only after the restart
        acks_ms.append(round((start - f.t) * 1000))
        want_lo = f.t + TCP_TIMEWAIT_LEN_MS / 1000
        want_hi = start + TCP_TIMEWAIT_LEN_MS / 1000
        window = ev.due_times("client", start, nxt)
        if not window:
            offsets.append(None)
            widths.append(None)
            gap = ev.sampler_gap_ms(start, nxt)
            holes.append(f"after the FIN at +{f.t - fins[0].t:.3f} s no sample before the next FIN"
                         + (f" (the sampler's longest gap there: {gap} ms)" if gap else ""))
            continue
        # samples a FIN's processing may not have reached yet (no ACK to time it by) are skipped
        reached = [b for b in window if b[1] >= want_lo - tol_ms / 1000] or window
        lo, hi = min(reached, key=lambda b: b[1] - b[0])
        point = hi if hi < want_lo else lo if lo > want_hi else min(max(lo, want_lo), hi)   # nearest the want
        offsets.append(round((point - f.t) * 1000))
        widths.append(round((hi - lo) * 1000, 1))
    judged = [(o, a) for o, a in zip(offsets, acks_ms) if o is not None]
    wrong = [o for o, a in judged if not TCP_TIMEWAIT_LEN_MS - tol_ms <= o <= TCP_TIMEWAIT_LEN_MS + a + tol_ms]
    if len(fins) < 2:
        holes.append(f"client.pcap has {len(fins)} FINs from the server ({ev.capture_hole('client')})")
        ok = None if ev.capture_hole("client") else False
    else:
        ok = False if wrong else (None if holes else True)
    return Check.judged(
        "time-wait-timer-restarts", CITE_ACK_RESTART,
        f"after each retransmitted FIN the client's TIME-WAIT timer is due {TCP_TIMEWAIT_LEN_MS} ms "
        f"after that FIN, or after its processing, which ends when the ACK leaves (+- {tol_ms:.0f} ms)",
        f"sock_diag: {max(len(fins) - 1, 0)} retransmitted FINs; timer due, after each, in {offsets} ms "
        f"from that FIN (its ACK left {acks_ms} ms after it)",
        ok, {"due_after_fin_ms": offsets, "ack_after_fin_ms": acks_ms, "sample_width_ms": widths,
             "tolerance_ms": tol_ms},
        missing=f"{'; '.join(holes)}; judged {len(judged)} of {len(offsets)}: due {offsets} ms")


def close_completes_client_keeps_time_wait(s: Seen) -> Check:
    """The server's socket closes cleanly; the client stays in TIME-WAIT."""
    end = s.ev.facts.get("client_sockets_at_end", [])
    left = [x for x in end if x["state"] == "TIME_WAIT"]
    so_error = s.ev.facts.get("server_so_error")
    return Check(
        "close-completes-client-keeps-time-wait", CITE_CLOSER_WAITS,
        "server socket gone with no error (SO_ERROR 0); client still in TIME_WAIT",
        f"server SO_ERROR={so_error} ({errno.errorcode.get(so_error, '-') if so_error else 'none'}), "
        f"state {s.ev.facts.get('server_state_after')}; client sockets at end: "
        f"{[(x['state'], round(x['expires_ms'] / 1000, 1)) for x in end]}",
        so_error == 0 and bool(left),
        {"server_so_error": so_error, "client_time_wait_left_ms": [x["expires_ms"] for x in left]})


TIME_WAIT_CHECKS = (closer_holds_time_wait, server_retransmits_fin, time_wait_acks_every_fin,
                    final_ack_lost_then_delivered, time_wait_timer_restarts,
                    close_completes_client_keeps_time_wait, time_wait_armed_for_60s, ack_flow_label)


def checks(ev: Evidence):
    """Expectations follow the client's tcp_max_tw_buckets in force; with a gVisor host, its states
    come from the wire (_lost_ack_wire.py); a v4-mapped client (--mapped) adds whose code answered."""
    if wire.any_gvisor(ev):
        return gvisor_checks(ev)
    chosen = (*NO_TIME_WAIT_CHECKS, rst_flow_label) if _no_time_wait(ev.sysctls) else TIME_WAIT_CHECKS
    return (*chosen, mapped_answers_over_ipv4) if ev.options.get("mapped") else chosen


def gvisor_checks(ev: Evidence):
    """A gVisor host in the run: the client's TIME-WAIT judged from the router's prober, the
    server's retransmissions from its capture; what needs sock_diag on a gVisor client is n/a."""
    linux_client = wire.stack_of(ev, "client") == "linux"
    na = lambda fn, name, expected: (fn if linux_client else
                                     lambda s: wired.not_applicable(name, CITE_TW_LEN, expected))
    return (wired.closer_holds_time_wait_wire, wired.server_fin_schedule, time_wait_acks_every_fin,
            final_ack_lost_then_delivered,
            time_wait_timer_restarts if linux_client else wired.time_wait_restarts_on_the_wire,
            close_completes_wire,
            na(time_wait_armed_for_60s, "time-wait-armed-for-60s", "TIME_WAIT timer armed at 60 s (sock_diag)"),
            wired.time_wait_length_on_the_wire)


def close_completes_wire(s: Seen) -> Check:
    """The server's socket closes cleanly (its SO_ERROR, read by the peer in either stack); the
    client still holds TIME-WAIT then (the prober's first answer)."""
    so_error = s.ev.facts.get("server_so_error")
    answers = (s.ev.facts.get("client_probe") or {}).get("answers", [])
    first = answers[0]["answer"] if answers else None
    return Check(
        "close-completes-client-keeps-time-wait", CITE_CLOSER_WAITS,
        "server socket gone with no error (SO_ERROR 0); client still in TIME-WAIT (answers the probe)",
        f"server SO_ERROR={so_error} ({errno.errorcode.get(so_error, '-') if so_error else 'none'}), "
        f"state {s.ev.facts.get('server_state_after')}; the client's first answer to the prober: {first}",
        so_error == 0 and first == "ack", {"server_so_error": so_error, "first_answer": first})


SCENARIO = Scenario(
    name="lost-ack", intent=INTENT, run=run, analyse=Seen.of, checks=checks, intent_for=intent,
    shaping=OPTIONAL, port=PORT, key=KEY, stacks=("linux", "gvisor"), mapped_client=True,
    key_values=(
        KeyValue("TIME-WAIT armed (ms)", "time-wait-armed-for-60s", "first_expires_ms", abs_tol=50),
        KeyValue("server FINs (1 + retransmissions)", "server-retransmits-fin", "fin_count"),
        KeyValue("FIN times (s from the first)", "server-retransmits-fin", "fin_times",
                 rel_tol=0.1, abs_tol=0.02, relative_to_first=True),
        KeyValue("FIN intervals (s)", "server-retransmits-fin", "intervals_s", rel_tol=0.1, abs_tol=0.02),
        KeyValue("TIME-WAIT timer after each FIN (ms)", "time-wait-timer-restarts", "due_after_fin_ms",
                 abs_tol=50),
        KeyValue("TCPTimeWaitOverflow (no TIME-WAIT)", "no-time-wait-state", "TCPTimeWaitOverflow"),
        KeyValue("TIME-WAIT on the wire, gone by (s after the last ACK)", "time-wait-length-on-the-wire",
                 "gone_by_s", abs_tol=2.5),
    ))
