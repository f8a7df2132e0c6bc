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

A case whose premise the run did not produce is not applicable, not failed: seq-behind's SYN
above rcv_nxt (the transfer did not outrun the ISN clock: a slow machine), or an injected SYN that
TIME-WAIT did not accept or that no RST showed to be an old duplicate (condition (2) has nothing
to act on). A segment missing from a capture that dropped packets makes its check inconclusive.
"""

from __future__ import annotations

import threading
import time

from lab.core import Lab
from lab.evidence import Evidence
from lab.packets import Segment
from lab.shaping import UNUSED
from lab.verdict import Check

from ._premise import time_wait_room

NAME = "tw-reopen"
INTENT = "a SYN reopens a 4-tuple in TIME-WAIT (seq above rcv_nxt or newer timestamp, RFC 6191) with ISN = old snd_nxt + 65537; RFC 1122 condition (2) is not implemented"
SHAPING = UNUSED            # seq-behind needs a fast transfer: 24 MiB must outrun the ISN clock
PORT = 5000
BULK = 24 << 20             # 24 MiB: the ISN clock moves 15.6 M per second (reference R-ISN-CLOCK)
CASES = {"seq-ahead": 41001, "seq-behind": 41002, "old-duplicate": 41003}
TW_ISN_STEP = 65535 + 2     # tcp_timewait_state_process(): isn = tw_snd_nxt + 65535 + 2
ABANDON_S = 0.3             # how long the client waits for its held SYN before giving up
CAPTURE_SETTLE_S = 0.3      # after the bulk transfer, before closing: tcpdump drops packets while
                            # it is behind, and the close must be captured (the ISN clock moves
                            # only 4.7 M meanwhile, far less than the 25 M bytes sent)

CITE_SETUP = "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the server closed first and lingers in TIME-WAIT"
CITE_ACCEPT = ("RFC 1122 §4.2.2.13 (MAY-2) and RFC 6191 §2; Linux tcp_timewait_state_process() "
               "(net/ipv4/tcp_minisocks.c): a SYN is accepted if not PAWS-rejected and after(seq, rcv_nxt) "
               "or its timestamp is newer than tw_ts_recent; otherwise TIME-WAIT answers with an ACK (reference R-TW-SYN)")
CITE_ISN = ("RFC 1122 §4.2.2.13 condition (1): the new ISN is larger than any sequence number used before; Linux "
            "tcp_timewait_state_process(): isn = tw_snd_nxt + 65535 + 2 (reference R-TW-SYN)")
CITE_REFUSED = ("RFC 9293 §3.10.7.3 (SYN-SENT: an unacceptable ACK is answered with <SEQ=SEG.ACK><CTL=RST>); "
                "reference R-TW-RST: an RST with seq == rcv_nxt kills TIME-WAIT when tcp_rfc1337=0 and is ignored when 1; "
                "Linux tcp_rcv_synsent_state_process() retransmits the SYN after TCP_TIMEOUT_MIN")
CITE_RED_PEN = ("RFC 1122 §4.2.2.13 condition (2): \"returns to TIME-WAIT state if the SYN turns out to be an old "
                "duplicate\"; Linux net/ipv4/tcp_minisocks.c tcp_timewait_state_process(), comment \"RED-PEN: we "
                "violate main RFC requirement, if this SYN will appear old duplicate (i.e. we receive RST in reply "
                "to SYN-ACK), we must return socket to time-wait state. It is not good, but not fatal yet.\" "
                "(reference R-TW-RED-PEN)")
CITE_TS = "RFC 7323 §3.2: timestamps are used only if both SYN and SYN-ACK carry the option; net.ipv4.tcp_timestamps (reference R-TIMESTAMPS)"


# -- the steps -------------------------------------------------------------------------------

def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"server": 1}, "the old incarnation a new SYN meets")


def run(lab: Lab) -> dict:
    server, client = lab.peer("server"), lab.peer("client")
    srv = lab.host("server").address
    sview, cview = lab.views["server"], lab.views["client"]
    server.listen("L", PORT)
    cases: dict[str, dict] = {}

    def server_side(lport: int) -> list:
        return [s for s in sview.sockets(port=PORT) if s.dport == lport]

    def client_side(lport: int) -> list:
        return [s for s in cview.sockets(port=PORT) if s.sport == lport]

    def old_incarnation(name: str, lport: int, nbytes: int) -> dict:
        client.connect(name, srv, PORT, lport=lport)
        server.accept("L", as_=f"s-{name}")
        t0 = time.time()
        if nbytes > 1024:
            sent: dict = {}
            th = threading.Thread(target=lambda: sent.update(
                r=client.blast(name, nbytes, "DATA", timeout_s=60)))
            th.start()
            got = server.drain(f"s-{name}", nbytes, timeout_s=30)
            th.join()
            moved = got["len"]
        else:
            client.send(name, b"x" * nbytes)
            moved = server.recv(f"s-{name}")["len"]
        transfer_s = time.time() - t0
        if nbytes > 1024:
            time.sleep(CAPTURE_SETTLE_S)                       # let tcpdump drain the burst
        server.close(f"s-{name}")                              # the server closes first
        client.recv(name)                                      # EOF
        client.close(name)
        lab.wait_for(f"{name}: the server's 4-tuple in TIME_WAIT",
                     lambda: [s for s in server_side(lport) if s.state == "TIME_WAIT"], timeout_s=5)
        lab.wait_for(f"{name}: the client's socket fully closed (port {lport} free again)",
                     lambda: not client_side(lport), timeout_s=5)
        return {"client_port": lport, "bytes": moved, "transfer_s": round(transfer_s, 4),
                "server_before": [s.to_json() for s in server_side(lport)],
                "client_before": [s.to_json() for s in client_side(lport)]}

    # seq-ahead and seq-behind: the client reconnects from the same port
    for name, nbytes in (("seq-ahead", 5), ("seq-behind", BULK)):
        lport = CASES[name]
        case = old_incarnation(name, lport, nbytes)
        r = client.connect(f"{name}-new", srv, PORT, lport=lport, timeout_s=75)
        case.update(reconnect_ok=r.ok, reconnect_errno=r.errno, reconnect_error=r.error, reconnect_t=r.t)
        if r.ok:
            server.accept("L", as_=f"s-{name}-new")
            case["server_after"] = [s.to_json() for s in server_side(lport)]
            client.close(f"{name}-new")
            server.close(f"s-{name}-new")
        cases[name] = case

    # old-duplicate: a SYN the client has given up on reaches the server's TIME-WAIT
    name, lport = "old-duplicate", CASES["old-duplicate"]
    case = old_incarnation(name, lport, 5)
    lab.faults.hold("held-syn", lab.host("client"), lab.host("server"), flags="syn")
    r = client.connect(f"{name}-try", srv, PORT, lport=lport, timeout_s=ABANDON_S)
    client.close(f"{name}-try")                                # SYN_SENT: closes without a packet
    held = lab.wait_for("the client's SYN held in the router", lambda: lab.faults.logged("held-syn"), timeout_s=5)
    lab.wait_for("the abandoned socket gone", lambda: not client_side(lport), timeout_s=5)
    case["server_before_inject"] = [s.to_json() for s in server_side(lport)]
    injected = lab.faults.inject([held[0]], lab.host("server"))
    lab.faults.lift("held-syn")
    # give the exchange (SYN-ACK, RST) time, then look: Linux leaves nothing; RFC 1122 (2) would
    # have restored TIME_WAIT
    deadline = time.time() + 2
    while time.time() < deadline and server_side(lport):
        time.sleep(0.01)
    time.sleep(0.2)
    case.update(abandoned_connect_ok=r.ok, abandoned_connect_error=r.error, held_syn_seq=held[0].seq,
                injected_at=injected, server_after=[s.to_json() for s in server_side(lport)],
                looked_at=time.time())
    cases[name] = case
    server.close("L")
    return {"cases": cases, "bulk_bytes": BULK}


# -- the judgement ----------------------------------------------------------------------------

def _before(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def _after(a: int, b: int) -> bool:
    return _before(b, a)


def _tuple_segs(ev: Evidence, at: str, lport: int) -> list[Segment]:
    c, s = ev.addresses["client"], ev.addresses["server"]
    return [x for x in ev.packets.get(at, [])
            if (x.src, x.sport, x.dst, x.dport) in ((c, lport, s, PORT), (s, PORT, c, lport))]


def _incarnations(ev: Evidence, at: str, lport: int) -> dict:
    """From *at*'s capture: the old incarnation (its client SYN, the server's FIN and the client's
    FIN, the last client TSval) and the reopening SYN(s) after it with the server's answers."""
    segs = _tuple_segs(ev, at, lport)
    c, s = ev.addresses["client"], ev.addresses["server"]
    syns = [x for x in segs if x.src == c and x.flags == "SYN"]
    cfin = next((x for x in segs if x.src == c and x.has("FIN")), None)
    sfin = next((x for x in segs if x.src == s and x.has("FIN")), None)
    # a capture that fell behind during the bulk transfer may lack a FIN: take it from the
    # other end's capture (same clock), and say so
    other = [x for x in _tuple_segs(ev, "client" if at == "server" else "server", lport)]
    borrowed = []
    if cfin is None:
        cfin = next((x for x in other if x.src == c and x.has("FIN")), None)
        borrowed.append("client FIN")
    if sfin is None:
        sfin = next((x for x in other if x.src == s and x.has("FIN")), None)
        borrowed.append("server FIN")
    if not syns or cfin is None or sfin is None:
        return {}
    new_syns = [x for x in syns if x.t > max(cfin.t, sfin.t)]
    end = new_syns[0].t if new_syns else float("inf")
    old = [x for x in segs if x.t < end]
    tsvals = [x.tsval for x in old if x.src == c and x.tsval is not None]
    syn_ack = next((x for x in old if x.src == s and x.has("SYN") and x.has("ACK")), None)
    out = {"old_client_isn": syns[0].seq, "rcv_nxt": (cfin.seq + cfin.length + 1) & 0xFFFFFFFF,
           "old_snd_nxt": (sfin.seq + sfin.length + 1) & 0xFFFFFFFF, "server_fin_t": sfin.t,
           "client_fin_t": cfin.t, "server_closed_first": sfin.t < cfin.t and cfin.ack == (sfin.seq + 1) & 0xFFFFFFFF,
           "ts_recent": tsvals[-1] if tsvals else None,
           "old_timestamps": syns[0].tsval is not None and syn_ack is not None and syn_ack.tsval is not None,
           "new_syns": new_syns, "borrowed": borrowed}
    # the server's answer to each new SYN: the first segment from the server after it
    answers = []
    for i, syn in enumerate(new_syns):
        nxt = new_syns[i + 1].t if i + 1 < len(new_syns) else float("inf")
        ans = next((x for x in segs if x.src == s and syn.t <= x.t < nxt), None)
        rst = next((x for x in segs if x.src == c and x.has("RST") and ans is not None and ans.t <= x.t < nxt), None)
        answers.append((syn, ans, rst))
    out["answers"] = answers
    return out


def check(ev: Evidence) -> list[Check]:
    cases = ev.facts.get("cases", {})
    checks = [_check_timestamps(ev, cases)]
    for name in ("seq-ahead", "seq-behind"):
        checks += _check_reopen(ev, name, cases.get(name))
    checks.append(_check_condition_2(ev, cases.get("old-duplicate")))
    return checks


def _check_timestamps(ev: Evidence, cases: dict) -> Check:
    want_syn = int(ev.sysctl("client", "net.ipv4.tcp_timestamps", "1") or 0) != 0
    want_both = want_syn and int(ev.sysctl("server", "net.ipv4.tcp_timestamps", "1") or 0) != 0
    syns = [x for x in ev.packets.get("server", []) if x.flags == "SYN" and x.src == ev.addresses["client"]]
    acks = [x for x in ev.packets.get("server", []) if x.has("SYN") and x.has("ACK") and x.src == ev.addresses["server"]]
    syn_ts = {x.tsval is not None for x in syns}
    ack_ts = {x.tsval is not None for x in acks}
    ok = bool(syns) and bool(acks) and syn_ts == {want_syn} and ack_ts == {want_both}
    return Check(
        "timestamps-as-configured", CITE_TS,
        f"client tcp_timestamps={ev.sysctl('client', 'net.ipv4.tcp_timestamps')}, server "
        f"{ev.sysctl('server', 'net.ipv4.tcp_timestamps')}: SYNs {'carry' if want_syn else 'lack'} the option, "
        f"SYN-ACKs {'carry' if want_both else 'lack'} it",
        f"server.pcap: {len(syns)} SYNs, TSval present {sorted(syn_ts)}; {len(acks)} SYN-ACKs, TSval present {sorted(ack_ts)}",
        ok, {"syns": len(syns), "syn_has_ts": sorted(syn_ts), "syn_acks": len(acks), "syn_ack_has_ts": sorted(ack_ts)})


def _check_reopen(ev: Evidence, name: str, case: dict | None) -> list[Check]:
    if not case:
        return [Check(f"{name}-reopen", CITE_ACCEPT, "the case runs", "the case never ran", False, {})]
    lport = case["client_port"]
    inc = _incarnations(ev, "server", lport)
    checks = []
    tw_before = [s for s in case.get("server_before", []) if s["state"] == "TIME_WAIT"]
    hole = ev.capture_hole("client", "server")
    # the run waited for the server's TIME_WAIT, so the old connection's SYN and FINs were sent:
    # captures without them say nothing about who closed first
    ok = None if not inc else (inc["server_closed_first"] and bool(tw_before) and not case.get("client_before"))
    checks.append(Check.judged(
        f"{name}-server-holds-time-wait", CITE_SETUP,
        f"the server's FIN goes first; just before the client reconnects from :{lport} the server holds the "
        "4-tuple in TIME_WAIT and the client has no socket on it",
        f"server.pcap: server FIN {'first' if inc.get('server_closed_first') else 'NOT first'}"
        + (f" ({', '.join(inc['borrowed'])} missing from server.pcap, taken from client.pcap)" if inc.get("borrowed") else "")
        + "; sock_diag: server "
        f"{[(s['state'], s['expires_ms']) for s in case.get('server_before', [])]}, client "
        f"{[s['state'] for s in case.get('client_before', [])] or 'nothing'}",
        ok, {"client_port": lport, "server_time_wait_ms_left": [s["expires_ms"] for s in tw_before],
             "old_bytes": case.get("bytes"), "transfer_s": case.get("transfer_s")},
        missing=f"the captures lack the old connection's SYN or FINs on :{lport}" + (f" ({hole})" if hole else "")))
    if not inc or not inc["answers"]:
        # a connect() that succeeded sent its SYN: one missing from server.pcap is the capture's hole
        sent = bool(case.get("reconnect_ok")) or not inc
        checks.append(Check.judged(
            f"{name}-syn-judged-by-time-wait", CITE_ACCEPT, "a new SYN from the same port",
            "server.pcap: no new SYN after the old connection", None if sent else False, {},
            missing=(f"server.pcap has no new SYN from :{lport} although connect() "
                     f"{'succeeded' if case.get('reconnect_ok') else 'ran'}" + (f" ({hole})" if hole else ""))))
        return checks

    syn, ans, rst = inc["answers"][0]
    ts_used = inc["old_timestamps"] and syn.tsval is not None
    seq_after = _after(syn.seq, inc["rcv_nxt"])
    ts_newer = ts_used and inc["ts_recent"] is not None and ((inc["ts_recent"] - syn.tsval) & 0xFFFFFFFF) >= 0x80000000
    paws = ts_used and inc["ts_recent"] is not None and not ts_newer and syn.tsval != inc["ts_recent"]
    want_accept = not paws and (seq_after or ts_newer)
    decided_by = "sequence number" if seq_after else "timestamp (RFC 6191)" if ts_newer else "nothing: not acceptable"
    accepted = ans is not None and ans.has("SYN") and ans.has("ACK")
    acked = ans is not None and ans.flags == "ACK" and ans.ack == inc["rcv_nxt"]
    # the case's own premise: seq-ahead's SYN lies above rcv_nxt, seq-behind's below it
    premise = seq_after if name == "seq-ahead" else not seq_after
    gap = (syn.seq - inc["rcv_nxt"]) & 0xFFFFFFFF
    gap = gap - (1 << 32) if gap >= 1 << 31 else gap
    values = {"syn_seq": syn.seq, "rcv_nxt": inc["rcv_nxt"], "seq_minus_rcv_nxt": gap, "syn_tsval": syn.tsval,
              "ts_recent": inc["ts_recent"], "timestamps": ts_used, "seq_after_rcv_nxt": seq_after,
              "ts_newer": ts_newer, "expected_accept": want_accept, "accepted": accepted,
              "answer": f"{ans.flags} seq={ans.seq} ack={ans.ack}" if ans else None,
              "reopened_after_time_wait_s": round(syn.t - inc["client_fin_t"], 4), "old_bytes": case.get("bytes")}
    expected = (f"SYN seq {'above' if seq_after else 'below'} rcv_nxt ({gap:+d}), timestamps "
                f"{'on, TSval ' + ('newer' if ts_newer else 'not newer') if ts_used else 'off'}: "
                + (f"accepted by TIME-WAIT (decided by the {decided_by})" if want_accept else
                   "not acceptable: TIME-WAIT answers with an ACK of rcv_nxt")
                + (f"; premise of {name}: SYN {'above' if name == 'seq-ahead' else 'below'} rcv_nxt"))
    observed = (f"server.pcap: SYN seq={syn.seq} TSval={syn.tsval}, old rcv_nxt={inc['rcv_nxt']} "
                f"ts_recent={inc['ts_recent']}; answered by {values['answer']}, "
                f"{values['reopened_after_time_wait_s']} s after the old connection closed")
    rule_held = accepted if want_accept else acked
    # with a capture that dropped packets, the first answer seen may not be the first sent: only
    # the opposite answer (a SYN-ACK where TIME-WAIT should refuse, its ACK where it should
    # accept) shows the rule broken
    refuted = acked if want_accept else accepted
    unsure = not rule_held and not refuted and bool(hole)
    if rule_held and not premise:
        # the rule held for the SYN that was sent, but it is not the SYN this case is about
        why = (f"{case.get('bytes')} bytes in {case.get('transfer_s')} s did not put rcv_nxt ahead of the ISN "
               "clock (a slow or busy machine)" if name == "seq-behind" else "the new ISN was not above rcv_nxt")
        checks.append(Check.not_applicable(
            f"{name}-syn-judged-by-time-wait", CITE_ACCEPT, expected,
            f"premise not met: {why}; {observed} - the rule held, but for the other case's SYN", values))
    else:
        checks.append(Check.judged(
            f"{name}-syn-judged-by-time-wait", CITE_ACCEPT, expected,
            observed + ("" if premise else "; PREMISE NOT MET"),
            None if unsure else rule_held, values,
            missing=f"{observed}: TIME-WAIT's answer may be missing from server.pcap ({hole})"))

    if want_accept:
        step = (ans.seq - inc["old_snd_nxt"]) & 0xFFFFFFFF if accepted else None
        checks.append(Check.judged(
            f"{name}-new-isn-above-old", CITE_ISN,
            f"the SYN-ACK's ISN = old snd_nxt + {TW_ISN_STEP}",
            f"server.pcap: old server FIN seq {inc['old_snd_nxt'] - 1 & 0xFFFFFFFF} (snd_nxt {inc['old_snd_nxt']}), "
            f"new ISN {ans.seq if ans else None}, difference {step}; connect {'ok' if case.get('reconnect_ok') else case.get('reconnect_error')}",
            None if unsure else (accepted and step == TW_ISN_STEP and bool(case.get("reconnect_ok"))),
            {"old_snd_nxt": inc["old_snd_nxt"], "new_isn": ans.seq if ans else None, "difference": step},
            missing=f"server.pcap lacks the server's answer to the new SYN ({hole})"))
    else:
        rfc1337 = int(ev.sysctl("server", "net.ipv4.tcp_rfc1337", "0") or 0)
        later = inc["answers"][1] if len(inc["answers"]) > 1 else (None, None, None)
        syn2, ans2, _ = later
        rst_ok = rst is not None and ans is not None and rst.seq == ans.ack
        fresh = ans2 is not None and ans2.has("SYN") and ans2.has("ACK") and \
            (ans2.seq - inc["old_snd_nxt"]) & 0xFFFFFFFF != TW_ISN_STEP
        if rfc1337 == 0:
            ok = rst_ok and syn2 is not None and syn2.seq == syn.seq and fresh and bool(case.get("reconnect_ok"))
            expected = ("the client answers TIME-WAIT's ACK with RST (seq = its ack), which kills the TIME-WAIT "
                        "(tcp_rfc1337=0); the client's next SYN reaches the listener: SYN-ACK with a fresh ISN, not "
                        f"old snd_nxt + {TW_ISN_STEP}")
        else:
            ok = rst_ok and syn2 is not None and ans2 is not None and ans2.flags == "ACK"
            expected = ("the client answers TIME-WAIT's ACK with RST, which TIME-WAIT ignores (tcp_rfc1337=1): "
                        "the next SYN is answered with an ACK again")
        unseen = ans is None or rst is None or syn2 is None or ans2 is None
        broken = (rst is not None and ans is not None and rst.seq != ans.ack) or \
            (ans2 is not None and (not fresh if rfc1337 == 0 else ans2.flags != "ACK"))
        if unseen and hole and not ok and not broken:
            ok = None           # a segment of the recovery may be on the wire but not in a capture
        checks.append(Check.judged(
            f"{name}-refused-syn-recovery", CITE_REFUSED, expected,
            f"server.pcap: RST {'seq=' + str(rst.seq) if rst else 'none'} after the ACK; next SYN "
            f"{'seq=' + str(syn2.seq) if syn2 else 'none'} "
            f"{round((syn2.t - syn.t) * 1000, 1) if syn2 else ''} ms later, answered by "
            f"{(ans2.flags + ' seq=' + str(ans2.seq)) if ans2 else 'nothing'}"
            + (f" (ISN - old snd_nxt = {(ans2.seq - inc['old_snd_nxt']) & 0xFFFFFFFF})" if ans2 and ans2.has('SYN') else "")
            + f"; connect {'ok' if case.get('reconnect_ok') else case.get('reconnect_error')}",
            ok, {"rst_seq": rst.seq if rst else None, "ack_ack": ans.ack if ans else None,
                 "second_syn_after_ms": round((syn2.t - syn.t) * 1000, 1) if syn2 else None,
                 "second_answer": ans2.flags if ans2 else None,
                 "second_isn_minus_old_snd_nxt": (ans2.seq - inc["old_snd_nxt"]) & 0xFFFFFFFF if ans2 else None,
                 "tcp_rfc1337": rfc1337, "reconnect_ok": case.get("reconnect_ok")},
            missing=f"server.pcap lacks a segment of the recovery (the ACK, RST, second SYN or its answer): {hole}"))
    return checks


def _check_condition_2(ev: Evidence, case: dict | None) -> Check:
    name = "rfc1122-condition-2-not-implemented"
    if not case:
        return Check(name, CITE_RED_PEN, "the case runs", "the case never ran", False, {})
    strict = bool(ev.options.get("strict_rfc"))
    lport = case["client_port"]
    inc = _incarnations(ev, "server", lport)
    cli = _incarnations(ev, "client", lport)
    tw_before = [s for s in case.get("server_before_inject", []) if s["state"] == "TIME_WAIT"]
    syn, ans, _ = (inc.get("answers") or [(None, None, None)])[0]
    accepted = ans is not None and ans.has("SYN") and ans.has("ACK")
    isn_step = (ans.seq - inc["old_snd_nxt"]) & 0xFFFFFFFF if accepted else None
    # the client has no socket for it any more: it answers the SYN-ACK with RST
    rst = next((x for x in _tuple_segs(ev, "server", lport)
                if ans is not None and x.src == ev.addresses["client"] and x.has("RST") and x.t >= ans.t), None)
    after = case.get("server_after", [])
    restored = any(s["state"] == "TIME_WAIT" for s in after)
    # sock_diag's view of the server 4-tuple from the injection on
    seen = [e.data["socket"]["state"] for e in ev.states("server")
            if e.data["socket"]["dport"] == lport and e.data["socket"]["sport"] == PORT and e.t >= case["injected_at"]]
    unmet = [why for bad, why in (
        (not tw_before, "the server held no TIME_WAIT when the SYN was injected"),
        (case.get("abandoned_connect_ok") is not False, "the client's attempt was not abandoned"),
        (not accepted, "TIME-WAIT did not accept the SYN (no SYN-ACK)"),
        (accepted and isn_step != TW_ISN_STEP, "the SYN-ACK's ISN is not TIME-WAIT's (old snd_nxt + 65537)"),
        (rst is None, "the client sent no RST: the SYN never turned out to be an old duplicate")) if bad]
    left_s = (tw_before[0]["expires_ms"] / 1000) if tw_before else None
    if strict:
        expected = ("RFC 1122 §4.2.2.13 (2), strictly: the SYN turned out to be an old duplicate (RST in reply to the "
                    "SYN-ACK), so the server returns to TIME-WAIT")
        ok = restored
    else:
        expected = ("informational, Linux as documented (RED-PEN): TIME-WAIT accepts the SYN and is destroyed; when "
                    "the client's RST shows the SYN was an old duplicate, nothing returns to TIME-WAIT")
        ok = not restored
    hole = ev.capture_hole("client", "server")
    if not inc:
        return Check.inconclusive(name, CITE_RED_PEN, expected,
                                  f"the captures lack the old connection's SYN or FINs on :{lport}"
                                  + (f" ({hole})" if hole else ""))
    if unmet and hole and (ans is None or rst is None):
        return Check.inconclusive(name, CITE_RED_PEN, expected,
                                  f"server.pcap lacks the answer to the injected SYN or the client's RST ({hole})")
    if unmet:
        # condition (2) acts only on an accepted SYN that turns out to be an old duplicate
        return Check.not_applicable(name, CITE_RED_PEN, expected, "; ".join(unmet),
                                    {"accepted": accepted, "isn_minus_old_snd_nxt": isn_step,
                                     "rst_from_client": rst is not None, "time_wait_left_s_before": left_s})
    return Check(
        name, CITE_RED_PEN, expected,
        f"an abandoned attempt's SYN (seq {case.get('held_syn_seq')}, held in the router, connect gave up: "
        f"{case.get('abandoned_connect_error')}) injected while the server's TIME_WAIT had {left_s} s left: server "
        f"answered {'SYN-ACK with ISN = old snd_nxt + ' + str(isn_step) if accepted else (ans.flags if ans else 'nothing')}, "
        f"client {'answered RST' if rst else 'sent no RST'}; sock_diag from then on: {' -> '.join(seen) or 'no change seen'}; "
        f"after: {[(s['state'], s['expires_ms']) for s in after] or 'no socket for the 4-tuple'} -> "
        + ("RFC 1122 condition (2) NOT implemented" if not restored else "TIME_WAIT restored"),
        ok, {"time_wait_left_s_before": left_s, "accepted": accepted, "isn_minus_old_snd_nxt": isn_step,
             "rst_from_client": rst is not None, "server_states_after_inject": seen,
             "server_sockets_after": after, "time_wait_restored": restored, "strict_rfc": strict,
             "client_saw_syn_ack": bool(cli.get("answers"))})
