"""lossy-link, the judgement: what the two captures, sock_diag and the counters say about many
closes over a lossy link, on the analysis of scenarios/_lossy_closes.py (scenarios/lossy_link.py
runs them and describes the rules); the checks in the order of the timeline. Not a scenario: the
leading underscore keeps it out of the catalog.

    t      who      step                                  wire                      state
    0.1    router   netem loss on (20 % each way)                                                1. the link
    0.1    client   close() x 100                          FIN -> (some lost, RTO)   FIN_WAIT1/2     2. every close
    0.1..  server   read EOF, close() each                <- FIN                    LAST_ACK
           client   (kernel) ACK: the final ACK           ACK -> (p of them lost)   TIME_WAIT       3. who holds it
           server   (kernel) no ACK: FIN again after RTO  <- FIN                    LAST_ACK
           client   (kernel) TIME-WAIT re-ACKs it          ACK ->                    timer back      4. saved (or RST)
    end    server   every connection gone; client: 100 x TIME_WAIT                                   5. what it cost

Losses are read from the captures (a segment the sender's capture holds and the receiver's lacks
was lost), so a capture whose tcpdump dropped packets (Evidence.capture_hole) can make a delivered
segment look lost: what such a capture does not show is not judged (inconclusive); what it does
show - a reset, a re-ACK, fewer losses than netem's rate - still fails. A rule whose event did not
happen in the run (no final ACK lost) is not applicable.
"""

from __future__ import annotations

from lab import wire
from lab.kernel import TCP_RTO_MIN_MS
from lab.verdict import Check

from ._lossy_closes import SIGMAS, Close, Seen, decided, distribution, gave_up, groups, in_window, still_going
from ._lossy_early_reset import provocation_words
from ._lossy_wire import (
    CITE_GVISOR_CLIENT,
    CITE_GVISOR_RTO,
    cite_for,
    closer_holds_time_wait_probed,
    rto_floor,
    server_seen,
)

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
            "a lost final ACK costs at least 200 ms (a lone FIN's tail-loss probe waits 2 x srtt + 200 ms), less the "
            "tick the timer was armed in, and its retransmitted FIN's ACK another round trip")
CITE_ASSASSIN = ("RFC 1337 (TIME-WAIT assassination: a RST kills TIME-WAIT; fix F1 ignores it) and reference "
                 "R-TW-RST, R-UNPROVOKED-TWA: Linux tcp_timewait_state_process() kills on an in-window RST unless "
                 "tcp_rfc1337=1")
CITE_EXPIRED = ("reference R-TW-LEN, R-TW-ACK-RESTART, R-FIN-TIMEOUT: the mini-socket lives 60 s (tcp_fin_timeout "
                "in FIN-WAIT-2) from the last segment that restarted it; then R-CLOSED-RST")
CITE_CLOSE = ("RFC 9293 §3.6 (closing: each side's FIN is acknowledged; the connection ends in CLOSED "
              "without a reset)")


def loss_matches_the_link(s: Seen) -> Check:
    """1. The link loses what netem says it loses. Capture drops can only add apparent losses: a
    share below the window still fails; any other share, or too few segments, cannot be judged."""
    ev = s.ev
    parts, values, inside_all, below, few = [], {}, True, False, False
    for key, d in s.directions.items():
        link = s.links.get(key) or {}
        inside, lo, hi = in_window(d.lost, d.sent, link.get("loss_pct", 0.0) / 100)
        inside_all, below, few = inside_all and inside, below or d.lost < lo, few or d.sent < 100
        share = d.lost / d.sent * 100 if d.sent else 0.0
        parts.append(f"{key}: {d.lost} of {d.sent} segments lost ({share:.1f} %; netem loss "
                     f"{link.get('loss_pct', 0):g} %, window {lo:.0f}..{hi:.0f})")
        values[key] = {"sent": d.sent, "lost": d.lost, "loss_pct_observed": round(share, 2),
                       "loss_pct_qdisc": link.get("loss_pct"), "delay_ms_qdisc": link.get("delay_ms"),
                       "window": [round(lo, 1), round(hi, 1)]}
    drops = {h: k for h, k in ev.capture_drops().items() if h in ("client", "server")}
    if drops:       # a segment missing from a capture that dropped packets proves no loss
        parts.append(f"but tcpdump dropped packets ({drops}): the captures are incomplete, so no "
                     "loss here can be told from a capture drop")
    if not s.links or (below and not few):
        ok = False
    elif few or drops:
        ok = None
    else:
        ok = inside_all
    observed = "captures: " + "; ".join(parts)
    return Check.judged(
        "loss-matches-the-link", CITE_NETEM,
        f"each direction loses the share of segments its netem qdisc is set to (within {SIGMAS:g} sigma, "
        f">= 100 segments), by complete captures; {ev.facts.get('netem_seed', 'seeding unknown')}",
        observed, ok,
        {**values, "capture_drops": drops, "seeded": ev.facts.get("netem_seeded"), "seed": ev.facts.get("netem_seed")},
        missing=observed + ("" if drops else " - too few segments (under 100 in a direction) to tell a rate"))


def every_close_completes(s: Seen) -> Check:
    """2. Every close completes; with TIME-WAIT, without a reset - but for one its timer allowed:
    a RST answering a segment that came after the client's TIME-WAIT (or orphaned FIN-WAIT-2)
    had run out, every segment of the server's before it lost for 60 s and more. That is Linux's
    60 s (R-TW-LEN), where RFC 9293's 2 MSL of 240 s would have held; it is reported, not failed."""
    given_up = gave_up(s)
    watch = s.ev.facts.get("watch_ended") or {}
    incomplete = [x.port for x in s.conns if not x.complete and x.port not in given_up]
    going = still_going(s)              # a gVisor server's FIN lawfully going at the watch's end
    expired = {x.port: x.rst_after_expiry for x in s.conns if x.rst_after_expiry is not None}
    rst_ports = [x.port for x in s.conns if x.rst_from_client and x.port not in expired]
    resets = {x.port: x.early_reset for x in s.conns if x.reset_early}
    early = list(resets)
    eofs = s.ev.facts.get("server_close", [])
    app_errors = [x for x in eofs if x.get("error")]
    broken = len(s.conns) != s.n or app_errors or (not s.want_rst and rst_ports)
    unknown = incomplete and (s.hole or set(incomplete) <= set(going))
    ok = False if broken else (None if unknown else not incomplete)
    observed = (f"captures: {len(s.conns) - len(incomplete)} of {len(s.conns)} server connections ended"
                + (f" (not: ports {incomplete[:8]})" if incomplete else "")
                + f"; RSTs from the client on {len(rst_ports) + (0 if s.want_rst else len(expired))} connections"
                + (f" ({len(early)} before any server FIN reached it, its FIN acknowledged: ports {early[:8]}"
                   + provocation_words(resets) + ")"
                   if early else "")
                + ("" if s.want_rst or not expired else _expiry_words(expired)) + _give_up_words(given_up)
                + (f"; {len(going)} still unanswered when the {watch.get('watch_s')} s watch of the gVisor "
                   f"server ended (ports {going[:8]}): its FIN still lawfully retransmitted, gVisor having no "
                   "orphan limit within it" if going else "")
                + "; server read EOF on "
                f"{sum(1 for x in eofs if 'eof' in x)}, errors {[(x['name'], x['error']) for x in app_errors][:5]}")
    return Check.judged(
        "every-close-completes", CITE_RST if s.want_rst else CITE_CLOSE + "; " + CITE_EXPIRED,
        f"all {s.n} closes end at the server (the ACK or, with no TIME-WAIT, the RST of its FIN arrives); "
        "the server's application reads EOF on each" + ("" if s.want_rst else "; the client sends no RST while "
                                                       "its TIME-WAIT (or FIN-WAIT-2) lives"),
        observed, ok, {"closes": s.n, "incomplete": incomplete, "rst_ports": rst_ports,
                       "rst_after_expiry": expired, "app_errors": [x["name"] for x in app_errors],
                       "reset_early": early, "server_gave_up": given_up, "unanswered_at_watch_end": going},
        missing=f"{observed}; " + (f"the ends not seen may be in what tcpdump dropped ({s.hole})" if s.hole
                                   else "how those closes end was not watched"))


def _give_up_words(given_up: dict[int, dict]) -> str:
    if not given_up:
        return ""
    ports = "; ".join(f"port {p}: {g['retransmissions']} FIN retransmissions, gone "
                      f"{g['after_first_retransmission_s']:g} s after the first (budget {g['budget_s']:g} s)"
                      for p, g in list(given_up.items())[:4])
    return (f"; {len(given_up)} ended by the server giving up its orphaned LAST-ACK, no answer having reached it "
            f"(tcp_orphan_retries, RFC 1122 4.2.3.5's R2: {ports})")


def _expiry_words(expired: dict[int, float]) -> str:
    ports = "; ".join(f"port {p}: {g:g} s after the last segment that reached it" for p, g in list(expired.items())[:4])
    return f", {len(expired)} of them answering a FIN that came after its TIME-WAIT ran out ({ports})"


def closer_holds_time_wait(s: Seen) -> Check:
    """3. Who holds TIME-WAIT: the client, on every connection; the server never.
    A RST can reach a TIME-WAIT: the server, closed by the final ACK, resets a late segment of
    the connection (a FIN copy, or the ACK TIME-WAIT sent for a reordered old segment). In
    window (seq = RCV.NXT) and with tcp_rfc1337=0 it kills the TIME-WAIT - RFC 1337's
    assassination, here unprovoked - sometimes within milliseconds, before a sock_diag sample
    saw it. Such a connection counts as having held TIME-WAIT (its answer to the FIN is
    TIME-WAIT's; its end is the RST's) and is reported; with tcp_rfc1337=1 it must survive.
    Seen in TIME_WAIT by the sampler, or by the dump the scenario took at its end (a sock_diag
    dump is not atomic: with 200 sockets changing state under it, a dump can skip one - seen
    once, under qemu - and the sampler then thinks it gone until the next dump finds it). A
    connection never seen in TIME_WAIT whose killing RST a dropping capture may have missed
    cannot be judged."""
    ev = s.ev
    if wire.stack_of(ev, "client") == "gvisor":
        return closer_holds_time_wait_probed(s)
    still = {x.get("sport") for x in ev.facts.get("client_sockets_at_end", []) if x.get("state") == "TIME_WAIT"}
    ports = [x.port for x in s.conns]
    # (ports from the events' raw sockets: the recorded runs in tests/data keep only their 4-tuple and state)
    tw_ports = {e.data["socket"]["sport"] for e in ev.states("client") if e.state == "TIME_WAIT"} | still
    srv_tw = server_seen(s) and ev.ever_in("server", "TIME_WAIT")
    srv_rsts = ev.segments("server", src="server", flag="RST")
    rfc1337 = ev.sysctl("client", "net.ipv4.tcp_rfc1337", "0") == "1"
    hit = [x for x in s.conns if x.rst_in_window_at is not None]
    killed = [x for x in hit if x.port not in still]
    unseen_killed = [x.port for x in killed if x.port not in tw_ports]
    never = [p for p in ports if p not in tw_ports and p not in unseen_killed]
    overflow = ev.counter("client", "TcpExtTCPTimeWaitOverflow")
    if s.want_rst:
        ok = not (tw_ports & set(ports)) and not srv_tw and overflow >= len(ports)
        expected = f"tcp_max_tw_buckets=0: no connection enters TIME_WAIT; TCPTimeWaitOverflow +{len(ports)}"
    else:
        ok = bool(ports) and not never and not srv_tw and (not rfc1337 or not killed)
        if never and bool(ports) and not srv_tw and (not rfc1337 or not killed) and ev.capture_hole("client"):
            ok = None
        expected = (f"the client (it closed first) holds TIME_WAIT on all {len(ports)} connections, the server "
                    "on none; an in-window RST from the server " + ("is ignored (tcp_rfc1337=1)" if rfc1337
                                                                    else "kills it (tcp_rfc1337=0)"))
    srv_words = ("on some" if srv_tw else "on none") if server_seen(s) else "not observed (gVisor has no sock_diag)"
    observed = (f"sock_diag: client TIME_WAIT on {len(tw_ports & set(ports))} of {len(ports)} connections, server "
                f"{srv_words}; TcpExtTCPTimeWaitOverflow +{overflow}"
                + (f"; server RSTs on the wire: {len(srv_rsts)}, in window at a client TIME-WAIT: {len(hit)}, which "
                   f"killed {len(killed)}" + (f" ({len(unseen_killed)} within milliseconds, before a sample saw "
                                              f"TIME_WAIT: ports {unseen_killed})" if unseen_killed else "")
                   + f"; still TIME_WAIT at the end: {len(still & set(ports))}" if not s.want_rst else ""))
    return Check.judged(
        "closer-holds-time-wait", CITE_RST if s.want_rst else CITE_CLOSER + "; " + CITE_ASSASSIN, expected,
        observed, ok,
        {"client_time_wait": len(tw_ports & set(ports)), "server_time_wait": srv_tw,
         "TCPTimeWaitOverflow": overflow, "time_wait_at_end": len(still & set(ports)),
         "server_rsts": len(srv_rsts), "rst_in_window": len(hit), "killed_by_rst": [x.port for x in killed],
         "killed_unseen": unseen_killed, "tcp_rfc1337": int(rfc1337)},
        missing=(f"{observed}; ports {never[:8]} never seen in TIME_WAIT, and a RST that ended one may be "
                 f"in what tcpdump dropped ({ev.capture_hole('client')})"))


# -- 4. the heart of it: a lost final ACK, and what answers the server's retransmitted FIN --------

def _common(s: Seen) -> dict:
    conns, lost = s.conns, s.lost
    return {"closes": len(conns), "final_ack_lost": len(lost),
            "final_ack_lost_pct": round(len(lost) / len(conns) * 100 if conns else 0.0, 1),
            "ended_by_rst": len([x for x in conns if x.ended_by == "RST"]),
            "fins_unanswered": sum(x.fins_unanswered for x in conns),
            "first_fins_unanswered": [x.port for x in conns if x.first_fins_unanswered]}


def _first_fins(common: dict) -> str:
    ports = common["first_fins_unanswered"]
    return (f" (the server's first FIN got no answer on ports {ports[:4]}: it came as the client went from "
            "FIN_WAIT1 to its FIN-WAIT-2 mini-socket, which Linux says can lose it; its retransmission was "
            "answered)") if ports else ""


def _ladder(candidates: list[Close], why: str) -> dict:
    """The connection the terminal's ladder shows: of *candidates*, the one that lost the fewest
    other segments (the textbook case), and why it was chosen."""
    if not candidates:
        return {"ladder_port": None}
    best = min(candidates, key=lambda c: (c.segments_lost, c.close_ms or 0, c.port))
    return {"ladder_port": best.port, "ladder_why": why + (
        "; the one with the fewest other losses" if len(candidates) > 1 else "")}


def _heart(s: Seen, name: str, cite: str, expected: str, observed: str, ok: bool, shown: bool, values: dict,
           what: str, going: list[int] = ()) -> Check:
    """The heart check's outcome: not applicable when nothing was lost (the rule had nothing to
    act on), inconclusive when the captures dropped packets and nothing they show breaks it, or
    when it holds on every close whose end was seen but some were still going (*going*)."""
    if going:
        observed += f"; not judged: {len(going)} closes still going when the watch ended (ports {list(going)[:8]})"
        values = {**values, "still_going": list(going)}
    if not s.lost:
        if going:
            return Check.inconclusive(name, cite, expected, f"{observed}: no {what} was lost in the closes "
                                      "whose end was seen, and the others' ends are not known", values)
        return Check.not_applicable(name, cite, expected, f"{observed} - nothing to judge: no {what} was lost in "
                                    f"{len(s.conns)} closes (run again)", values)
    if ok and going:
        return Check.inconclusive(name, cite, expected, f"{observed}: the rule held on every close whose end was "
                                  "seen", values)
    return Check.judged(name, cite, expected, observed, None if not ok and not shown and s.hole else ok, values,
                        missing=f"{observed}; but {s.hole}: a loss or an answer here may be a capture drop")


def lost_final_ack_answered_by_rst(s: Seen) -> Check:
    """4 (no TIME-WAIT). The client keeps no state once it has answered the server's FIN: its
    first answer is an ACK when it still held the full socket as the FIN came (the FIN acked the
    client's own FIN: tcp_rcv_state_process() keeps it, tcp_fin() ACKs, tcp_time_wait()
    overflows), a RST when the ACK of its FIN had come first (the orphan's FIN-WAIT-2 mini-socket
    overflowed); every later FIN - after a lost answer - finds nothing and gets a RST, never an ACK."""
    s, going = decided(s)
    conns, lost, common = s.conns, s.lost, _common(s)
    by_rst = [x for x in conns if x.ended_by == "RST"]
    re_acked = [x for x in lost if "A" in x.later_answers]
    rst_after = [x for x in lost if x.ended_by == "RST"]
    ok = not re_acked and len(rst_after) == len(lost) and common["fins_unanswered"] == 0 \
        and all(x.complete for x in conns)
    first_ack, first_rst = sum(x.final_answer == "ACK" for x in conns), sum(x.final_answer == "RST" for x in conns)
    observed = (f"captures: the client's first answer to the server's FIN was an ACK on {first_ack} closes, a RST "
                f"on {first_rst}; it was lost on {len(lost)} ({common['final_ack_lost_pct']:.0f} %): the server's FIN "
                f"came again and was answered by RST on {len(rst_after)}, re-ACKed on {len(re_acked)}; "
                f"{len(by_rst)} of {len(conns)} closes ended by a RST; FINs unanswered: {common['fins_unanswered']}"
                + _first_fins(common))
    values = {**common, "answered_by_rst_after_loss": len(rst_after), "re_acked": len(re_acked),
              "first_answer_ack": first_ack, "first_answer_rst": first_rst, "distribution": distribution(conns),
              "connections": [x.to_json() for x in conns],
              **_ladder(rst_after or lost or by_rst, "a close whose final answer was lost: the FIN came "
                        "again and met a RST")}
    return _heart(s, "lost-final-ack-answered-by-rst", CITE_RST,
                  "with no TIME-WAIT the client keeps no state after answering the server's FIN: after a lost "
                  "final ACK (or RST) the retransmitted FIN is answered by RST, never re-ACKed, and the RST "
                  "ends the server's LAST-ACK", observed, ok, bool(re_acked), values, "final answer", going)


def lost_final_ack_saved_by_time_wait(s: Seen) -> Check:
    """4 (TIME-WAIT). A lost final ACK, and TIME-WAIT's re-ACK of the server's retransmitted FIN."""
    s, going = decided(s)
    conns, lost, common = s.conns, s.lost, _common(s)
    saved = [x for x in lost if x.ended_by == "ACK" and x.ended_by_reack]
    retransmitted = [x for x in lost if x.server_fins >= 2]
    late = [x for x in saved if x.ended_by_late_answer]
    # TIME-WAIT re-ACKed each FIN that reached it and every one was lost, then ran out: the RST is
    # the closed port's (every-close-completes reports it)
    outlived = [x for x in lost if x.ended_by == "RST" and x.rst_after_expiry is not None]
    # a close the client reset before any server FIN reached it lost no final ACK: every-close-completes'
    resets = common["ended_by_rst"] - len(outlived) - sum(x.reset_early for x in conns)
    p_back = (s.links.get("client->server") or {}).get("loss_pct", 0)
    ok = len(saved) + len(outlived) == len(lost) and all(x.server_fins >= 2 or x.ended_by_late_answer for x in lost) \
        and common["fins_unanswered"] == 0 and not resets
    observed = (f"captures: the final ACK was lost on {len(lost)} of {len(conns)} closes "
                f"({common['final_ack_lost_pct']:.0f} %; client->server loss {p_back:g} %); the server sent its FIN "
                f"again on {len(retransmitted)} of them; TIME-WAIT's re-ACK ended {len(saved)} of {len(lost)}"
                + (f" ({len(late)} before any FIN came again: its ACK of a late segment, ports "
                   f"{[x.port for x in late]})" if late else "")
                + (f"; {len(outlived)} outlived it (its re-ACKs lost too, every FIN for "
                   f"{max(x.rst_after_expiry for x in outlived):g} s after lost; TIME-WAIT ran out and the next FIN "
                   f"met a RST, ports {[x.port for x in outlived]})" if outlived else "") + "; "
                f"other closes ended by a reset: {resets}; FINs that reached the client unanswered: "
                f"{common['fins_unanswered']}" + _first_fins(common))
    tally: dict[int, int] = {}
    for x in saved:
        tally[x.final_acks - 1] = tally.get(x.final_acks - 1, 0) + 1
    values = {**common, "saved_by_reack": len(saved), "server_fin_retransmitted": len(retransmitted),
              "outlived_time_wait": [x.port for x in outlived],
              "saved_by_answer_to_late_segment": [x.port for x in late],
              "reacks_needed": dict(sorted(tally.items())),
              **_ladder(saved or lost, "a close whose final ACK was lost and TIME-WAIT's re-ACK saved it")}
    return _heart(s, "lost-final-ack-saved-by-time-wait",
                  cite_for(s, "client", CITE_REACK, CITE_GVISOR_CLIENT) + ("; " + CITE_EXPIRED if outlived else ""),
                  "after each lost final ACK the server retransmits its FIN and the client's TIME-WAIT "
                  "answers every FIN that reaches it with an ACK; one of those ACKs ends the server's "
                  "LAST-ACK: every lost final ACK is saved, no close ends in a reset while TIME-WAIT lives",
                  observed, ok, bool(resets), values, "final ACK", going)


def lost_final_ack_costs_an_rto(s: Seen) -> Check:
    """5. How long closes took, and what a lost final ACK costs. The FIN goes again no sooner than
    TCP_RTO_MIN after it left (RTO >= TCP_RTO_MIN + srtt; the tail-loss probe of a lone segment
    2 x srtt + TCP_RTO_MIN), less the tick its timer was armed in, and its ACK takes one more round
    trip of the path (netem never delivers early): the floor of a saved close. srtt is not in the
    floor: it is the kernel's estimate, not the path's - in Debian 12's kernel under qemu a server
    whose handshake took 21 ms had its timer due 205 ms after its FIN (sock_diag read it), an
    estimate of 2.5-5 ms. Without a lost final ACK, or without a close that lost nothing to compare
    with, there is nothing to judge."""
    done = [x for x in s.conns if x.complete]
    path_ms = sum((s.links.get(k) or {}).get("delay_ms", 0.0) for k in ("client->server", "server->client"))
    # HZ unknown: the coarsest tick Linux offers
    least, tick_ms, rule = rto_floor(s, TCP_RTO_MIN_MS, 1000 / (s.ev.hz or 100))
    floor = least + path_ms - tick_ms - 1
    # a close TIME-WAIT's answer to a late segment ended before the FIN came again owes no RTO
    slow = [x.port for x in s.lost if x.complete and x.server_wait_ms < floor and not x.ended_by_late_answer]
    dist, clean_close = distribution(s.conns), groups(s.conns)["clean"]
    clean_slow = [x.port for x in clean_close if x.server_wait_ms >= least]
    clean, lost = dist["clean"]["server_wait_ms"], dist["final_ack_lost"]["server_wait_ms"]
    expected = ("the server's wait from its first FIN to the end of its connection: about one round trip when "
                f"nothing of the close is lost (below {least:g} ms); when the final ACK was lost, at "
                f"least {rule} ({least:g} ms{', less one tick' if tick_ms else ''}) before the FIN goes again, and "
                "one round trip of the path for its ACK")
    every = dist["all"]["close_ms"]
    observed = (f"captures: server wait, no loss in the close ({len(clean_close)}): median {clean.get('p50')} ms, max "
                f"{clean.get('max')} ms; final ACK lost ({lost.get('n', 0)}): min {lost.get('min')} ms, "
                f"median {lost.get('p50')} ms (floor {floor:.0f} ms); whole close (client FIN to server end), all "
                f"{len(done)}: median {every.get('p50')} ms, p90 {every.get('p90')} ms, max {every.get('max')} ms")
    values = {"distribution": dist, "final_ack_lost_server_wait_ms_min": lost.get("min"),
              "close_ms_p50": every.get("p50"), "path_delay_ms": path_ms,
              "floor_ms": round(floor, 1), "below_floor": slow, "clean_above_rto_min": clean_slow,
              "untouched_connections": len([x for x in done if x.segments_lost == 0]),
              "connections": [x.to_json() for x in s.conns]}
    if not slow and not clean_slow and (not s.lost or not clean_close):
        return Check.not_applicable(
            "lost-final-ack-costs-an-rto", cite_for(s, "server", CITE_RTO, CITE_GVISOR_RTO), expected,
            f"{observed} - nothing to compare: " + ("no final ACK was lost" if not s.lost else
                                                    "no close went without a loss"), values)
    # a close that lost nothing can only be slower than TCP_RTO_MIN if the path itself was (an
    # emulated link in a busy VM: 172 ms one way through a 10 ms netem was seen): then a clean
    # close cannot be told from an RTO - the machine's, not TCP's; a saved close faster than the
    # floor stays a failure
    ok = (None if s.hole else False) if slow else None if clean_slow else True
    why = (f"{s.hole}: which closes lost what is not certain" if slow else
           f"{len(clean_slow)} closes that lost nothing still took {least:g} ms or more (max "
           f"{clean.get('max')} ms): the path itself was that slow, so a clean close cannot be told from "
           "an RTO here; the machine was too busy to compare")
    return Check.judged("lost-final-ack-costs-an-rto", cite_for(s, "server", CITE_RTO, CITE_GVISOR_RTO), expected,
                        observed, ok, values,
                        missing=f"{observed}; but {why}")
