"""lossy-link, the judgement: what the two captures, sock_diag and the counters say about many
closes over a lossy link (scenarios/lossy_link.py runs them and describes the rules). Not a
scenario: the leading underscore keeps it out of the catalog.

Losses are read from the captures (a segment the sender's capture holds and the receiver's lacks
was lost), so a capture whose tcpdump dropped packets (Evidence.capture_hole) can make a delivered
segment look lost: what such a capture does not show is not judged (inconclusive); what it does
show - a reset, a re-ACK, fewer losses than netem's rate - still fails. A rule whose event did not
happen in the run (no final ACK lost) is not applicable.
"""

from __future__ import annotations

from lab.evidence import Evidence
from lab.verdict import Check

from .lossy_link import (CITE_ASSASSIN, CITE_CLOSE, CITE_CLOSER, CITE_NETEM, CITE_REACK, CITE_RST, CITE_RTO, SIGMAS,
                         TCP_RTO_MIN_MS, _in_window, _ladder, analyse, distribution)


def judge(ev: Evidence) -> list[Check]:
    a = analyse(ev)
    conns = a["connections"]
    ctx = {"conns": conns, "links": ev.facts.get("links", {}), "n": ev.facts.get("closes", len(conns)),
           "want_rst": int(ev.sysctl("client", "net.ipv4.tcp_max_tw_buckets", "1")) == 0,
           "hole": ev.capture_hole("client", "server"),
           "lost": [c for c in conns if c.get("final_ack_lost")]}
    checks = [_link(ev, a, ctx), _completes(ev, ctx), _closer(ev, ctx)]
    checks.append(_answered_by_rst(ev, ctx) if ctx["want_rst"] else _saved(ev, ctx))
    if not ctx["want_rst"]:     # a RST can also answer another segment (e.g. the ACK of a retransmitted
        checks.append(_cost(ev, ctx))   # client FIN) and end the close early: the RTO claim is TIME-WAIT's
    return checks


def _link(ev: Evidence, a: dict, c: dict) -> Check:
    """1. the link loses what netem says it loses. Capture drops can only add apparent losses: a
    share below the window still fails; any other share, or too few segments, cannot be judged."""
    parts, values, inside_all, below, few = [], {}, True, False, False
    for key, d in a["directions"].items():
        link = c["links"].get(key) or {}
        p = link.get("loss_pct", 0.0) / 100
        inside, lo, hi = _in_window(d["lost"], d["sent"], p)
        inside_all, below, few = inside_all and inside, below or d["lost"] < lo, few or d["sent"] < 100
        share = d["lost"] / d["sent"] * 100 if d["sent"] else 0.0
        parts.append(f"{key}: {d['lost']} of {d['sent']} segments lost ({share:.1f} %; netem loss "
                     f"{link.get('loss_pct', 0):g} %, window {lo:.0f}..{hi:.0f})")
        values[key] = {**d, "loss_pct_observed": round(share, 2), "loss_pct_qdisc": link.get("loss_pct"),
                       "delay_ms_qdisc": link.get("delay_ms"), "window": [round(lo, 1), round(hi, 1)]}
    drops = {h: k for h, k in ev.capture_drops().items() if h in ("client", "server")}
    if drops:       # a segment missing from a capture that dropped packets proves no loss
        parts.append(f"but tcpdump dropped packets ({drops}): the captures are incomplete, so no "
                     "loss here can be told from a capture drop")
    if not c["links"] or (below and not few):
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


def _completes(ev: Evidence, c: dict) -> Check:
    """2. every close completes; with TIME-WAIT, without a single reset."""
    conns, n, want_rst = c["conns"], c["n"], c["want_rst"]
    incomplete = [x["port"] for x in conns if not x.get("complete")]
    rst_ports = [x["port"] for x in conns if x.get("rst_from_client")]
    eofs = ev.facts.get("server_close", [])
    app_errors = [x for x in eofs if x.get("error")]
    broken = len(conns) != n or app_errors or (not want_rst and rst_ports)
    ok = False if broken else (None if incomplete and c["hole"] else not incomplete)
    observed = (f"captures: {len(conns) - len(incomplete)} of {len(conns)} server connections ended"
                + (f" (not: ports {incomplete[:8]})" if incomplete else "")
                + f"; RSTs from the client on {len(rst_ports)} connections; server read EOF on "
                f"{sum(1 for x in eofs if 'eof' in x)}, errors {[(x['name'], x['error']) for x in app_errors][:5]}")
    return Check.judged(
        "every-close-completes", CITE_RST if want_rst else CITE_CLOSE,
        f"all {n} closes end at the server (the ACK or, with no TIME-WAIT, the RST of its FIN arrives); "
        "the server's application reads EOF on each" + ("" if want_rst else "; the client never sends RST"),
        observed, ok, {"closes": n, "incomplete": incomplete, "rst_ports": rst_ports,
                       "app_errors": [x["name"] for x in app_errors]},
        missing=f"{observed}; the ends not seen may be in what tcpdump dropped ({c['hole']})")


def _closer(ev: Evidence, c: dict) -> Check:
    """3. who holds TIME-WAIT: the client, on every connection; the server never.
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
    conns, want_rst = c["conns"], c["want_rst"]
    still = {s.get("sport") for s in ev.facts.get("client_sockets_at_end", []) if s.get("state") == "TIME_WAIT"}
    tw_ports = {e.data["socket"]["sport"] for e in ev.states("client")
                if e.data["socket"]["state"] == "TIME_WAIT"} | still
    ports = [x["port"] for x in conns]
    srv_tw = ev.ever_in("server", "TIME_WAIT")
    srv_rsts = [s for s in ev.segments("server", src="server", flag="RST")]
    rfc1337 = ev.sysctl("client", "net.ipv4.tcp_rfc1337", "0") == "1"
    hit = [x for x in conns if x.get("rst_in_window_at") is not None]
    killed = [x for x in hit if x["port"] not in still]
    unseen_killed = [x["port"] for x in killed if x["port"] not in tw_ports]
    never = [p for p in ports if p not in tw_ports and p not in unseen_killed]
    overflow = ev.counter("client", "TcpExtTCPTimeWaitOverflow")
    if want_rst:
        ok = not (tw_ports & set(ports)) and not srv_tw and overflow >= len(ports)
        expected = (f"tcp_max_tw_buckets=0: no connection enters TIME_WAIT; TCPTimeWaitOverflow "
                    f"+{len(ports)}")
    else:
        ok = bool(ports) and not never and not srv_tw and (not rfc1337 or not killed)
        if never and bool(ports) and not srv_tw and (not rfc1337 or not killed) and ev.capture_hole("client"):
            ok = None
        expected = (f"the client (it closed first) holds TIME_WAIT on all {len(ports)} connections, the server "
                    "on none; an in-window RST from the server " + ("is ignored (tcp_rfc1337=1)" if rfc1337
                                                                    else "kills it (tcp_rfc1337=0)"))
    observed = (f"sock_diag: client TIME_WAIT on {len(tw_ports & set(ports))} of {len(ports)} connections, server "
                f"{'on some' if srv_tw else 'on none'}; TcpExtTCPTimeWaitOverflow +{overflow}"
                + (f"; server RSTs on the wire: {len(srv_rsts)}, in window at a client TIME-WAIT: {len(hit)}, which "
                   f"killed {len(killed)}" + (f" ({len(unseen_killed)} within milliseconds, before a sample saw "
                                              f"TIME_WAIT: ports {unseen_killed})" if unseen_killed else "")
                   + f"; still TIME_WAIT at the end: {len(still & set(ports))}" if not want_rst else ""))
    return Check.judged(
        "closer-holds-time-wait", CITE_RST if want_rst else CITE_CLOSER + "; " + CITE_ASSASSIN, expected,
        observed, ok,
        {"client_time_wait": len(tw_ports & set(ports)), "server_time_wait": srv_tw,
         "TCPTimeWaitOverflow": overflow, "time_wait_at_end": len(still & set(ports)),
         "server_rsts": len(srv_rsts), "rst_in_window": len(hit), "killed_by_rst": [x["port"] for x in killed],
         "killed_unseen": unseen_killed, "tcp_rfc1337": int(rfc1337)},
        missing=(f"{observed}; ports {never[:8]} never seen in TIME_WAIT, and a RST that ended one may be "
                 f"in what tcpdump dropped ({ev.capture_hole('client')})"))


def _common(c: dict) -> dict:
    conns, lost = c["conns"], c["lost"]
    return {"closes": len(conns), "final_ack_lost": len(lost),
            "final_ack_lost_pct": round(len(lost) / len(conns) * 100 if conns else 0.0, 1),
            "ended_by_rst": len([x for x in conns if x.get("ended_by") == "RST"]),
            "fins_unanswered": sum(x.get("fins_unanswered", 0) for x in conns)}


def _heart(name: str, cite: str, expected: str, observed: str, ok: bool, shown: bool, c: dict,
           values: dict, what: str) -> Check:
    """The heart check's outcome: not applicable when nothing was lost (the rule had nothing to
    act on), inconclusive when the captures dropped packets and nothing they show breaks it."""
    if not c["lost"]:
        return Check.not_applicable(name, cite, expected, f"{observed} - nothing to judge: no {what} was lost in "
                                    f"{len(c['conns'])} closes (run again)", values)
    return Check.judged(name, cite, expected, observed, None if not ok and not shown and c["hole"] else ok, values,
                        missing=f"{observed}; but {c['hole']}: a loss or an answer here may be a capture drop")


def _answered_by_rst(ev: Evidence, c: dict) -> Check:
    """4 (no TIME-WAIT). The client keeps no state once it has answered the server's FIN: its
    first answer is an ACK when it still held the full socket as the FIN came (the FIN acked the
    client's own FIN: tcp_rcv_state_process() keeps it, tcp_fin() ACKs, tcp_time_wait()
    overflows), a RST when the ACK of its FIN had come first (the orphan's FIN-WAIT-2 mini-socket
    overflowed); every later FIN - after a lost answer - finds nothing and gets a RST, never an ACK."""
    conns, lost, common = c["conns"], c["lost"], _common(c)
    by_rst = [x for x in conns if x.get("ended_by") == "RST"]
    re_acked = [x for x in lost if "A" in x.get("later_answers", "")]
    rst_after = [x for x in lost if x.get("ended_by") == "RST"]
    ok = not re_acked and len(rst_after) == len(lost) and common["fins_unanswered"] == 0 \
        and all(x.get("complete") for x in conns)
    observed = (f"captures: the client's first answer to the server's FIN was an ACK on "
                f"{sum(x.get('final_answer') == 'ACK' for x in conns)} closes, a RST on "
                f"{sum(x.get('final_answer') == 'RST' for x in conns)}; it was lost on {len(lost)} "
                f"({common['final_ack_lost_pct']:.0f} %): the server's FIN came again and was answered by RST on "
                f"{len(rst_after)}, re-ACKed on {len(re_acked)}; {len(by_rst)} of {len(conns)} closes "
                f"ended by a RST; FINs unanswered: {common['fins_unanswered']}")
    values = {**common, "answered_by_rst_after_loss": len(rst_after), "re_acked": len(re_acked),
              "first_answer_ack": sum(x.get("final_answer") == "ACK" for x in conns),
              "first_answer_rst": sum(x.get("final_answer") == "RST" for x in conns),
              "distribution": distribution(conns)[0],
              **_ladder(rst_after or lost or by_rst, "a close whose final answer was lost: the FIN came "
                        "again and met a RST")}
    return _heart("lost-final-ack-answered-by-rst", CITE_RST,
                  "with no TIME-WAIT the client keeps no state after answering the server's FIN: after a lost "
                  "final ACK (or RST) the retransmitted FIN is answered by RST, never re-ACKed, and the RST "
                  "ends the server's LAST-ACK", observed, ok, bool(re_acked), c, values, "final answer")


def _saved(ev: Evidence, c: dict) -> Check:
    """4 (TIME-WAIT). The heart of it: a lost final ACK, and what answers the server's
    retransmitted FIN."""
    conns, lost, common = c["conns"], c["lost"], _common(c)
    saved = [x for x in lost if x.get("ended_by") == "ACK" and x.get("ended_by_reack")]
    retransmitted = [x for x in lost if x["server_fins"] >= 2]
    p_back = (c["links"].get("client->server") or {}).get("loss_pct", 0)
    ok = len(saved) == len(lost) and len(retransmitted) == len(lost) \
        and common["fins_unanswered"] == 0 and not common["ended_by_rst"]
    observed = (f"captures: the final ACK was lost on {len(lost)} of {len(conns)} closes "
                f"({common['final_ack_lost_pct']:.0f} %; client->server loss {p_back:g} %); the server sent its FIN "
                f"again on {len(retransmitted)} of them; TIME-WAIT's re-ACK ended {len(saved)} of {len(lost)}; "
                f"closes ended by a reset: {common['ended_by_rst']}; FINs that reached the client unanswered: "
                f"{common['fins_unanswered']}")
    tally: dict[int, int] = {}
    for x in saved:
        tally[x["final_acks"] - 1] = tally.get(x["final_acks"] - 1, 0) + 1
    values = {**common, "saved_by_reack": len(saved), "server_fin_retransmitted": len(retransmitted),
              "reacks_needed": dict(sorted(tally.items())),
              **_ladder(saved or lost, "a close whose final ACK was lost and TIME-WAIT's re-ACK saved it")}
    return _heart("lost-final-ack-saved-by-time-wait", CITE_REACK,
                  "after each lost final ACK the server retransmits its FIN and the client's TIME-WAIT "
                  "answers every FIN that reaches it with an ACK; one of those ACKs ends the server's "
                  "LAST-ACK: every lost final ACK is saved, no close ends in a reset",
                  observed, ok, bool(common["ended_by_rst"]), c, values, "final ACK")


def _cost(ev: Evidence, c: dict) -> Check:
    """5. how long closes took, and what a lost final ACK costs. RTO >= TCP_RTO_MIN + srtt, srtt
    >= the path's delay both ways (netem never delivers early), and the retransmitted FIN's ACK
    takes one more round trip: the floor of a saved close. Without a lost final ACK, or without a
    close that lost nothing to compare with, there is nothing to judge."""
    conns, lost, links = c["conns"], c["lost"], c["links"]
    done = [x for x in conns if x.get("complete")]
    clean = [x for x in done if x["segments_lost"] == 0]
    path_ms = sum((links.get(k) or {}).get("delay_ms", 0.0) for k in ("client->server", "server->client"))
    floor = TCP_RTO_MIN_MS + 2 * path_ms - 5
    slow = [x["port"] for x in lost if x.get("complete") and x["server_wait_ms"] < floor]
    dist, groups = distribution(conns)
    clean_close = groups["no segment of the close lost"]
    clean_slow = [x["port"] for x in clean_close if x["server_wait_ms"] >= TCP_RTO_MIN_MS]
    expected = ("the server's wait from its first FIN to the end of its connection: about one round trip when "
                f"nothing of the close is lost (below {TCP_RTO_MIN_MS:g} ms); when the final ACK was lost, at "
                "least TCP_RTO_MIN + two round trips of the path (the RTO is at least rto_min + srtt, and the "
                "retransmitted FIN's ACK takes another)")
    observed = (f"captures: server wait, no loss in the close ({len(clean_close)}): "
                f"median {dist['no segment of the close lost']['server_wait_ms'].get('p50')} ms, max "
                f"{dist['no segment of the close lost']['server_wait_ms'].get('max')} ms; final ACK lost "
                f"({len(groups['final ACK lost'])}): min {dist['final ACK lost']['server_wait_ms'].get('min')} ms, "
                f"median {dist['final ACK lost']['server_wait_ms'].get('p50')} ms (floor {floor:.0f} ms); "
                f"whole close (client FIN to server end), all {len(done)}: median {dist['all']['close_ms'].get('p50')} "
                f"ms, p90 {dist['all']['close_ms'].get('p90')} ms, max {dist['all']['close_ms'].get('max')} ms")
    values = {"distribution": dist, "path_delay_ms": path_ms, "floor_ms": round(floor, 1),
              "below_floor": slow, "clean_above_rto_min": clean_slow, "untouched_connections": len(clean),
              "connections": [{k: v for k, v in x.items() if k != "t_client_fin"} for x in conns]}
    if not slow and not clean_slow and (not lost or not clean_close):
        return Check.not_applicable(
            "lost-final-ack-costs-an-rto", CITE_RTO, expected,
            f"{observed} - nothing to compare: " + ("no final ACK was lost" if not lost else
                                                    "no close went without a loss"), values)
    ok = not slow and not clean_slow
    return Check.judged("lost-final-ack-costs-an-rto", CITE_RTO, expected, observed,
                        None if not ok and c["hole"] else ok, values,
                        missing=f"{observed}; but {c['hole']}: which closes lost what is not certain")
