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
§3.10.7.1). TIME-WAIT lives 60 s from the last segment that restarted it (R-TW-LEN): when every
re-ACK and every FIN for longer than that is lost, it runs out and the next FIN meets that RST -
Linux's lawful end (RFC 9293's 240 s would have held), reported and not failed (seen once in 20
runs over IPv6 in Debian 12's kernel: 62.2 s with nothing getting through).
Flip it with --sysctl client:net.ipv4.tcp_max_tw_buckets=0: no room for TIME-WAIT
(reference R-MAX-TW-BUCKETS), and each lost final ACK then costs the server a reset.

Either end may run gVisor's netstack (--stack client=gvisor, server=gvisor, or both; in a VM,
which has netem): the closes are judged from the same captures; a gVisor server's end is waited for
on the router's capture, its RTO floor is gVisor's own, and a gVisor client's TIME-WAIT is asked
of each 4-tuple from the router afterwards (scenarios/_lossy_wire.py).

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

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.errors import UsageError, WaitTimeout
from lab.kernel import TCP_RTO_MAX_MS
from lab.scenario import KeyValue, Scenario
from lab.shaping import REQUIRED, seeding

from ._keys.lossy_link import KEY
from ._lossy_checks import (
    closer_holds_time_wait,
    every_close_completes,
    loss_matches_the_link,
    lost_final_ack_answered_by_rst,
    lost_final_ack_costs_an_rto,
    lost_final_ack_saved_by_time_wait,
)
from ._lossy_closes import GROUPS, PORT, Close, Seen, groups, no_time_wait
from ._orphan_budget import budget_of

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence

INTENT = ("random loss on the link: over many closes, how often the final ACK is lost, how often "
          "TIME-WAIT's re-ACK saves the close, and how long closes take")
LINK = ("both:delay_ms=10,loss_pct=20",)    # the link when --shape gives none
CLOSES = 100


def run(lab: Lab) -> dict:
    asked = {(sh.src, sh.dst): sh.profile for sh in lab.shaping}
    if not any(p.loss_pct > 0 for p in asked.values()):
        raise UsageError("lossy-link needs loss on the link: give --shape with loss_pct above 0 (e.g. "
                         "both:loss_pct=20,delay_ms=10), or no --shape for the scenario's own link")
    facts = lab.facts
    facts.update(closes=CLOSES)

    # open every connection over the link without its loss: a lost SYN or SYN-ACK backs the
    # connection's RTO off (seen: 4 SYN-ACKs lost, then the close's FIN retransmitted after 33 s
    # and 47 s), which would measure the opening's luck, not the close
    _without_loss(lab, asked)
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

    _wait_for_the_server(lab, facts["client_ports"])
    if wire.stack_of(lab, "client") == "gvisor":     # no sock_diag there: ask each 4-tuple from the router
        _without_loss(lab, asked)                     # the probes must not be lost on the link
        facts["client_probes"] = twprobe.probe_each(lab, "client", "server", [(p, PORT) for p in facts["client_ports"]])
    else:
        facts["client_sockets_at_end"] = [s.to_json() for s in lab.sockets("client")]
    server.close("L")
    return facts


def _without_loss(lab: Lab, asked: dict) -> None:
    """The link as asked (*asked*: (src, dst) -> profile), its loss set to 0."""
    for (src, dst), profile in asked.items():
        lab.reshape(src, dst, replace(profile, loss_pct=0.0))


def _wait_for_the_server(lab: Lab, client_ports: list[int]) -> None:
    """Until every server connection has left LAST-ACK: sock_diag on Linux; on gVisor (which has
    none) the router's capture facing the server, where each FIN's ACK (or the client's RST) is
    seen once netem has let it through. A gVisor server still unanswered when its watch ends is
    still retransmitting lawfully (it has no orphan limit within the watch): those closes are
    recorded (facts["watch_ended"]) for every-close-completes to leave unjudged, not a run error."""
    if wire.stack_of(lab, "server") == "gvisor":
        def unanswered():
            segs = wire.at_router(lab, "server")
            return [port for port in client_ports if not wire.fin_answered(segs, PORT, port)]
        watch_s = gvisor_last_ack_watch_s()
        try:
            lab.wait_for("every server FIN acknowledged or reset (on the wire)", lambda: not unanswered(),
                         timeout_s=watch_s)
        except WaitTimeout:
            left = unanswered()
            lab.facts["watch_ended"] = {"watch_s": round(watch_s, 1), "ports": left}
            lab.progress(f"lossy-link: {len(left)} of the gVisor server's closes still unanswered after its "
                         f"{watch_s:.0f} s watch (ports {left[:8]}): not judged")
        return
    lab.wait_for("every server connection to leave LAST_ACK",
                 lambda: not [s for s in lab.sockets("server") if s.dport != 0],
                 timeout_s=last_ack_deadline_s(lab.sysctls.get("server", {}).get("net.ipv4.tcp_orphan_retries")))


def last_ack_deadline_s(orphan_retries: str | None) -> float:
    """How long a Linux server's orphaned LAST-ACK may keep its FIN going: its orphan budget from the
    first retransmission (tcp_orphan_retries, 0 meaning 8: 102.2 s; scenarios/_orphan_budget.py),
    then at most TCP_RTO_MAX until the timeout that finds it spent, and a margin for the first RTO.
    Every lawful end comes within it: the re-ACK through, a RST once the client's TIME-WAIT ran
    out, or the server giving up. Nearly every run ends in seconds. A fixed 90 s cut one short in a
    clean-clone CI (Debian 12's 6.1 under TCG): every FIN and re-ACK of one close lost for 60 s at
    20 % each way, its next FIN due 58 s after the last, at 118 s."""
    _, _, budget_ms = budget_of(orphan_retries)
    return (budget_ms + TCP_RTO_MAX_MS) / 1000 + 10


GVISOR_RTO_S = (0.2, 120.0)      # gVisor's RTO after the handshake here, and its cap (snd.go, MaxRTO)
GVISOR_WATCHED_RETRANSMISSIONS = 10


def gvisor_last_ack_watch_s(retransmissions: int = GVISOR_WATCHED_RETRANSMISSIONS) -> float:
    """How long the run watches a gVisor server's FINs for an answer: its first *retransmissions*
    RTOs (from 0.2 s, doubling, capped at 120 s: 204.6 s for ten) and a margin. gVisor has no
    orphan limit: a closed endpoint gives up only after TCPMaxRetriesOption (15) retransmissions,
    about 15 minutes at that backoff, so the watch cannot reach every lawful end, only make an
    unanswered close unlikely: each FIN gets through and draws an answer that gets back with
    probability 0.64 at 20 % each way. Nearly every run ends in seconds. A fixed 90 s cut one short
    in a clean-clone CI (Debian 12 under TCG, both ends on gVisor): one close lost its FINs or their
    ACKs ten times in 53 s, its next FIN due at 105 s."""
    first, cap = GVISOR_RTO_S
    return sum(min(first * 2 ** i, cap) for i in range(retransmissions)) + 10


# -- the checks, in the timeline's order (scenarios/_lossy_checks.py, on scenarios/_lossy_closes.py's
# reading of the captures); which ones follow the client's tcp_max_tw_buckets ------------------------

def checks(ev: Evidence):
    """With TIME-WAIT its re-ACK saves each lost final ACK, at the cost of an RTO; without (the
    client's tcp_max_tw_buckets=0) a RST answers, and may also answer another segment (e.g. the
    ACK of a retransmitted client FIN) and end the close early: the RTO claim is TIME-WAIT's."""
    if no_time_wait(ev):
        return (loss_matches_the_link, every_close_completes, closer_holds_time_wait, lost_final_ack_answered_by_rst)
    return (loss_matches_the_link, every_close_completes, closer_holds_time_wait, lost_final_ack_saved_by_time_wait,
            lost_final_ack_costs_an_rto)


def _ladder_focus(report: dict) -> tuple[int, str] | None:
    """The close the terminal's ladder draws: the one the heart check picked (ladder_port)."""
    values = next((c["values"] for c in report.get("checks", [])
                   if (c.get("values") or {}).get("ladder_port") is not None), None)
    return (values["ladder_port"], values.get("ladder_why")) if values else None


def _summary(report: dict) -> list[str]:
    """Lines for the terminal view: the counts and the close-time distribution."""
    checks_ = {c["name"]: c for c in report.get("checks", [])}
    heart = checks_.get("lost-final-ack-saved-by-time-wait") or checks_.get("lost-final-ack-answered-by-rst")
    if not heart:
        return []
    h, link = heart["values"], checks_.get("loss-matches-the-link")
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
    if h.get("still_going"):
        out.append(f"not judged: {len(h['still_going'])} closes still going when the watch of the server ended "
                   f"(ports {h['still_going'][:8]})")
    return out + _distribution_lines((checks_.get("lost-final-ack-costs-an-rto") or heart)["values"]["distribution"])


def _close_times(report: dict) -> dict | None:
    """Each completed close's time (the client's first FIN to the server's end) by what the close
    lost, from the connections a heart check recorded: the HTML report's CDF."""
    conns = next(((c.get("values") or {})["connections"] for c in report.get("checks", [])
                  if "connections" in (c.get("values") or {})), None)
    if not conns:
        return None
    closes = [Close(**d, fins_seen="close_ms" in d) for d in conns]
    return {"title": "Close times by what the close lost", "xlabel": "client's first FIN to the server's end (ms)",
            "classes": {GROUPS[k]: [c.close_ms for c in v] for k, v in groups(closes).items()}}


def _distribution_lines(dist: dict) -> list[str]:
    out = [f"{'close time (client FIN -> server done), ms':<44}{'n':>4}{'min':>8}{'p50':>8}{'p90':>8}{'max':>8}"]
    for key, g in dist.items():
        name, st = GROUPS.get(key, key), g["close_ms"]      # (reports before the plain keys: the label itself)
        if not st.get("n"):
            out.append(f"  {name:<42}{0:>4}")
            continue
        out.append(f"  {name:<42}{st['n']:>4}{st['min']:>8.1f}{st['p50']:>8.1f}{st['p90']:>8.1f}{st['max']:>8.1f}")
    return out


SCENARIO = Scenario(
    name="lossy-link", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=REQUIRED, port=PORT, link=LINK, key=KEY, stacks=("linux", "gvisor"),
    key_values=(
        # counts of a random process: each run draws its own losses (no seed on 6.1), so only a
        # large difference says something about the kernel
        KeyValue("final ACKs lost (of 100 closes)", "lost-final-ack-*", "final_ack_lost", abs_tol=20),
        KeyValue("saved by TIME-WAIT's re-ACK", "lost-final-ack-saved-by-time-wait", "saved_by_reack", abs_tol=20),
        KeyValue("closes ended by a RST", "lost-final-ack-*", "ended_by_rst", abs_tol=20),
        KeyValue("server's wait after a lost final ACK, min (ms)", "lost-final-ack-costs-an-rto",
                 "final_ack_lost_server_wait_ms_min", abs_tol=50),
        KeyValue("close time, median (ms)", "lost-final-ack-costs-an-rto", "close_ms_p50", rel_tol=0.5),
        KeyValue("netem seed reported", "loss-matches-the-link", "seeded"),
    ),
    random_counts=True, ladder_focus=_ladder_focus, summary=_summary, distribution=_close_times)
