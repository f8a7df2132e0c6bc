"""retransmitted-fin, the judgement of the orphan's retransmissions against its budget: what each
retransmission was (from sock_diag's idiag_retrans), how many RTO retransmissions the budget allows
(scenarios/_orphan_budget.py's prediction), and when the orphan went. Not a scenario: the leading
underscore keeps it out of the catalog; scenarios/retransmitted_fin.py describes the rules, runs the
steps and judges the rest (its Seen is what these read).

What the captures or the sampler missed is not judged: a FIN that may be among server.pcap's
drops, a retransmission no sample followed, an end the sampler was not polling for, while it fell
behind (a gap in its cadence), leave their checks inconclusive; what they show and is wrong fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import TCP_RTO_MAX_MS, TCP_RTO_MIN_MS
from lab.timerwheel import max_late_s
from lab.verdict import Check

from ._orphan_budget import COMMON_HZ, LATENCY_MS, predict, rto0_candidates

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.evidence import Evidence
    from lab.packets import Segment

    from .retransmitted_fin import Seen

__all__ = ["retransmission_kinds", "backoff_holes", "orphan_retries_count", "give_up_when_budget_spent",
           "give_up_is_silent", "client_holds_at_end", "CITE_SILENT"]

CITE_BUDGET = ("tcp_write_timeout() / retransmits_timed_out() / tcp_model_timeout() in net/ipv4/tcp_timer.c "
               "(Linux v6.18; reference R-ORPHAN-RETRIES): an orphan gives up at the first RTO where now - "
               "retrans_stamp >= ((2 << b) - 1) "
               "x 200 ms, compared in whole ms, b = tcp_orphan_retries (0 -> 8); retrans_stamp = first RTO "
               "retransmission (tcp_retransmit_skb(), net/ipv4/tcp_output.c)")
CITE_SILENT = ("tcp_write_err() -> tcp_done() (net/ipv4/tcp_timer.c): the socket is destroyed without "
               "sending anything, TCPAbortOnTimeout +1; only tcp_out_of_resources() (orphan/memory "
               "pressure, TCPAbortOnMemory) sends a RST; RFC 1122 §4.2.3.5 R2: close the connection")
CITE_WHEEL = ("kernel/time/timer.c calc_wheel_index()/calc_index(): each RTO timer runs at its wheel level's "
              "granule boundary strictly after its due jiffy; " + CITE_BUDGET)


def retransmission_kinds(ev: Evidence, conn: Conn, fins: list[Segment]) -> tuple[list, list, list[str]]:
    """What each retransmitted FIN was, from the first sock_diag sample after it: a tail-loss probe
    leaves idiag_retrans (icsk_retransmits) as it was, an RTO retransmission adds one; "?" when a
    sample shows anything else. None when no sample fell before the next FIN (then *unseen* says
    where, with the sampler's gap); after such a hole a count that rose by one per FIN since the
    last known one is an RTO, one that stayed is a probe, anything else is not known (None)."""
    kinds, counts, unseen, prev, skipped = [], [], [], 0, 0
    for i, f in enumerate(fins[1:], start=1):
        until = fins[i + 1].t if i + 1 < len(fins) else f.t + 10
        # idiag_retrans of the orphan in the samples wholly in (f.t, until)
        seen = [x.retrans for x in conn.samples("server", state="LAST_ACK") if f.t < x.asked and x.answered < until]
        now = seen[0] if seen else None
        counts.append(now)
        if now is None:
            kinds.append(None)
            gap = ev.sampler_gap_ms(f.t, until)
            unseen.append(f"no sock_diag sample of the orphan between the FIN at +{(f.t - fins[0].t) * 1000:.1f} ms "
                          "and the next" + (f" (the sampler's longest gap there: {gap} ms)" if gap else ""))
            if not gap:
                unseen[-1] = ""          # the sampler kept its pace: the hole is not the sampler's
            skipped += 1
            continue
        if not skipped:
            kinds.append("RTO" if now == prev + 1 else "TLP" if now == prev else "?")
        else:
            kinds.append("RTO" if now == prev + skipped + 1 else "TLP" if now == prev else None)
        prev, skipped = now, 0
    return kinds, counts, unseen


def backoff_holes(s: Seen, ok: bool, seqs: list, probes: int) -> list[str]:
    """Why tlp-then-rto-doubling cannot be judged ([] when it can): a retransmission whose kind,
    or a timer whose reading, no sample showed because the sampler fell behind, or a FIN that may
    be among server.pcap's drops. What was seen and is wrong (a second sequence number, a count
    of probes the kernel did not make, a kind or a reading that breaks the rule) still fails."""
    ev, kinds, want_tlp = s.ev, s.kinds, s.want_tlp
    if ok or len(seqs) > 1 or probes != want_tlp or "?" in kinds:
        return []
    hole = ev.capture_hole("server")
    if hole:
        return [f"server.pcap may lack a FIN ({hole})"]
    if None in kinds:                    # which FINs were RTOs is not known: nor is the timer chain
        known = [k for k in kinds if k is not None]
        after_rto = known[known.index("RTO"):] if "RTO" in known else []
        if not all(s.unseen) or known.count("TLP") > want_tlp or "TLP" in after_rto:
            return []                    # unseen with the sampler on pace, or a probe out of place
        return list(s.unseen)
    holes, marks = [], s.marks
    for i, (a, f) in enumerate(zip(s.armed, marks)):
        if a is None:
            until = marks[i + 1].t if i + 1 < len(marks) else f.t + 300
            gap = ev.sampler_gap_ms(f.t, until)
            if not gap:
                return []                # no reading with the sampler on pace: not the sampler's
            holes.append(f"no reading of the timer armed at +{(f.t - marks[0].t) * 1000:.1f} ms "
                         f"(the sampler's longest gap there: {gap} ms)")
    return [] if _timers_broken(s) else holes


def _timers_broken(s: Seen) -> bool:
    """What the kinds and the timers' readings show breaks the rule, holes or not."""
    kinds, armed, want_tlp, tick_ms = s.kinds, s.armed, s.want_tlp, s.tick_ms
    return (kinds[:want_tlp] != ["TLP"] * want_tlp or kinds.count("TLP") != want_tlp or "RTO" not in kinds
            or (armed and armed[0] is not None and armed[0] < TCP_RTO_MIN_MS - tick_ms)
            or any(abs(a - min(2 * p, TCP_RTO_MAX_MS)) > 3 * tick_ms + 2
                   for p, a in zip(armed, armed[1:]) if a is not None and p is not None)
            or any(late is not None and not -tick_ms - 1 <= late <= max_late_s(a / 1000, s.ev.hz) * 1000 + tick_ms + 20
                   for late, a in zip(s.fired_late, armed) if a is not None))


def orphan_retries_count(s: Seen) -> Check:
    """The number of RTO retransmissions against the model's prediction from the first RTO as
    measured (sock_diag's readings of the timers armed at T1 and before it, the wire's gap to T1)
    and the timer wheel."""
    ev, fins, tlps, rto_fins, armed = s.ev, s.fins, s.tlps, s.rto_fins, s.armed
    n_obs = len(rto_fins)
    aligned = bool(tlps)                        # the TLP was sent from a timer, at the start of a jiffy
    start = tlps[-1] if tlps else (fins[0] if fins else None)
    gap_ms = round((rto_fins[0].t - start.t) * 1000, 3) if rto_fins and start else None
    armed0 = armed[0] if armed else None
    doubled = armed[1] if len(armed) > 1 else None
    hzs = (ev.hz,) if ev.hz else COMMON_HZ
    rto0 = {h: rto0_candidates(h, doubled, armed0, gap_ms, aligned) for h in hzs} if rto_fins else {}
    pred = predict({h: c for h, c in rto0.items() if c}, s.budget_ms)
    measured = ", ".join(f"{r} jiffies = {r * 1000 / h:g} ms at HZ={h}" for h, c in rto0.items() for r in c)
    # no RTO retransmission at all is the kernel's doing; nothing measured to predict from, the observation's
    ok = n_obs in pred.counts if (pred.counts or not rto_fins) else None
    missing = ("no sock_diag reading of the retransmit timer and no retransmission timing to measure the "
               "first RTO from: nothing to predict from")
    hole = ev.capture_hole("server")
    if s.unseen and all(s.unseen):           # how many were RTOs is not known, whatever it looks like
        ok, missing = None, "which retransmissions were RTOs is not known: " + "; ".join(s.unseen)
    elif ok is False and hole:
        ok, missing = None, f"server.pcap may lack a retransmitted FIN ({hole})"
    return Check.judged(
        "orphan-retries-count", CITE_WHEEL,
        f"tcp_orphan_retries={s.orphan_retries} -> b={s.retry_until}: a budget of {s.budget_ms} ms from T1; first RTO "
        f"{measured or '?'} (sock_diag: the timer armed at T1 read {doubled} ms = 2 x rto0, the one before it "
        f"{armed0} ms; {'TLP' if aligned else 'FIN'} -> T1 on the wire {gap_ms} ms"
        + (" = rto0 + the level-0 tick (+ a late wakeup)" if aligned else "") + f"); {pred.text()}; +{s.want_tlp} TLP",
        f"server.pcap: {n_obs} RTO retransmissions (+{len(tlps)} TLP), {len(fins) - 1} retransmitted FINs; "
        f"the RTO retransmissions at T1 + {[round((f.t - rto_fins[0].t) * 1000, 1) for f in rto_fins]} ms",
        ok, {"tcp_orphan_retries": s.orphan_retries, "retry_until": s.retry_until, "budget_ms": s.budget_ms,
             "rto0_ms": armed0, "armed_at_t1_ms": doubled, "first_rto_gap_ms": gap_ms,
             "rto0_ticks": {str(h): list(c) for h, c in rto0.items()},
             "predicted_rto_retransmissions": list(pred.counts), "prediction": pred.to_json(),
             "observed_rto_retransmissions": n_obs, "observed_tlps": len(tlps)},
        missing=missing)


def give_up_when_budget_spent(s: Seen) -> Check:
    """Each decision against the budget, from the observed times: every RTO retransmission after T1
    came while now - T1 < budget, and the socket went at the timeout after the last one, with
    now - T1 >= budget. retransmits_timed_out() compares whole milliseconds (so the kernel may give
    up from budget - 1 ms on), and the capture and the timer handler differ by up to LATENCY_MS."""
    ev, rto_fins, armed, budget_ms, gone = s.ev, s.rto_fins, s.armed, s.budget_ms, s.gone
    t1 = rto_fins[0].t if rto_fins else None
    elapsed = [round((f.t - t1) * 1000, 1) for f in rto_fins[1:]] if t1 else []
    last_seen = max((x.asked for x in s.conn.samples("server", state="LAST_ACK")), default=None)
    due = rto_fins[-1].t + armed[-1] / 1000 if rto_fins and armed and armed[-1] is not None else None
    missing = "sock_diag never " + ("saw the server's connection go" if gone is None else
                                    "read the retransmit timer after the last RTO retransmission"
                                    if due is None else "saw the orphan in LAST_ACK")
    # no T1 is the kernel's doing; no sample of the timer or of the socket going, the observation's
    ok = False if not t1 else None if gone is None or last_seen is None or due is None else True
    give_up_ms = None
    if ok:
        ok, give_up_ms, unseen_end = _gave_up_in_time(s, t1, elapsed, last_seen, due)
        if ok and unseen_end:
            ok, missing = None, unseen_end
    if s.unseen and all(s.unseen):           # nor which was T1 or the last: the times mean nothing
        ok, missing = None, "which retransmissions were RTOs is not known: " + "; ".join(s.unseen)
    elif ok is False and ev.capture_hole("server"):
        ok, missing = None, f"server.pcap may lack a retransmitted FIN ({ev.capture_hole('server')})"
    return Check.judged(
        "give-up-when-budget-spent", CITE_BUDGET,
        f"every RTO retransmission after T1 at now - T1 < {budget_ms} ms; the socket destroyed at the "
        f"timeout after the last one (due {round(armed[-1]) if armed and armed[-1] else '?'} ms after it, "
        f"at most one timer-wheel granule late) with now - T1 >= {budget_ms} ms (whole ms compared: "
        f"> {budget_ms - 1} ms; capture vs timer handler +- {LATENCY_MS:g} ms)",
        f"RTO retransmissions at T1 + {elapsed} ms; timer due at T1 + "
        f"{round((due - t1) * 1000, 1) if due and t1 else '?'} ms; sock_diag: last seen at "
        f"T1 + {round((last_seen - t1) * 1000, 1) if last_seen and t1 else '?'} ms, gone at "
        f"T1 + {round((gone - t1) * 1000, 1) if gone and t1 else '?'} ms; so given up at T1 + {give_up_ms} ms",
        ok, {"budget_ms": budget_ms, "rto_elapsed_since_t1_ms": elapsed,
             "due_after_t1_ms": round((due - t1) * 1000, 1) if due and t1 else None,
             "give_up_window_after_t1_ms": give_up_ms, "latency_ms": LATENCY_MS,
             "gone_after_first_fin_ms": s.rel(gone) if gone else None},
        missing=missing)


def _gave_up_in_time(s: Seen, t1: float, elapsed: list[float], last_seen: float, due: float
                     ) -> tuple[bool, list[float], str]:
    """The socket went after the last sample that saw it and before the first that did not, and
    no earlier than its timer's due time (a tick for the reading), no later than a granule after.
    Where the sampler fell behind there, a sample that would have shown it alive past the latest
    its timer could run, or gone before the budget, may be missing: why is the third item ("" when
    nothing is; a sample that does show either still fails it)."""
    tick_ms, budget_ms = s.tick_ms, s.budget_ms
    lower = due - tick_ms / 1000
    upper = due + max_late_s(s.armed[-1] / 1000, s.ev.hz) + 2 * tick_ms / 1000 + 0.02
    window = (max(last_seen, lower), min(s.gone, upper))
    give_up_ms = [round((w - t1) * 1000, 1) for w in window]
    ok = (all(e < budget_ms + LATENCY_MS for e in elapsed) and window[0] <= window[1]
          and give_up_ms[1] > budget_ms - 1 - LATENCY_MS)
    alive_until = min(lower, t1 + (budget_ms - 1 - LATENCY_MS) / 1000)
    return ok, give_up_ms, _unseen_end(s.ev, last_seen, s.gone, alive_until, upper)


def _unseen_end(ev: Evidence, last_seen: float, gone: float, alive_until: float, gone_by: float) -> str:
    """Why sock_diag cannot place the socket's end ("" when it can): it must be seen alive up to
    *alive_until* (its timer's due time, or the budget if that is earlier) and gone by *gone_by*
    (the latest its timer can run). Falling short of either is the kernel's unless the sampler
    fell behind right there."""
    why = []
    if last_seen < alive_until and (gap := ev.sampler_gap_ms(last_seen, alive_until)):
        why.append(f"no sample between {_after(last_seen, gone)} and the timer's due time "
                   f"(the sampler's longest gap there: {gap} ms): whether it lived until its timeout is unseen")
    if gone > gone_by and (gap := ev.sampler_gap_ms(gone_by, gone)):
        why.append(f"no sample between the latest its timer could run and {round((gone - gone_by) * 1000, 1)} ms "
                   f"later, when it was seen gone (the sampler's longest gap there: {gap} ms): whether it went "
                   "at its timeout is unseen")
    return "; ".join(why)


def _after(t: float, gone: float) -> str:
    return f"the last LAST_ACK sample ({round((gone - t) * 1000, 1)} ms before it was seen gone)"


def client_holds_at_end(ev: Evidence) -> bool | None:
    """A gVisor client (no sock_diag) answered the router's probe at the end with an ACK: TIME-WAIT
    (True); with a RST or SYN-ACK: nothing (False); None when the probe got no answer or none was
    sent to a gVisor client (nothing shows its state); False for a Linux client (sock_diag's)."""
    answer = (ev.facts.get("client_probe_at_end") or {}).get("answer")
    if answer in ("ack", "rst", "syn-ack"):
        return answer == "ack"
    return None if wire.stack_of(ev, "client") == "gvisor" else False


def give_up_is_silent(s: Seen) -> Check:
    """Giving up is silent: no RST, no more FINs; the client still sits in TIME-WAIT. Silence is an
    absence: server.pcap shows it only if tcpdump dropped nothing there; else client.pcap (the
    router forwards whatever the server sends) must show it instead."""
    ev, gone = s.ev, s.gone
    rsts = s.conn.segments("server", sender="server", flag="RST")
    after_gone = [f for f in s.fins if gone and f.t > gone]
    aborts = ev.counter("server", "TcpExtTCPAbortOnTimeout")
    memory = ev.counter("server", "TcpExtTCPAbortOnMemory")
    cli_end = [x["state"] for x in ev.facts.get("client_sockets_at_end", [])] or (
        ["TIME_WAIT (the prober's ACK)"] if client_holds_at_end(ev) else [])
    srv_end = ev.facts.get("server_connections_at_end", [])
    ok = not rsts and not after_gone and aborts == 1 and memory == 0 and len(cli_end) == 1 \
        and cli_end[0].startswith("TIME_WAIT") and not srv_end
    silent_missing = ""
    if not ok and not cli_end and client_holds_at_end(ev) is None and not (rsts or after_gone or srv_end):
        ok, silent_missing = None, "the router's probe of the gVisor client got no answer: its state is unseen"
    if ok and gone is None:               # "no FIN after it went" of a going sock_diag never saw
        ok, silent_missing = None, "sock_diag never saw the server's connection go: FINs after it cannot be told"
    if ok and ev.capture_hole("server"):
        rsts_cli = s.conn.segments("client", sender="server", flag="RST")
        fins_cli_after = [f for f in s.conn.segments("client", sender="server", flag="FIN") if gone and f.t > gone]
        if rsts_cli or fins_cli_after:
            ok = False
        elif ev.capture_hole("client"):
            ok, silent_missing = None, (f"both captures dropped packets ({ev.capture_hole('client', 'server')}): "
                                        "a RST or FIN from the server may be among them")
    return Check.judged(
        "give-up-is-silent", CITE_SILENT,
        "no RST and no further FIN from the server; TCPAbortOnTimeout +1 (not TCPAbortOnMemory); "
        "the server's connection is gone while the client still holds TIME_WAIT",
        f"server.pcap: {len(rsts)} RSTs, {len(after_gone)} FINs after the socket went"
        + ("" if gone is not None else " (never seen to go)") + "; "
        f"TCPAbortOnTimeout +{aborts}, TCPAbortOnMemory +{memory}; at the end: server connections "
        f"{[x['state'] for x in srv_end]}, client sockets {cli_end}",
        ok, {"server_rsts": len(rsts), "fins_after_gone": len(after_gone), "TCPAbortOnTimeout": aborts,
             "TCPAbortOnMemory": memory, "client_states_at_end": cli_end},
        missing=silent_missing)
