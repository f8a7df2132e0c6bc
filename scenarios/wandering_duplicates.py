"""wandering-duplicates: a real segment of an earlier connection, copied in the router and sent
again later, is absorbed by TIME-WAIT; with TIME-WAIT bypassed it meets a new incarnation of the
same 4-tuple, where timestamps (PAWS) reject it - and without timestamps its bytes are delivered.

Checks the rule TIME-WAIT exists for: RFC 9293 §3.4.1 / RFC 793 §3.3 ("we must prevent segments
from one incarnation of a connection from being used while the same sequence numbers may still be
present in the network from an earlier incarnation"), RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13 (2 MSL
in TIME-WAIT), RFC 1337 (hazard H1: old duplicate data accepted), RFC 7323 §5 (PAWS: a segment whose
TSval is older than TS.Recent is not acceptable) and Linux's own checks: tcp_timewait_state_process()
(an out-of-window segment in TIME-WAIT is ACKed and restarts the 60 s timer; a PAWS failure counts
PAWSTimewait), tcp_validate_incoming()/tcp_paws_discard() (PAWSEstab) and tcp_ack(), which since
Linux 6.7 also refuses a segment whose ACK number lies before SND.UNA by more than the bytes this
connection ever had acknowledged (RFC 5961 §5.2, "do not accept ACK for bytes we never sent").
FACTS.md §2 (TIME-WAIT rows), §6 (ISN clock, timestamps, wandering duplicates).

Every replayed segment is one the client really sent: the router copies it (NFLOG) as it passes
and later sends the same bytes again from a raw socket (only the TCP checksum, which the sender's
checksum offload left unfinished, is completed).

(a) TIME-WAIT absorbs an old duplicate. The server closes first and holds TIME-WAIT; the scenario
    runs with server:net.ipv4.tcp_rfc1337=1 (its own SYSCTLS) so that the closed client's RST to
    TIME-WAIT's ACK - RFC 1337's assassination, the subject of tw-assassination - does not end the
    TIME-WAIT under observation; --sysctl server:net.ipv4.tcp_rfc1337=0 shows it killed instead.
(b)/(c) TIME-WAIT bypassed. The client ends a connection with SO_LINGER 0 (close() sends RST: no
    TIME-WAIT anywhere) and connects again from the same port: the same 4-tuple, a new
    incarnation, which nothing stops from opening at once (the scenario waits only until the ISN
    clock is 2 MB short of what the old connection moved, so that the new one has little to
    send). ISNs come from a clock that runs 15.625 M per second (FACTS.md §6), so the new ISNs
    lie about 15.6 M x (seconds between the two SYNs) above the old ones; the old connection
    moved more bytes than that in each direction, so its late sequence numbers lie ahead of the
    new ISNs. The scenario reads the old segment's seq/ack and the new ISNs from the
    router's copies and lets each application send exactly the bytes that bring the new
    connection's RCV.NXT to the old segment's seq and the server's SND.UNA to its ack, then
    replays it. (Linux needs both: an ACK number outside [SND.UNA - min(max window, bytes acked),
    SND.NXT] is refused since 6.7, so on a real network the hazard needs both directions busy -
    RFC 1337's "fast" or "long" connections.) Expectations follow the timestamps in force:
    (b) timestamps on (default): the old TSval is older than TS.Recent: PAWS drops the segment
        (PAWSEstab +1), the server re-ACKs RCV.NXT, the application reads only what the client sent;
    (c) --sysctl client:net.ipv4.tcp_timestamps=0 --sysctl server:net.ipv4.tcp_timestamps=0: the
        segment is in the window with an acceptable ACK: the server application reads the old
        incarnation's bytes ("OLD-OLD-...") in place of the client's next bytes ("NEW-NEW-..."),
        with no error and the same byte count - the hazard 2 MSL of TIME-WAIT exists to prevent.

    t      who      step                                   wire                        state
    -- (a) ------------------------------------------------------------------------------------
    0      client   connect :40006 -> :5006, send 600 B    data -> (router copies it)
    0.1    server   close() first; client close()          <- FIN, FIN ->              server TIME_WAIT
    0.4    router   replay the copied data segment         data -> server
    0.4    server   (kernel) TIME-WAIT answers              <- ACK (PAWSTimewait +1 with TS)
    0.4    client   (kernel) no socket: RST                 RST ->                     rfc1337=1: TW stays
    0.4    server   accept() on the listener: nothing                                  timer back to 60 s
    -- (b)/(c) -------------------------------------------------------------------------------
    0.95   client   connect :40106 -> :5006 (SO_LINGER 0)   SYN ISN x1, <- SYN-ACK y1
    0.95   both     server sends 12 MB, then client 12 MB   ...                         (~0.05 s)
    1.0    client   send 1000 B "OLD-..."                  data seq x1+1+12M, ack y1+1+12M (copied)
    1.03   client   close(): abort                          RST ->                      no TIME_WAIT
    1.59   client   connect :40106 again, 0.64 s after x1   SYN x2 = x1 + ~10.0M, <- SYN-ACK y2
                    (the ISN clock is then 2 MB short of the 12 MB the old connection moved)
    1.75   both     server sends m bytes, client n "NEW-"   RCV.NXT = old seq, SND.UNA = old ack
    1.76   router   replay the old segment                  data -> server
    1.76   server   (kernel) (b) PAWS drop, dup ACK | (c) accepted, ACK seq+1000
    1.81   client   send 4000 B "NEW-..."                   server app reads 4000 B:
                                                           (b) all NEW- | (c) 1000 B OLD- + 3000 B NEW-

Flip: --sysctl client:net.ipv4.tcp_timestamps=0 --sysctl server:net.ipv4.tcp_timestamps=0 ((c));
      --sysctl server:net.ipv4.tcp_rfc1337=0 ((a): the client's RST then kills the TIME-WAIT).
"""

from __future__ import annotations

import errno
import threading
import time

from lab.core import Lab
from lab.evidence import Evidence
from lab.netns import read_counters
from lab.observe import counters_delta
from lab.packets import Segment
from lab.shaping import UNUSED
from lab.verdict import Check

NAME = "wandering-duplicates"
INTENT = ("a replayed old segment: TIME-WAIT ACKs and absorbs it; with TIME-WAIT bypassed PAWS "
          "rejects it, and without timestamps the new connection's application reads the old bytes")
SHAPING = UNUSED                # the old connection must outrun the ISN clock: no slow links
PORT = 5006
PORT_A = 40006                  # the client's port in (a)
PORT_B = 40106                  # the client's port of both incarnations in (b)/(c)
SYSCTLS = {"server": {"net.ipv4.tcp_rfc1337": "1"}}
PARALLEL_SAFE = False           # the old connection's transfer races the ISN clock: run alone

OLD_BYTES = 12_000_000          # each direction of the old incarnation, before the copied segment
MARK_A = 600                    # (a): the copied data segment
MARK = 1000                     # (b)/(c): the copied data segment, one segment (below the MSS)
ALIGN_MARGIN = 2_000_000        # bytes (128 ms of ISN clock) the old connection stays ahead by
TAIL = 4000                     # the client's last send in the new incarnation
ISN_PER_S = 1e9 / 64            # secure_tcp_seq(): hash + (ktime_get_real_ns() >> 6)
TW_WAIT_S = 0.3                 # how long TIME-WAIT has run before the replay in (a)
LINUX_TIMEWAIT_MS = 60_000      # TCP_TIMEWAIT_LEN
M32 = 1 << 32

CITE_TW = ("FACTS.md §2 (old duplicate data in TIME-WAIT: ACKed, timer restarted); Linux "
           "tcp_timewait_state_process(): out-of-window segment -> TCP_TW_ACK, inet_twsk_reschedule(60 s) "
           "when it carries ACK; RFC 9293 §3.10.7.4 (an unacceptable segment is answered with an ACK)")
CITE_PAWS_TW = ("RFC 7323 §5.3 R1 / FACTS.md §2: a segment with TSval older than TS.Recent fails PAWS; in "
                "TIME-WAIT Linux counts PAWSTimewait and still answers with an ACK (tcp_timewait_state_process())")
CITE_NOAPP = ("RFC 9293 §3.10.7.4 (TIME-WAIT: an unacceptable segment gets an ACK; segment text is ignored) and "
              "§3.4.1 (no segment of an earlier incarnation may be used); the socket FAQ: SO_REUSEADDR reuses the "
              "port, the 4-tuple stays in TIME-WAIT")
CITE_RFC1337 = ("FACTS.md §2 RST row: a RST with seq == rcv_nxt kills TIME-WAIT when tcp_rfc1337=0 and is "
                "ignored when 1 (RFC 1337 fix F1); Linux tcp_timewait_state_process()")
CITE_BYPASS = ("SO_LINGER {on, 0}: close() aborts with RST and no TIME-WAIT (RFC 9293 §3.10.4 ABORT; Linux "
               "tcp_close() -> tcp_disconnect(), TCPAbortOnData); the same 4-tuple can be reopened at once")
CITE_ISN = ("FACTS.md §6: ISN = SipHash(4-tuple, secret) + (ns clock >> 6), 15.625 M per second "
            "(secure_tcp_seq(), RFC 6528 / RFC 9293 §3.4.1 clock-driven ISN)")
CITE_PAWS = ("RFC 7323 §5.3 R1 (PAWS): TSval < TS.Recent -> not acceptable, send an ACK, drop; Linux "
             "tcp_validate_incoming()/tcp_paws_discard(), counter PAWSEstab; FACTS.md §6")
CITE_ACCEPT = ("RFC 9293 §3.10.7.4 (acceptable: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND; an ACK =< SND.UNA is a "
               "duplicate that 'can be ignored', the text is still processed) and RFC 1337 H1; Linux also wants "
               "SEG.ACK >= SND.UNA - bytes acked (tcp_ack(), RFC 5961 §5.2, since 6.7); tcp_sequence(), "
               "tcp_data_queue(); FACTS.md §6")
CITE_DELIVER = ("RFC 1337 §2.2 H1 (old duplicate data accepted) / RFC 9293 §3.4.1 (segments of an earlier "
                "incarnation must not be used): the hazard 2 MSL of TIME-WAIT prevents; the application cannot "
                "tell (socket FAQ: a restarted server may receive unexpected data from an old incarnation)")


# -- the steps ---------------------------------------------------------------------------------
def _together(first, second):
    """Run two peer steps at once (a sender and its receiver); return both results."""
    out: dict[str, object] = {}
    th = threading.Thread(target=lambda: out.__setitem__("second", second()))
    th.start()
    try:
        out["first"] = first()
    finally:
        th.join()
    return out["first"], out["second"]


def _phase_counters(lab: Lab, host: str, before: dict) -> dict:
    return counters_delta(before, read_counters(lab.host(host).nspath))


def run(lab: Lab) -> dict:
    server, client = lab.peer("server"), lab.peer("client")
    C, S = lab.host("client"), lab.host("server")
    cli, srv = str(C.address), str(S.address)
    facts: dict = {"client": cli, "server": srv, "port_a": PORT_A, "port_b": PORT_B}

    # every SYN and SYN-ACK is copied: the ISNs of each incarnation, as the router saw them
    lab.faults.copy("syns", C, S, flags="syn")
    lab.faults.copy("synacks", S, C, flags="syn|ack")
    server.listen("L", PORT)

    facts["a"] = _run_a(lab, server, client, cli, srv)
    facts["b"] = _run_b(lab, server, client, cli, srv)
    return facts


def _run_a(lab: Lab, server, client, cli: str, srv: str) -> dict:
    C, S = lab.host("client"), lab.host("server")
    out: dict = {}
    client.connect("a", srv, PORT, lport=PORT_A)
    server.accept("L", as_="a")
    lab.faults.copy("old-a", C, S, has="psh")
    client.blast("a", MARK_A, "OLD-")
    got = server.drain("a", MARK_A, timeout_s=5)
    lab.faults.lift("old-a")
    old = [s for s in lab.faults.logged("old-a") if s.length > 0 and s.sport == PORT_A]
    out["copied"] = [s.to_json() for s in old]
    out["server_read"] = got.result.get("len")
    time.sleep(0.05)                                   # later segments carry later TSvals

    server.close("a")                                  # the server closes first
    key_srv = (srv, PORT, cli, PORT_A)
    lab.wait_for("the client to see the server's FIN (CLOSE_WAIT)",
                 lambda: (lab.views["client"].lookup((cli, PORT_A, srv, PORT)) or _none).state == "CLOSE_WAIT",
                 timeout_s=5)
    client.close("a")
    lab.wait_for("the server's TIME_WAIT and the client's socket gone",
                 lambda: (lab.views["server"].lookup(key_srv) or _none).state == "TIME_WAIT"
                 and lab.views["client"].lookup((cli, PORT_A, srv, PORT)) is None, timeout_s=5)
    time.sleep(TW_WAIT_S)
    before = read_counters(S.nspath)
    tw_before = lab.views["server"].lookup(key_srv)
    out["tw_before"] = tw_before.to_json() if tw_before else None
    if old:
        out["injected_at"] = lab.faults.inject(old[:1], S)
    # an application listening on the same port: does anything reach it?
    stray = server.accept("L", as_="stray", timeout_s=0.5)
    out["accept_after"] = stray.to_json()
    tw_after = lab.views["server"].lookup(key_srv)      # (an exact lookup falls back to the listener)
    out["tw_after"] = tw_after.to_json() if tw_after and tw_after.state != "LISTEN" else None
    out["server_counters"] = _phase_counters(lab, "server", before)
    return out


class _None:
    state = None


_none = _None()


def _run_b(lab: Lab, server, client, cli: str, srv: str) -> dict:
    C, S = lab.host("client"), lab.host("server")
    out: dict = {}
    # the old incarnation: both directions move OLD_BYTES, then one copied segment
    t_old = time.time()
    first = client.connect("b", srv, PORT, lport=PORT_B, linger=0)
    server.accept("L", as_="b")
    _together(lambda: server.blast("b", OLD_BYTES, "old:"), lambda: client.drain("b", OLD_BYTES))
    _together(lambda: client.blast("b", OLD_BYTES, "OLD-"), lambda: server.drain("b", OLD_BYTES))
    lab.faults.copy("old-b", C, S, has="psh")
    client.blast("b", MARK, "OLD-", offset=OLD_BYTES)
    server.drain("b", MARK, timeout_s=5)
    lab.faults.lift("old-b")
    # TIME-WAIT bypassed: abort with RST, then the same 4-tuple can be reopened
    client.close("b")                                  # SO_LINGER {1, 0}: RST
    reset = server.recv("b", timeout_s=2)
    out["server_recv_after_abort"] = reset.to_json()
    server.close("b")
    # reopen when the ISN clock has moved ALIGN_MARGIN short of the old connection's bytes, so
    # that the new incarnation needs to send only about that much to reach the old segment
    t_syn = out["old_connect_t"] = first.t
    wait = t_syn + (OLD_BYTES - ALIGN_MARGIN) / ISN_PER_S - time.time()
    out["waited_before_reopen_s"] = round(max(0.0, wait), 3)
    if wait > 0:
        time.sleep(wait)
    again = client.connect("b2", srv, PORT, lport=PORT_B)
    out["reconnect"] = again.to_json()
    out["old_phase_s"] = round(time.time() - t_old, 3)
    if not again.ok:
        return out
    server.accept("L", as_="b2")

    syns = [s for s in lab.faults.logged("syns") if s.sport == PORT_B]
    synacks = [s for s in lab.faults.logged("synacks") if s.dport == PORT_B]
    old = [s for s in lab.faults.logged("old-b", settle_s=0) if s.length > 0 and s.sport == PORT_B]
    out["copied"] = [s.to_json() for s in old]
    out["syn_isns"] = [s.seq for s in syns]
    out["synack_isns"] = [s.seq for s in synacks]
    if len(syns) < 2 or len(synacks) < 2 or not old:
        out["aligned"] = False
        out["why_not"] = f"copied {len(syns)} SYNs, {len(synacks)} SYN-ACKs, {len(old)} old data segments"
        return out
    seg = old[0]
    x2, y2 = syns[-1].seq, synacks[-1].seq
    n_new = (seg.seq - (x2 + 1)) % M32        # client bytes that bring the server's RCV.NXT to seg.seq
    m_new = (seg.ack - (y2 + 1)) % M32        # server bytes that bring its SND.UNA to seg.ack
    out.update(old_seq=seg.seq, old_ack=seg.ack, new_client_isn=x2, new_server_isn=y2,
               client_bytes_to_old_seq=n_new, server_bytes_to_old_ack=m_new)
    if n_new >= M32 // 2 or m_new >= M32 // 2:
        out["aligned"] = False
        out["why_not"] = ("the old connection did not move enough data: its sequence numbers lie behind "
                          "the new ISNs (it must outrun the 15.6 M/s ISN clock)")
        return out
    out["aligned"] = True
    sent, _ = _together(lambda: server.blast("b2", m_new, "new:"), lambda: client.drain("b2", m_new))
    out["server_sent_before"] = sent.result.get("sent")
    sent, read = _together(lambda: client.blast("b2", n_new, "NEW-"),
                           lambda: server.drain("b2", n_new, markers=("NEW-", "OLD-")))
    out["client_sent_before"] = sent.result.get("sent")
    out["server_read_before"] = read.result
    before = read_counters(S.nspath)
    out["injected_at"] = lab.faults.inject([seg], S)
    time.sleep(0.05)                                   # the replay arrives before the next bytes
    sent, read = _together(lambda: client.blast("b2", TAIL, "NEW-"),
                           lambda: server.drain("b2", TAIL, keep=TAIL, markers=("NEW-", "OLD-"), timeout_s=3))
    out["client_sent_tail"] = sent.result.get("sent")
    out["server_read_tail"] = read.result
    out["server_read_tail_text"] = read.data.decode(errors="replace")
    out["server_counters"] = _phase_counters(lab, "server", before)
    client.close("b2")
    server.close("b2")
    return out


# -- the judgement -----------------------------------------------------------------------------
def _ts_on(ev: Evidence) -> bool:
    """Timestamps are negotiated only when both ends have them on (tcp_timestamps != 0)."""
    return all(ev.sysctl(h, "net.ipv4.tcp_timestamps", "1") != "0" for h in ("client", "server"))


def _from(ev: Evidence, at: str, src: str, sport: int | None = None, dport: int | None = None,
          flag: str | None = None) -> list[Segment]:
    dst = "server" if src == "client" else "client"
    return [s for s in ev.segments(at, src=src, dst=dst, flag=flag)
            if (sport is None or s.sport == sport) and (dport is None or s.dport == dport)]


def _arrival(ev: Evidence, copied: dict | None, after: float | None) -> Segment | None:
    """The replayed copy as the server's capture saw it arrive."""
    if not copied or after is None:
        return None
    for s in _from(ev, "server", "client", sport=copied["sport"]):
        if (s.seq, s.ack, s.length, s.tsval) == (copied["seq"], copied["ack"], copied["length"],
                                                 copied["tsval"]) and s.t >= after - 0.001:
            return s
    return None


def _gone_at(ev: Evidence, host: str, sport: int, dport: int, after: float) -> float | None:
    for e in ev.states(host):
        sk = e.data["socket"]
        if sk["sport"] == sport and sk["dport"] == dport and sk["state"] == "GONE" and e.t >= after:
            return e.t
    return None


def _states_between(ev: Evidence, host: str, port: int, t0: float, t1: float) -> list[str]:
    return [e.data["socket"]["state"] for e in ev.states(host)
            if port in (e.data["socket"]["sport"], e.data["socket"]["dport"]) and t0 <= e.t <= t1]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def check(ev: Evidence) -> list[Check]:
    return _check_a(ev) + _check_b(ev)


def _check_a(ev: Evidence) -> list[Check]:
    checks: list[Check] = []
    a = ev.facts.get("a", {})
    ts_on = _ts_on(ev)
    rfc1337 = ev.sysctl("server", "net.ipv4.tcp_rfc1337", "0") != "0"
    copied = (a.get("copied") or [None])[0]
    replay = _arrival(ev, copied, a.get("injected_at"))
    cli_fin = next(iter(_from(ev, "server", "client", sport=PORT_A, flag="FIN")), None)
    srv_fin = next(iter(_from(ev, "server", "server", dport=PORT_A, flag="FIN")), None)
    answers = [s for s in _from(ev, "server", "server", dport=PORT_A)
               if replay and s.t >= replay.t and s.has("ACK") and not s.has("RST")]
    ack = answers[0] if answers and answers[0].t - replay.t < 0.05 else None
    want_seq = (srv_fin.seq + 1) % M32 if srv_fin else None
    want_ack = (cli_fin.seq + cli_fin.length + 1) % M32 if cli_fin else None
    tw_before = (a.get("tw_before") or {}).get("state")

    # 1. TIME-WAIT answers the old duplicate with an ACK of its own RCV.NXT
    ok = (replay is not None and tw_before == "TIME_WAIT" and ack is not None
          and ack.seq == want_seq and ack.ack == want_ack and ack.length == 0)
    checks.append(Check(
        "time-wait-acks-old-duplicate", CITE_TW,
        "the replayed data segment reaches the server's TIME-WAIT socket, which answers with an ACK "
        "(seq = its FIN's seq + 1, ack = the client's FIN + 1) and delivers nothing",
        (f"server.pcap: replay of seq {copied['seq'] if copied else '-'} ({copied['length'] if copied else 0} B) "
         f"{'arrived' if replay else 'never arrived'} while sock_diag showed {tw_before}; "
         + (f"answer {_ms(ack.t - replay.t)} ms later: {ack.flags} seq {ack.seq} ack {ack.ack} "
            f"(want seq {want_seq} ack {want_ack})" if ack else "no ACK within 50 ms")),
        ok, {"replay_seq": copied and copied["seq"], "replay_len": copied and copied["length"],
             "state_before": tw_before, "ack_seq": ack and ack.seq, "ack_ack": ack and ack.ack,
             "want_seq": want_seq, "want_ack": want_ack,
             "answer_after_ms": _ms(ack.t - replay.t) if ack and replay else None}))

    # 2. no application sees it: the listener on that port accepts nothing, nothing else takes it
    acc = a.get("accept_after") or {}
    tw_after = (a.get("tw_after") or {}).get("state")
    ok = replay is not None and not acc.get("ok") and acc.get("errno") == errno.ETIMEDOUT
    checks.append(Check(
        "no-application-sees-it", CITE_NOAPP,
        "accept() on the server's listener (same port) times out: the old bytes reach no application",
        (f"accept() after the replay: {acc.get('error') or 'a connection!'} "
         f"({acc.get('message') or acc.get('result')}); the 4-tuple's socket afterwards: {tw_after or 'none'}"),
        ok, {"accept_errno": acc.get("errno"), "accept_error": acc.get("error"), "state_after": tw_after}))

    # 3. PAWS: with timestamps the old TSval is older than the FIN's; TIME-WAIT still ACKs
    paws = a.get("server_counters", {}).get("TcpExtPAWSTimewait", 0)
    tsv, fin_tsv = (replay.tsval if replay else None), (cli_fin.tsval if cli_fin else None)
    if ts_on:
        ok = replay is not None and tsv is not None and fin_tsv is not None and tsv < fin_tsv \
            and paws >= 1 and ack is not None
        expected = ("timestamps on: the replay's TSval is older than TS.Recent (the client's FIN): "
                    "PAWSTimewait +1, and TIME-WAIT answers with an ACK anyway")
    else:
        ok = replay is not None and tsv is None and paws == 0 and ack is not None
        expected = "timestamps off: no TSval, no PAWS (PAWSTimewait +0); TIME-WAIT answers with an ACK"
    checks.append(Check(
        "paws-in-time-wait", CITE_PAWS_TW, expected,
        (f"replay TSval {tsv}, client FIN TSval {fin_tsv}; server PAWSTimewait +{paws} around the replay; "
         f"ACK {'sent' if ack else 'not sent'}"),
        ok, {"replay_tsval": tsv, "fin_tsval": fin_tsv, "PAWSTimewait": paws, "timestamps": ts_on}))

    # 4. the 2MSL timer starts again: Linux reschedules TIME-WAIT on any ACK-bearing old segment
    rst = next((s for s in _from(ev, "client", "client", sport=PORT_A, flag="RST")
                if ack is not None and s.t >= ack.t - 0.001), None)
    if rfc1337:
        tol_ms = 2 * 1000 / (ev.hz or 100) + 20
        key = f"{ev.addresses['server']}:{PORT}-{ev.addresses['client']}:{PORT_A}"
        bounds = []
        if replay is not None:
            for ts, k, st, _tm, exp_ms, _r, *rest in ev.timer_samples.get("server", []):
                answered = rest[0] if rest else ts
                if k == key and st == "TIME_WAIT" and replay.t < ts and answered < replay.t + 0.4:
                    bounds.append((ts + exp_ms / 1000, answered + exp_ms / 1000))
        want = replay.t + LINUX_TIMEWAIT_MS / 1000 if replay else None
        off = None
        if bounds and want:
            lo, hi = min(bounds, key=lambda b: b[1] - b[0])
            off = round((min(max(want, lo), hi) - replay.t) * 1000)
        ok = off is not None and abs(off - LINUX_TIMEWAIT_MS) <= tol_ms
        checks.append(Check(
            "time-wait-timer-restarted", CITE_TW,
            f"after the replay (it carries ACK) the TIME-WAIT timer is due {LINUX_TIMEWAIT_MS} ms after it "
            f"(+- {tol_ms:.0f} ms), not {int(TW_WAIT_S * 1000)} ms earlier as before",
            f"sock_diag: {len(bounds)} samples after the replay; timer due {off} ms after it",
            ok, {"due_after_replay_ms": off, "tolerance_ms": tol_ms, "samples": len(bounds)}))

    # 5. the closed client answers TIME-WAIT's ACK with RST; tcp_rfc1337 decides what it does
    rst_at_srv = next((s for s in _from(ev, "server", "client", sport=PORT_A, flag="RST")
                       if rst is not None and s.same_wire(rst)), None)
    gone = _gone_at(ev, "server", PORT, PORT_A, ack.t if ack else float("inf"))
    rst_seq_ok = rst is not None and ack is not None and rst.seq == ack.ack
    if rfc1337:
        ok = rst_seq_ok and rst_at_srv is not None and tw_after == "TIME_WAIT" and gone is None
        expected = ("the client has no socket and answers TIME-WAIT's ACK with RST (seq = that ACK's ack); "
                    "tcp_rfc1337=1: the server's TIME-WAIT ignores it and stays")
    else:
        ok = rst_seq_ok and rst_at_srv is not None and gone is not None and gone - rst_at_srv.t < 0.1
        expected = ("the client answers TIME-WAIT's ACK with RST (seq = that ACK's ack); tcp_rfc1337=0: the "
                    "RST kills the TIME-WAIT at once (RFC 1337 assassination, see tw-assassination)")
    checks.append(Check(
        "time-wait-and-the-peers-rst", CITE_RFC1337, expected,
        (f"client.pcap: RST {'seq ' + str(rst.seq) if rst else 'not sent'} (ACK's ack {ack.ack if ack else '-'}), "
         f"{'reached' if rst_at_srv else 'did not reach'} the server; server tcp_rfc1337={int(rfc1337)}; "
         f"sock_diag: TIME-WAIT " + (f"gone {_ms(gone - rst_at_srv.t)} ms after the RST" if gone and rst_at_srv
                                     else "gone" if gone else f"still {tw_after} 0.5 s later")),
        ok, {"rst_seq": rst and rst.seq, "ack_ack": ack and ack.ack, "tcp_rfc1337": int(rfc1337),
             "state_after": tw_after, "gone_after_rst_ms": _ms(gone - rst_at_srv.t) if gone and rst_at_srv else None}))
    return checks


def _check_b(ev: Evidence) -> list[Check]:
    checks: list[Check] = []
    b = ev.facts.get("b", {})
    ts_on = _ts_on(ev)
    syns = _from(ev, "client", "client", sport=PORT_B, flag="SYN")
    synacks = _from(ev, "server", "server", dport=PORT_B, flag="SYN")
    syns = [s for s in syns if not s.has("ACK")]

    # 1. TIME-WAIT bypassed: the old incarnation ends with RST, the same 4-tuple opens again
    t1 = syns[0].t if syns else None
    t2 = syns[-1].t if len(syns) >= 2 else None
    rst = next((s for s in _from(ev, "client", "client", sport=PORT_B, flag="RST")
                if t1 and t2 and t1 < s.t < t2), None)
    seen = sorted({st for h in ("client", "server")
                   for st in _states_between(ev, h, PORT_B, t1 or 0, t2 or 0)}) if t1 and t2 else []
    reset = b.get("server_recv_after_abort") or {}
    ok = (rst is not None and t2 is not None and "TIME_WAIT" not in seen and (b.get("reconnect") or {}).get("ok")
          and reset.get("errno") == errno.ECONNRESET)
    checks.append(Check(
        "time-wait-bypassed", CITE_BYPASS,
        "close() with SO_LINGER 0 sends RST (server recv: ECONNRESET); neither host holds TIME_WAIT; "
        f"connect() from port {PORT_B} to the same server succeeds (no TIME-WAIT holds the 4-tuple): "
        "a new incarnation",
        (f"client.pcap: {len(syns)} SYNs from :{PORT_B}, RST {'seq ' + str(rst.seq) if rst else 'none'} between them; "
         f"server recv after it: {reset.get('error')}; sock_diag states of the 4-tuple in between: {seen or 'none'}; "
         f"second SYN {_ms(t2 - rst.t) if rst and t2 else '-'} ms after the RST"),
        bool(ok), {"syns": len(syns), "rst_seq": rst and rst.seq, "server_recv_errno": reset.get("errno"),
                   "states_between": seen, "reopen_after_rst_ms": _ms(t2 - rst.t) if rst and t2 else None}))

    # 2. the ISN clock: both new ISNs lie 15.625 M/s x the time between the SYNs above the old ones
    rows, ok = [], len(syns) >= 2 and len(synacks) >= 2
    for who, pair in (("client", syns), ("server", synacks)):
        if len(pair) < 2:
            continue
        d_isn = (pair[-1].seq - pair[0].seq) % M32
        dt = pair[-1].t - pair[0].t
        err = d_isn - dt * ISN_PER_S
        ok = ok and abs(err) <= ISN_PER_S * 0.001
        rows.append({"who": who, "old_isn": pair[0].seq, "new_isn": pair[-1].seq, "isn_delta": d_isn,
                     "seconds": round(dt, 6), "per_second": round(d_isn / dt) if dt else None,
                     "error": round(err)})
    checks.append(Check(
        "isn-clock", CITE_ISN,
        "new ISN - old ISN = 15.625 M x seconds between the two SYNs (+- 1 ms of clock), for both ends",
        "; ".join(f"{r['who']}: ISN {r['old_isn']} -> {r['new_isn']} (+{r['isn_delta']}) in {r['seconds']} s "
                  f"= {r['per_second']}/s, {r['error']:+d} off" for r in rows) or "SYNs not captured",
        bool(ok), {"isns": rows, "tolerance": ISN_PER_S * 0.001}))

    # 3. the copied segment of the old incarnation falls exactly at the new connection's RCV.NXT
    copied = (b.get("copied") or [None])[0]
    replay = _arrival(ev, copied, b.get("injected_at"))
    x1 = syns[0].seq if syns else None
    x2 = syns[-1].seq if len(syns) >= 2 else None
    y2 = synacks[-1].seq if len(synacks) >= 2 else None
    sent_c, sent_s = b.get("client_sent_before"), b.get("server_sent_before")
    rcv_nxt = (x2 + 1 + sent_c) % M32 if x2 is not None and sent_c is not None else None
    snd_una = (y2 + 1 + sent_s) % M32 if y2 is not None and sent_s is not None else None
    old_off = (copied["seq"] - x1 - 1) % M32 if copied and x1 is not None else None
    ok = (b.get("aligned") and replay is not None and replay.seq == rcv_nxt and replay.ack == snd_una)
    checks.append(Check(
        "old-segment-in-new-window", CITE_ACCEPT,
        "the replayed old segment's seq = the new connection's RCV.NXT and its ack = the server's SND.UNA "
        "(both directions of the old connection outran the ISN clock)",
        (f"old segment: byte {old_off} of the old client stream, seq {copied['seq'] if copied else '-'} "
         f"ack {copied['ack'] if copied else '-'}; new ISNs client {x2} server {y2}; after the client sent "
         f"{sent_c} B and the server {sent_s} B: RCV.NXT {rcv_nxt}, SND.UNA {snd_una}; replay "
         f"{'arrived' if replay else 'not seen'} at the server"
         + (f" ({b.get('why_not')})" if not b.get("aligned") else "")),
        bool(ok), {"old_seq": copied and copied["seq"], "old_ack": copied and copied["ack"],
                   "old_stream_offset": old_off, "new_client_isn": x2, "new_server_isn": y2,
                   "client_bytes_new": sent_c, "server_bytes_new": sent_s, "rcv_nxt": rcv_nxt,
                   "snd_una": snd_una, "aligned": b.get("aligned"), "old_phase_s": b.get("old_phase_s")}))

    # 4. what the server's TCP does with it: PAWS drop (timestamps) or acceptance (none)
    counters = b.get("server_counters", {})
    paws = counters.get("TcpExtPAWSEstab", 0) + counters.get("TcpExtPAWSOldAck", 0)
    answer = None
    if replay is not None:
        answer = next((s for s in _from(ev, "server", "server", dport=PORT_B)
                       if s.t >= replay.t and s.has("ACK") and s.t - replay.t < 0.04), None)
    recent = [s.tsval for s in _from(ev, "server", "client", sport=PORT_B)
              if replay is not None and s.t < replay.t and s.t > (t2 or 0) and s.tsval is not None]
    ts_recent = recent[-1] if recent else None
    if ts_on:
        ok = (replay is not None and replay.tsval is not None and ts_recent is not None
              and replay.tsval < ts_recent and paws >= 1 and answer is not None and answer.ack == replay.seq)
        name, cite = "paws-rejects-old-segment", CITE_PAWS
        expected = ("timestamps on: the replay's TSval is older than TS.Recent: PAWS drops it (PAWSEstab +1) "
                    "and the server re-ACKs RCV.NXT (ack = the replay's seq)")
    else:
        ok = (replay is not None and replay.tsval is None and paws == 0 and answer is not None
              and answer.ack == (replay.seq + replay.length) % M32)
        name, cite = "old-segment-accepted", CITE_ACCEPT
        expected = ("timestamps off: nothing marks the segment as old: it is accepted, the server ACKs "
                    "seq + length, no PAWS counter moves")
    checks.append(Check(
        name, cite, expected,
        (f"replay TSval {replay.tsval if replay else '-'}, TS.Recent (client's last TSval) {ts_recent}; "
         f"server PAWSEstab/PAWSOldAck +{paws}; server's answer: "
         + (f"{answer.flags} ack {answer.ack} (replay seq {replay.seq}, +{replay.length} = "
            f"{(replay.seq + replay.length) % M32})" if answer and replay else "none")),
        bool(ok), {"timestamps": ts_on, "replay_tsval": replay and replay.tsval, "ts_recent": ts_recent,
                   "PAWSEstab": counters.get("TcpExtPAWSEstab", 0), "PAWSOldAck": counters.get("TcpExtPAWSOldAck", 0),
                   "answer_ack": answer and answer.ack, "replay_seq": replay and replay.seq,
                   "replay_len": replay and replay.length}))

    # 5. what the server's application reads next
    tail = b.get("server_read_tail") or {}
    text = b.get("server_read_tail_text") or ""
    marks = tail.get("markers") or {}
    sent_tail = b.get("client_sent_tail")
    payload = replay.payload if replay else b""
    got = text.encode(errors="replace")
    quote = text[:48] + ("..." if len(text) > 48 else "")
    if ts_on:
        ok = (tail.get("len") == sent_tail == TAIL and marks.get("OLD-") == 0
              and marks.get("NEW-", 0) >= TAIL // 4 - 1)
        name = "application-reads-only-new-bytes"
        expected = f"the server's application reads the client's {TAIL} new bytes, none from the old incarnation"
    else:
        ok = (tail.get("len") == sent_tail == TAIL and bool(payload) and got[:len(payload)] == payload
              and marks.get("OLD-", 0) >= len(payload) // 4 - 1 and b"OLD-" not in got[len(payload):])
        name = "application-reads-old-bytes"
        expected = (f"the server's application reads {TAIL} bytes, as many as the client sent, but the first "
                    f"{len(payload) or MARK} are the old incarnation's (the replayed payload), not the client's")
    checks.append(Check(
        name, CITE_DELIVER if not ts_on else CITE_PAWS, expected,
        (f"client sent {sent_tail} B \"NEW-...\"; server's recv() got {tail.get('len')} B: {quote!r} "
         f"(markers OLD- x{marks.get('OLD-')}, NEW- x{marks.get('NEW-')}); replay payload "
         f"{payload[:24]!r}... ({len(payload)} B)"
         + (f"; bytes {len(payload)}- read: {text[len(payload):len(payload) + 16]!r}..." if payload and not ts_on else "")),
        bool(ok), {"client_sent": sent_tail, "server_read": tail.get("len"), "old_markers": marks.get("OLD-"),
                   "new_markers": marks.get("NEW-"), "replay_payload_len": len(payload),
                   "read_head": text[:64], "old_bytes_delivered": text[:len(payload)] if not ts_on and ok else ""}))
    return checks
