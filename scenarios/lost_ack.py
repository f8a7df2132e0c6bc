"""lost-ack: the client's final ACK is lost; the server retransmits its FIN, and the client's
TIME-WAIT answers every copy and restarts its 2MSL timer.

Checks RFC 9293 §3.10.7.4 / RFC 793 p.73 (TIME-WAIT: "The only thing that can arrive in this state
is a retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout"), RFC 9293
§3.6.1 / RFC 1122 §4.2.2.13 (the side that closes first lingers in TIME-WAIT), and the classic
lesson that without that state the client answers the server's FIN with RST. Expectations (and the
intent the run announces, intent()) follow the client's net.ipv4.tcp_max_tw_buckets: at 0 the
kernel has no room for TIME-WAIT (tcp_time_wait(): TCPTimeWaitOverflow; reference R-MAX-TW-BUCKETS) and the RST path is what
must be observed - the RST in both captures, no further FIN, the server's socket CLOSE (TCP_INFO)
and gone (sock_diag) with ECONNRESET: the socket FAQ's "the server would see an error" (tcp_reset();
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

from lab.core import Lab
from lab.evidence import Evidence
from lab.shaping import OPTIONAL
from lab.verdict import Check

from ._steps import client_closes_first

NAME = "lost-ack"
INTENT = "the final ACK is lost; TIME-WAIT re-ACKs each retransmitted FIN and restarts its 2MSL timer"
INTENT_NO_TIME_WAIT = ("tcp_max_tw_buckets=0: no TIME-WAIT on the client, so the server's FIN meets a RST "
                       "that ends the server's connection at once")
SHAPING = OPTIONAL
PORT = 5000
RETRANSMISSIONS_UNDER_DROP = 2        # RTO retransmissions of the FIN (sock_diag idiag_retrans; the
                                      # tail-loss probe before them is not counted) before lifting
LINUX_TIMEWAIT_MS = 60_000            # TCP_TIMEWAIT_LEN (include/net/tcp.h), reference R-TW-LEN

CITE_ACK_RESTART = "RFC 9293 §3.10.7.4 (RFC 793 p.73): TIME-WAIT, FIN arrives: acknowledge it, restart the 2 MSL timeout; Linux tcp_timewait_state_process()"
CITE_CLOSER_WAITS = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes first lingers in TIME-WAIT"
CITE_RETRANSMIT = "RFC 9293 §3.8.1 and RFC 6298 §5.5: retransmit on RTO, doubling it each time (Linux sends a tail-loss probe first)"
CITE_OVERFLOW = "reference R-MAX-TW-BUCKETS: with tcp_max_tw_buckets exhausted a closing socket skips TIME-WAIT (TCPTimeWaitOverflow) and answers the peer's FIN with RST (tcp_time_wait(), tcp_v4_send_reset())"
CITE_TW_LEN = "reference R-TW-LEN: Linux TIME-WAIT is TCP_TIMEWAIT_LEN = 60 s (BSD 2MSL = 2 x 30 s; RFC 1122's 2 x 2 min is not followed)"


def run(lab: Lab) -> dict:

    server, _client = client_closes_first(lab, PORT)           # ... FIN ->, <- ACK: FIN_WAIT2

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
    }


def _no_time_wait(sysctls: dict[str, dict[str, str]]) -> bool:
    """The client's tcp_max_tw_buckets is 0: no TIME-WAIT socket can be made there."""
    return int(sysctls.get("client", {}).get("net.ipv4.tcp_max_tw_buckets", "1")) == 0


def intent(sysctls: dict[str, dict[str, str]]) -> str:
    """What this run shows, given the sysctls in force (read back from each host)."""
    return INTENT_NO_TIME_WAIT if _no_time_wait(sysctls) else INTENT


def check(ev: Evidence) -> list[Check]:
    if _no_time_wait(ev.sysctls):
        return _check_no_timewait(ev)
    return _check_timewait(ev)


def _server_fins(ev: Evidence, at: str):
    return ev.segments(at, src="server", dst="client", flag="FIN")


def _check_timewait(ev: Evidence) -> list[Check]:
    checks = []
    drop = ev.faults.get("lost-ack", {})
    # the rule went at some moment between asking nft to delete it and nft returning: ACKs
    # sent before the asking were certainly under the drop
    lifted = drop.get("lift_asked_at") or drop.get("removed_at") or float("inf")
    fins_srv = _server_fins(ev, "server")
    fins_cli = _server_fins(ev, "client")
    seqs = sorted({f.seq for f in fins_srv})
    times = [f.t for f in fins_srv]
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]

    # 1. the side that closed first holds TIME-WAIT, the other never does
    cli_tw, srv_tw = ev.ever_in("client", "TIME_WAIT"), ev.ever_in("server", "TIME_WAIT")
    checks.append(Check(
        "client-closed-first-holds-time-wait", CITE_CLOSER_WAITS,
        "client enters TIME_WAIT; server never does",
        f"sock_diag: client {'entered' if cli_tw else 'never entered'} TIME_WAIT, "
        f"server {'entered' if srv_tw else 'never entered'} it",
        cli_tw and not srv_tw, {"client_time_wait": cli_tw, "server_time_wait": srv_tw}))

    # 2. the server retransmits its FIN (same sequence number), at growing intervals
    # With tail-loss probes on (tcp_early_retrans 3 or 4), the first retransmission is a probe
    # sent after ~2 x SRTT, not after an RTO: over a long path it can come later than the first
    # RTO gap, so the backoff is judged on the RTO retransmissions after it.
    tlp = ev.sysctl("server", "net.ipv4.tcp_early_retrans", "3") in ("3", "4")
    rto_gaps = gaps[1:] if tlp else gaps
    doubled = any(later >= 1.8 * earlier for i, earlier in enumerate(rto_gaps) for later in rto_gaps[i + 1:])
    growing = all(b >= 0.9 * a for a, b in zip(rto_gaps, rto_gaps[1:]))
    ok = len(fins_srv) >= 3 and len(seqs) == 1 and len(rto_gaps) >= 2 and growing and doubled
    hole_srv = ev.capture_hole("server")
    if not ok and len(seqs) <= 1 and hole_srv:
        ok = None       # a FIN among tcpdump's drops would change the count and merge two intervals
    checks.append(Check.judged(
        "server-retransmits-fin", CITE_RETRANSMIT,
        ">= 3 FINs from the server with one sequence number; "
        + ("after the tail-loss probe, " if tlp else "") + "RTO intervals not shrinking, the RTO doubling",
        f"server.pcap: {len(fins_srv)} FINs, seq {seqs}, intervals {gaps} s"
        + (f" (the first is the tail-loss probe's wait; RTO gaps {rto_gaps})" if tlp else ""),
        ok, {"fin_count": len(fins_srv), "fin_seqs": seqs, "fin_times": times, "intervals_s": gaps,
             "rto_intervals_s": rto_gaps, "tail_loss_probe": tlp},
        missing=f"server.pcap: {len(fins_srv)} FINs, intervals {gaps} s, but {hole_srv}: a FIN may be "
                "missing from it"))

    # 3. TIME-WAIT acknowledges every FIN that reaches the client
    # each FIN's answer must leave before the next FIN arrives (a later ACK answers a later FIN)
    answers = []
    for i, f in enumerate(fins_cli):
        until = fins_cli[i + 1].t if i + 1 < len(fins_cli) else float("inf")
        answers.append([a for a in ev.acks_of("client", f, after=f.t) if a.t < until][:1])
    unanswered = [round(f.t - (times[0] if times else fins_cli[0].t), 3)
                  for f, a in zip(fins_cli, answers) if not a]
    acks_cli = [a[0] for a in answers if a]
    # a RST in answer is a wrong segment the capture shows; a FIN or ACK absent from a capture
    # whose tcpdump dropped packets may have been on the wire: not judged
    rst_cli = [s for s in ev.segments("client", src="client", dst="server", flag="RST")
               if fins_cli and s.t >= fins_cli[0].t]
    hole_cli = ev.capture_hole("client")
    ok = bool(fins_cli) and not unanswered and len(fins_cli) >= 3
    observed = (f"client.pcap: {len(fins_cli)} FINs arrived, {len(acks_cli)} answered by an ACK"
                + (f"; unanswered at {unanswered}" if unanswered else "")
                + (f"; {len(rst_cli)} RSTs from the client" if rst_cli else ""))
    checks.append(Check.judged(
        "time-wait-acks-every-fin", CITE_ACK_RESTART,
        "an ACK leaves the client after each FIN from the server",
        observed, False if rst_cli else None if not ok and hole_cli else ok,
        {"fins_at_client": len(fins_cli), "acks_from_client": len(acks_cli)},
        missing=f"{observed}, but {hole_cli}: a FIN or its ACK may be among them"))

    # 4. those ACKs never reached the server while the drop was in force; the next one did
    during = [a for a in acks_cli if a.t < lifted]
    reached = [a for a in during if any(s.same_wire(a) for s in ev.packets["server"])]
    after = [a for a in acks_cli if a.t >= lifted]
    after_reached = [a for a in after if any(s.same_wire(a) for s in ev.packets["server"])]
    ok = len(during) >= 2 and not reached and bool(after_reached) and drop.get("dropped", 0) >= len(during)
    # an ACK under the drop that reached server.pcap, or fewer drops than nft counted, is on the
    # record; too few ACKs in client.pcap, or the next ACK absent from server.pcap, may be
    # tcpdump's drops (the drop's own proof is nft's counter, not an absence)
    hole = ev.capture_hole("client", "server")
    if not ok and hole and not reached and drop.get("dropped", 0) >= len(during):
        ok = None
    checks.append(Check.judged(
        "final-ack-lost-then-delivered", "lab fault: nft drop of pure ACKs client->server in the router's forward path",
        ">= 2 client ACKs dropped (in client.pcap, absent from server.pcap); after the drop is lifted the next ACK reaches the server",
        f"{len(during)} ACKs sent under the drop, {len(reached)} of them in server.pcap, nft dropped "
        f"{drop.get('dropped', 0)}; after lifting {len(after)} sent, {len(after_reached)} arrived",
        ok, {"acks_under_drop": len(during), "acks_under_drop_seen_by_server": len(reached),
             "nft_dropped": drop.get("dropped", 0), "drop_times": drop.get("drop_times", []),
             "acks_after_lift": len(after), "acks_after_lift_seen_by_server": len(after_reached)},
        missing=f"{len(during)} ACKs sent under the drop, nft dropped {drop.get('dropped', 0)}; after lifting "
                f"{len(after)} sent, {len(after_reached)} arrived - but {hole}: the ACKs missing may be among them"))

    # 5. the TIME-WAIT timer restarts at each retransmitted FIN: due 60 s after that FIN.
    checks.append(_timer_restarts(ev, fins_cli, answers))

    # 6. the server's socket closes cleanly; the client stays in TIME-WAIT
    end = ev.facts.get("client_sockets_at_end", [])
    cli_left = [s for s in end if s["state"] == "TIME_WAIT"]
    so_error = ev.facts.get("server_so_error")
    ok = so_error == 0 and bool(cli_left)
    checks.append(Check(
        "close-completes-client-keeps-time-wait", CITE_CLOSER_WAITS,
        "server socket gone with no error (SO_ERROR 0); client still in TIME_WAIT",
        f"server SO_ERROR={so_error} ({errno.errorcode.get(so_error, '-') if so_error else 'none'}), "
        f"state {ev.facts.get('server_state_after')}; client sockets at end: "
        f"{[(s['state'], round(s['expires_ms'] / 1000, 1)) for s in end]}",
        ok, {"server_so_error": so_error, "client_time_wait_left_ms": [s["expires_ms"] for s in cli_left]}))

    # 7. how long TIME-WAIT is armed for: Linux's fixed 60 s
    entered = fins_cli[0].t if fins_cli else fins_srv[0].t if fins_srv else None
    checks.append(_armed_for_60s(ev, entered))
    return checks


def _armed_for_60s(ev: Evidence, entered: float | None) -> Check:
    """The first sock_diag sample of the client's TIME-WAIT reads its timer: 60 s less the time
    since it was armed (the first FIN's arrival, or a later FIN's). A reading more than 1 s short
    is a failure - unless the sample came that late because the sampler fell behind between the
    FIN and it: then the reading shows the time that passed, not how long the timer was armed."""
    first_ev = next((e for e in ev.states("client") if e.data["socket"]["state"] == "TIME_WAIT"), None)
    first = first_ev.data["socket"]["expires_ms"] if first_ev else None
    ok = first is not None and LINUX_TIMEWAIT_MS - 1000 <= first <= LINUX_TIMEWAIT_MS
    late_ms = gap = None
    if first_ev is not None and entered is not None:
        asked = first_ev.data.get("asked") or first_ev.t
        late_ms = round((asked - entered) * 1000, 1)
        gap = ev.sampler_gap_ms(entered, asked)
    observed = (f"sock_diag: first TIME_WAIT sample had {first} ms left"
                + (f", {late_ms} ms after the server's first FIN reached the client" if late_ms is not None else ""))
    explained = (first is not None and first < LINUX_TIMEWAIT_MS - 1000 and gap is not None
                 and late_ms is not None and first + late_ms >= LINUX_TIMEWAIT_MS - 1000)
    return Check.judged(
        "time-wait-armed-for-60s", CITE_TW_LEN,
        "TIME_WAIT timer armed at 60 s (BSD 2MSL; RFC 1122 asks 240 s)",
        observed, None if explained else ok,
        {"first_expires_ms": first, "first_sample_after_fin_ms": late_ms, "sampler_gap_ms": gap},
        missing=f"{observed}: the sampler fell behind there (its longest gap: {gap} ms), so the "
                "reading shows the time that passed, not how long the timer was armed")


def _timer_restarts(ev: Evidence, fins_cli: list, answers: list[list]) -> Check:
    """After each retransmitted FIN, when the client's TIME-WAIT timer is due.

    The kernel restarts the timer before it sends the ACK (tcp_timewait_state_process():
    inet_twsk_reschedule(), then TCP_TW_ACK), so every sock_diag sample asked after that ACK left
    the client must show the new deadline; each sample bounds the due time (Evidence.due_times),
    the narrowest tells. No sample between that ACK and the next FIN is a hole in the observation
    (the sampler fell behind): inconclusive for that FIN, never a failure."""
    tol_ms = 2 * 1000 / (ev.hz or 100) + 20      # two jiffies + a margin for the clocks
    offsets, widths, holes = [], [], []
    for i, f in enumerate(fins_cli[1:], start=1):
        nxt = fins_cli[i + 1].t if i + 1 < len(fins_cli) else f.t + 5
        start = answers[i][0].t if answers[i] else f.t
        want = f.t + LINUX_TIMEWAIT_MS / 1000
        window = ev.due_times("client", start, nxt)
        if not window:
            offsets.append(None)
            widths.append(None)
            gap = ev.sampler_gap_ms(start, nxt)
            holes.append(f"after the FIN at +{f.t - fins_cli[0].t:.3f} s no sample before the next FIN"
                         + (f" (the sampler's longest gap there: {gap} ms)" if gap else ""))
            continue
        # samples a FIN's processing may not have reached yet (no ACK to time it by) are skipped
        after = [b for b in window if b[1] >= want - tol_ms / 1000] or window
        lo, hi = min(after, key=lambda b: b[1] - b[0])
        closest = min(max(want, lo), hi)          # the point of [lo, hi] nearest the expectation
        offsets.append(round((closest - f.t) * 1000))
        widths.append(round((hi - lo) * 1000, 1))
    judged = [o for o in offsets if o is not None]
    wrong = [o for o in judged if abs(o - LINUX_TIMEWAIT_MS) > tol_ms]
    if len(fins_cli) < 2:
        holes.append(f"client.pcap has {len(fins_cli)} FINs from the server ({ev.capture_hole('client')})")
        ok = None if ev.capture_hole("client") else False
    else:
        ok = False if wrong else (None if holes else True)
    return Check.judged(
        "time-wait-timer-restarts", CITE_ACK_RESTART,
        f"after each retransmitted FIN the client's TIME-WAIT timer is due {LINUX_TIMEWAIT_MS} ms "
        f"after that FIN (+- {tol_ms:.0f} ms)",
        f"sock_diag: {len(fins_cli) - 1 if fins_cli else 0} retransmitted FINs; timer due, after each, in "
        f"{offsets} ms from that FIN",
        ok, {"due_after_fin_ms": offsets, "sample_width_ms": widths, "tolerance_ms": tol_ms},
        missing=f"{'; '.join(holes)}; judged {len(judged)} of {len(offsets)}: due {offsets} ms")


def _check_no_timewait(ev: Evidence) -> list[Check]:
    checks = []
    overflow = ev.counter("client", "TcpExtTCPTimeWaitOverflow")
    cli_tw = ev.ever_in("client", "TIME_WAIT")
    checks.append(Check(
        "no-time-wait-state", CITE_OVERFLOW,
        "tcp_max_tw_buckets=0: the client never holds TIME_WAIT, TCPTimeWaitOverflow rises",
        f"sock_diag: client {'entered' if cli_tw else 'never entered'} TIME_WAIT; "
        f"TcpExtTCPTimeWaitOverflow +{overflow}",
        not cli_tw and overflow >= 1, {"TCPTimeWaitOverflow": overflow, "client_time_wait": cli_tw}))

    fins_cli = _server_fins(ev, "client")
    rsts = [s for s in ev.segments("client", src="client", dst="server", flag="RST")
            if fins_cli and s.t >= fins_cli[0].t]
    answered = bool(rsts) and rsts[0].seq == fins_cli[0].ack if fins_cli else False
    out_rsts = ev.counter("client", "TcpOutRsts")
    ok = answered and out_rsts >= 1
    hole_cli = ev.capture_hole("client")
    if not ok and out_rsts >= 1 and not (rsts and fins_cli) and hole_cli:
        ok = None           # the kernel sent a RST; the FIN or the RST is among tcpdump's drops
    observed = (f"client.pcap: {len(fins_cli)} FINs from the server, {len(rsts)} RSTs from the client after it"
                + (f" (RST seq {rsts[0].seq} = FIN's ack {fins_cli[0].ack})" if rsts and fins_cli else "")
                + f"; TcpOutRsts +{out_rsts}")
    checks.append(Check.judged(
        "fin-answered-with-rst", CITE_OVERFLOW,
        "the server's FIN reaches a client with no state for it and is answered with RST",
        observed, ok,
        {"fins_at_client": len(fins_cli), "rsts_from_client": len(rsts), "TcpOutRsts": out_rsts},
        missing=f"{observed}, but {hole_cli}: the FIN or the RST may be among them"))

    # the RST ends the server's connection at once: no further FIN after it, socket gone
    so_error = ev.facts.get("server_so_error")
    rst_at_server = [s for s in ev.segments("server", src="client", dst="server", flag="RST")]
    fins_srv = _server_fins(ev, "server")
    later_fins = [f for f in fins_srv if rst_at_server and f.t > rst_at_server[0].t]
    # the server's connection (not its listener) disappearing: LAST_ACK lasts one round trip
    # here, shorter than the sampling interval, so the last state seen before it went may be
    # anything from ESTABLISHED on. A sample asked just before the RST was captured can already
    # see its effect, hence the 10 ms of slack before the capture time.
    gone = next((e.t for e in ev.states("server") if e.data["socket"]["state"] == "GONE"
                 and e.data["socket"]["dport"] != 0
                 and rst_at_server and e.t >= rst_at_server[0].t - 0.01), None)
    state_after = ev.facts.get("server_state_after")
    ok = bool(rst_at_server) and not later_fins and state_after == "CLOSE" and so_error == errno.ECONNRESET
    hole_srv = ev.capture_hole("server")
    if not rst_at_server and hole_srv and not later_fins and state_after == "CLOSE" and so_error == errno.ECONNRESET:
        ok = None           # the socket was reset; the RST that did it is among tcpdump's drops
    checks.append(Check.judged(
        "rst-aborts-server", "RFC 9293 §3.10.7.4 (second, check the RST bit): in LAST-ACK a reset closes the connection; Linux tcp_reset() sets ECONNRESET (reference R-LASTACK-RST)",
        "the RST reaches the server and ends its connection (TCP_INFO state CLOSE) with ECONNRESET "
        "(SO_ERROR), with no further FIN",
        f"server.pcap: RST {'arrived' if rst_at_server else 'never arrived'}; "
        f"{len(later_fins)} FINs after it; the server's socket (TCP_INFO) is {state_after}; sock_diag: connection "
        + (f"gone {round((gone - rst_at_server[0].t) * 1000, 1)} ms after the RST was captured"
           if gone is not None else "not seen to go after the RST")
        + f"; the server's socket reported SO_ERROR={so_error} ({errno.errorcode.get(so_error, '?') if so_error else 'no error'})",
        ok, {"server_so_error": so_error, "fins_after_rst": len(later_fins),
             "socket_gone_after_rst_ms": None if gone is None or not rst_at_server else round((gone - rst_at_server[0].t) * 1000, 3)},
        missing=f"server.pcap has no RST from the client ({hole_srv}), though the server's socket ended "
                f"{state_after} with SO_ERROR={so_error}"))
    return checks
