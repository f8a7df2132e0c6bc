"""lossy-link: random loss on the link, not a targeted drop. Over many close handshakes, how often
is the final ACK lost, how often does TIME-WAIT's re-ACK save the close, and how long do closes
take?

The lab's other scenarios lose one chosen packet; here netem drops each packet crossing the router
with probability p (the scenario's own link: 20 % each way and 10 ms of delay each way; --shape
replaces it). CLOSES connections are opened at once over the link with its loss set to 0 (a lost
SYN or SYN-ACK backs off the connection's RTO, and the close would then measure the opening's luck:
seen here, a connection whose SYN-ACK was lost four times retransmitted its FIN after 33 s and 47 s);
then the loss is turned on, the client closes them all, and the server closes each when it reads the
client's FIN (what a plain server does). Everything is then read from the two captures: a segment
the sender's capture holds and the receiver's lacks was lost on the link (where tcpdump reports a
drop of its own, what the captures lack is not judged: inconclusive; a reset or a re-ACK they show
still fails). A run in which no final ACK was lost leaves the heart of it not applicable.

For each close: the client's FIN(s), the server's FIN(s), and the client's ACKs of the server's FIN.
The first of those ACKs is the final ACK of the handshake; when it is lost the server, in LAST-ACK,
retransmits its FIN after its retransmission timeout, and the client - which closed first, so holds
TIME-WAIT (RFC 9293 §3.6.1) - answers that FIN with an ACK again and restarts its 2MSL timer
(RFC 9293 §3.10.7.4: "The only thing that can arrive in this state is a retransmission of the remote
FIN. Acknowledge it, and restart the 2 MSL timeout."). That re-ACK is what lets the server close
cleanly; without TIME-WAIT the FIN would find no connection and be answered by RST (RFC 9293
§3.10.7.1). Flip it with --sysctl client:net.ipv4.tcp_max_tw_buckets=0: no room for TIME-WAIT
(reference R-MAX-TW-BUCKETS), and each lost final ACK then costs the server a reset.

netem's losses are seeded only from Linux 6.6 on (lab.shaping.seeding: the report names the seeds
the kernel used, and --shape ...,seed=N gives one); on Debian 12's 6.1 every run draws its own
pattern. Either way the order in which 100 concurrent closes reach the qdisc varies from run to
run, so the scenario counts outcomes over many closes and checks the loss it observed against the
rate the kernel's qdisc reports, not against one replayed pattern.

    t      who      step                                  wire                      state
    0      server   listen :5010                          (link: delay, no loss)
    0      client   connect x 100, at once                 SYN, SYN-ACK, ACK         ESTABLISHED
    0.1    server   accept x 100
    0.1    router   netem loss on (20 % each way)
    0.1    client   close() x 100                          FIN -> (some lost, RTO)   FIN_WAIT1/2
    0.1..  server   read EOF, close() each                <- FIN                    LAST_ACK
           client   (kernel) ACK: the final ACK           ACK -> (p of them lost)   TIME_WAIT
           server   (kernel) no ACK: FIN again after RTO  <- FIN                    LAST_ACK
           client   (kernel) TIME-WAIT re-ACKs it          ACK ->                    timer back to 60 s
    end    server   every connection gone; client: 100 x TIME_WAIT
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace

from lab.core import Lab
from lab.errors import UsageError, WaitTimeout
from lab.evidence import Evidence
from lab.packets import match_arrivals
from lab.shaping import REQUIRED, seeding
from lab.verdict import Check

NAME = "lossy-link"
INTENT = ("random loss on the link: over many closes, how often the final ACK is lost, how often "
          "TIME-WAIT's re-ACK saves the close, and how long closes take")
SHAPING = REQUIRED
SHAPE = ("both:delay_ms=10,loss_pct=20",)   # the link when --shape gives none
PORT = 5010
CLOSES = 100
SIGMAS = 4.0                    # the observed loss share must lie within p +- 4 sigma (binomial):
                                # a correct link fails this about once in 16 000 runs per direction
TCP_RTO_MIN_MS = 200.0          # include/net/tcp.h TCP_RTO_MIN (RFC 6298 §2.4 says 1 s; Linux 200 ms)

CITE_NETEM = ("netem (net/sched/sch_netem.c netem_enqueue(): a packet is dropped when a random draw falls "
              "under the loss probability, independently per packet); the rate is the kernel's qdisc, read back")
CITE_CLOSER = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first lingers in TIME-WAIT"
CITE_REACK = ("RFC 9293 §3.10.7.4 (RFC 793 p.73): TIME-WAIT, FIN arrives: acknowledge it, restart the 2 MSL "
              "timeout; RFC 9293 §3.10.7.4 LAST-ACK: the ACK of our FIN closes the connection; Linux "
              "tcp_timewait_state_process() -> TCP_TW_ACK")
CITE_RST = ("reference R-MAX-TW-BUCKETS: with tcp_max_tw_buckets exhausted a closing socket skips TIME-WAIT "
            "(TCPTimeWaitOverflow); a FIN that then arrives finds no connection and gets a RST "
            "(RFC 9293 §3.10.7.1, tcp_v4_send_reset()), which ends the server's LAST-ACK")
CITE_RTO = ("RFC 6298 §5 / RFC 9293 §3.8.1: an unacknowledged FIN is sent again when the retransmission "
            "timer expires; Linux's RTO is at least TCP_RTO_MIN = 200 ms (RFC 6298 §2.4 asks 1 s), so "
            "a lost final ACK costs at least 200 ms + srtt, and its retransmitted FIN's ACK another round trip")
CITE_ASSASSIN = ("RFC 1337 (TIME-WAIT assassination: a RST kills TIME-WAIT; fix F1 ignores it) and reference R-TW-RST, R-UNPROVOKED-TWA: "
                 "Linux tcp_timewait_state_process() kills on an in-window RST unless tcp_rfc1337=1")
CITE_CLOSE = ("RFC 9293 §3.6 (closing: each side's FIN is acknowledged; the connection ends in CLOSED "
              "without a reset)")


def run(lab: Lab) -> dict:
    asked = {(sh.src, sh.dst): sh.profile for sh in lab.shaping}
    if not any(p.loss_pct > 0 for p in asked.values()):
        raise UsageError(f"{NAME} needs loss on the link: give --shape with loss_pct above 0 (e.g. "
                         f"both:loss_pct=20,delay_ms=10), or no --shape for the scenario's own link")
    facts = lab.facts
    facts.update(closes=CLOSES)

    # open every connection over the link without its loss: a lost SYN or SYN-ACK backs the
    # connection's RTO off (seen: 4 SYN-ACKs lost, then the close's FIN retransmitted after 33 s
    # and 47 s), which would measure the opening's luck, not the close
    for (src, dst), profile in asked.items():
        lab.reshape(src, dst, replace(profile, loss_pct=0.0))
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", PORT, backlog=2 * CLOSES)
    opened = client.connect_many("c", CLOSES, lab.host("server").address, PORT, timeout_s=30)
    facts["connect"] = opened["connections"]
    facts["client_ports"] = [c["local"][1] for c in opened["connections"] if c.get("local")]
    if opened["failed"]:
        raise WaitTimeout(f"{len(opened['failed'])} of {CLOSES} connections did not open within 30 s")
    accepted = server.accept_many("L", "s", CLOSES, timeout_s=30)
    facts["accept"] = accepted["connections"]
    if accepted["missing"]:
        raise WaitTimeout(f"the server accepted {CLOSES - accepted['missing']} of {CLOSES} connections in 30 s")
    names = [c["name"] for c in accepted["connections"]]

    for (src, dst), profile in asked.items():                 # now the link loses packets
        lab.reshape(src, dst, profile)
    facts["links"] = {f"{a}->{b}": lab.link(a, b) for a, b in (("client", "server"), ("server", "client"))}
    facts["netem_seeded"], facts["netem_seed"] = seeding(lab.describe()["kernel"], facts["links"])
    lab.progress(f"netem losses {facts['netem_seed']}")
    facts["loss_from"] = time.time()
    facts["client_close"] = client.close_many([f"c{i}" for i in range(CLOSES)])["closed"]   # FIN x 100 ->
    served = server.close_on_eof(names, timeout_s=60)          # each: read EOF, close(): <- FIN
    facts["server_close"] = served["connections"]
    if served["open"]:
        raise WaitTimeout(f"{len(served['open'])} connections never delivered the client's FIN")

    def server_done():
        return not [s for s in lab.sockets("server") if s.dport != 0]
    lab.wait_for("every server connection to leave LAST_ACK", server_done, timeout_s=90)
    facts["client_sockets_at_end"] = [s.to_json() for s in lab.sockets("client")]
    server.close("L")
    return facts


# -- reading the captures -------------------------------------------------------------------------

def analyse(ev: Evidence) -> dict:
    """Every segment each end sent, whether it arrived, and per connection the close's story."""
    cli, srv = ev.addresses["client"], ev.addresses["server"]
    sent_c = [s for s in ev.packets.get("client", []) if s.src == cli and s.dst == srv]
    sent_s = [s for s in ev.packets.get("server", []) if s.src == srv and s.dst == cli]
    arrived = match_arrivals(sent_c, [s for s in ev.packets.get("server", []) if s.src == cli])
    arrived.update(match_arrivals(sent_s, [s for s in ev.packets.get("client", []) if s.src == srv]))
    # the link loses packets from loss_from on; a segment sent after the receiver's capture saw
    # its last packet cannot be judged
    loss_from = ev.facts.get("loss_from", 0.0)
    end_c = max((s.t for s in ev.packets.get("client", [])), default=0.0)
    end_s = max((s.t for s in ev.packets.get("server", [])), default=0.0)
    directions = {}
    for key, segs, end in (("client->server", sent_c, end_s), ("server->client", sent_s, end_c)):
        judged = [s for s in segs if loss_from <= s.t < end]
        directions[key] = {"sent": len(judged), "lost": sum(arrived[id(s)] is None for s in judged)}

    conns = []
    for port in ev.facts.get("client_ports", []):
        out_c = [s for s in sent_c if s.sport == port]
        out_s = [s for s in sent_s if s.dport == port]
        c_fins = [s for s in out_c if s.has("FIN")]
        s_fins = [s for s in out_s if s.has("FIN")]
        rec: dict = {"port": port, "client_fins": len(c_fins),
                     "client_fins_lost": sum(arrived[id(s)] is None for s in c_fins),
                     "server_fins": len(s_fins),
                     "server_fins_lost": sum(arrived[id(s)] is None for s in s_fins),
                     "segments_lost": sum(arrived[id(s)] is None for s in out_c + out_s)}
        if not c_fins or not s_fins:
            rec["complete"] = False
            conns.append(rec)
            continue
        fin_end = (s_fins[0].seq + s_fins[0].length + 1) & 0xFFFFFFFF
        # each FIN that reached the client (client.pcap's clock), and what the client answered:
        # an ACK of it, or a RST (a RST answering a segment with ACK carries seq = that ack, no ACK
        # bit: RFC 9293 §3.10.7.1)
        fins_in = sorted(t for s in s_fins if (t := arrived[id(s)]) is not None)
        first_in = fins_in[0] if fins_in else math.inf
        acks = [s for s in out_c if s.has("ACK") and not s.has("RST") and s.ack == fin_end and s.t >= first_in]
        rsts = [s for s in out_c if s.has("RST") and s.t >= first_in]
        answers = sorted(acks + rsts, key=lambda s: s.t)
        unanswered = sum(1 for i, t in enumerate(fins_in)
                         if not any(t <= a.t < (fins_in[i + 1] if i + 1 < len(fins_in) else math.inf)
                                    for a in answers))
        ends = [(arrived[id(s)], s) for s in answers if arrived[id(s)] is not None]
        end_t, end_seg = min(ends, key=lambda e: e[0]) if ends else (None, None)
        # the final answer to the server's FIN: an ACK from TIME-WAIT, or a RST where the client
        # kept no state
        first = answers[0] if answers else None
        rec.update({
            "final_acks": len(acks),
            "final_acks_lost": sum(arrived[id(a)] is None for a in acks),
            "final_answer": None if first is None else ("RST" if first.has("RST") else "ACK"),
            "final_ack_lost": first is not None and arrived[id(first)] is None,
            "rsts_lost": sum(arrived[id(r)] is None for r in rsts),
            "later_answers": "".join("R" if a.has("RST") else "A" for a in answers[1:]),
            # a RST from the server that reached the client after its answer, with seq = the
            # client's RCV.NXT (the ack its ACKs carry): in window for a TIME-WAIT
            "rst_in_window_at": next((t for r in out_s if r.has("RST") and acks and r.seq == acks[-1].ack
                                      and (t := arrived[id(r)]) is not None and t >= acks[0].t), None),
            "fins_reaching_client": len(fins_in),
            "fins_unanswered": unanswered,
            "rst_from_client": len(rsts),
            "ended_by": None if end_seg is None else ("RST" if end_seg.has("RST") else "ACK"),
            "ended_by_reack": end_seg is not None and not end_seg.has("RST") and end_seg is not first,
            "close_ms": None if end_t is None else round((end_t - c_fins[0].t) * 1000, 2),
            "server_wait_ms": None if end_t is None else round((end_t - s_fins[0].t) * 1000, 2),
            "t_client_fin": c_fins[0].t,
            "complete": end_t is not None,
        })
        conns.append(rec)
    return {"directions": directions, "connections": conns}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    q = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
    return {"n": len(v), "min": v[0], "p50": round(statistics.median(v), 2), "p90": round(q[8], 2),
            "max": v[-1]}


def _ladder(candidates: list[dict], why: str) -> dict:
    """The connection the terminal's ladder shows: of *candidates*, the one that lost the fewest
    other segments (the textbook case), and why it was chosen."""
    if not candidates:
        return {"ladder_port": None}
    best = min(candidates, key=lambda c: (c["segments_lost"], c.get("close_ms") or 0, c["port"]))
    return {"ladder_port": best["port"], "ladder_why": why + (
        "; the one with the fewest other losses" if len(candidates) > 1 else "")}


def distribution(conns: list[dict]) -> tuple[dict, dict]:
    """Close times (client's first FIN to the server's end, and the server's own wait from its
    first FIN), by what the close lost."""
    done = [c for c in conns if c.get("complete")]
    clean = [c for c in done if c["client_fins_lost"] == c["server_fins_lost"] == c["final_acks_lost"]
             == c.get("rsts_lost", 0) == 0]
    groups = {"all": done, "no segment of the close lost": clean,
              "final ACK lost": [c for c in done if c.get("final_ack_lost")],
              "other losses only": [c for c in done if c not in clean and not c.get("final_ack_lost")]}
    return ({k: {"close_ms": _stats([c["close_ms"] for c in v]),
                 "server_wait_ms": _stats([c["server_wait_ms"] for c in v])} for k, v in groups.items()},
            groups)


def _in_window(lost: int, sent: int, p: float) -> tuple[bool, float, float]:
    """Is *lost* of *sent* within p x sent +- SIGMAS binomial standard deviations (+- 1 for counting)?"""
    mean = p * sent
    half = SIGMAS * math.sqrt(sent * p * (1 - p)) + 1
    return mean - half <= lost <= mean + half, max(0.0, mean - half), mean + half


# -- judging: scenarios/_lossy_checks.py -----------------------------------------------------------

def check(ev: Evidence) -> list[Check]:
    from ._lossy_checks import judge

    return judge(ev)


def summary(report: dict) -> list[str]:
    """Lines for the terminal view: the counts and the close-time distribution."""
    checks = {c["name"]: c for c in report.get("checks", [])}
    heart = checks.get("lost-final-ack-saved-by-time-wait") or checks.get("lost-final-ack-answered-by-rst")
    cost = checks.get("lost-final-ack-costs-an-rto")
    link = checks.get("loss-matches-the-link")
    if not heart:
        return []
    h = heart["values"]
    d = (cost or heart)["values"]["distribution"]
    out = []
    if link:
        for key in ("client->server", "server->client"):
            v = link["values"].get(key, {})
            out.append(f"{key}: netem {v.get('loss_pct_qdisc')} % loss, {v.get('delay_ms_qdisc')} ms delay; "
                       f"lost {v.get('lost')} of {v.get('sent')} segments ({v.get('loss_pct_observed')} %)")
        out.append(f"netem {link['values'].get('seed')}")
    if "saved_by_reack" in h:
        needed = ", ".join(f"{v} after {k} re-ACK{'s' if int(k) > 1 else ''}"
                           for k, v in h["reacks_needed"].items())
        out.append(f"final ACK lost on {h['final_ack_lost']} of {h['closes']} closes; saved by TIME-WAIT's "
                   f"re-ACK: {h['saved_by_reack']} ({needed or 'none needed'}); ended by a reset: "
                   f"{h['ended_by_rst']}")
    else:
        out.append(f"no TIME-WAIT: final ACK (or RST) lost on {h['final_ack_lost']} of {h['closes']} closes; "
                   f"the FIN that came again got a RST on {h['answered_by_rst_after_loss']}, an ACK on "
                   f"{h['re_acked']}; {h['ended_by_rst']} closes ended by a RST")
    out.append(f"{'close time (client FIN -> server done), ms':<44}{'n':>4}{'min':>8}{'p50':>8}{'p90':>8}{'max':>8}")
    for name, g in d.items():
        s = g["close_ms"]
        if not s.get("n"):
            out.append(f"  {name:<42}{0:>4}")
            continue
        out.append(f"  {name:<42}{s['n']:>4}{s['min']:>8.1f}{s['p50']:>8.1f}{s['p90']:>8.1f}{s['max']:>8.1f}")
    return out
