"""tw-assassination: RFC 1337 figure 1 between two real stacks: an old duplicate reaches the
client's TIME-WAIT, which ACKs it; the closed server answers that ACK with RST; the RST kills the
TIME-WAIT (tcp_rfc1337=0, the default) or is ignored (tcp_rfc1337=1, RFC 1337 fix F1).

Checks RFC 1337 §1 ("5.1 is *any* old segment that is unacceptable to TCP A ... TCP A sends an ACK
segment 5.2 for its current SND.NXT and RCV.NXT. Since it has no state for this connection, TCP B
reflects this as RST segment 5.3, which assassinates the TIME-WAIT state at A!"), §3 fix F1
("Ignore RST segments in TIME-WAIT state"), RFC 9293 §3.10.7.4 (a reset in TIME-WAIT closes the
connection; an unacceptable segment is answered with an ACK) and §3.10.7.1 (a closed port answers
with RST, seq = the segment's ACK), against Linux tcp_timewait_state_process() (net/ipv4/
tcp_minisocks.c, Linux v6.18: a RST with seq == rcv_nxt kills TIME-WAIT unless tcp_rfc1337=1;
reference R-TW-RST) and tcp_v4_send_reset() (net/ipv4/tcp_ipv4.c; reference R-CLOSED-RST).

Whether the TIME-WAIT died is decided twice, by sock_diag (the socket is gone, or still there) and
on the wire: after the RST the same old segment is replayed once more (the probe). A live TIME-WAIT
answers it with an ACK (tcp_timewait_state_process() -> TCP_TW_ACK; a segment carrying data is
never out-of-window rate-limited, tcp_oow_rate_limited() in net/ipv4/tcp_input.c, so the answer
is certain: reference R-TW-OLD-SEG); a killed one leaves no socket, and the client's stack answers with a RST
(tcp_v4_rcv() -> tcp_v4_send_reset(), seq = the probe's ack). The probe restarts a live
TIME-WAIT's timer - after the verdict, so it changes nothing judged.

No packet is forged: the old duplicate is a data segment the server really sent earlier in this
connection, copied by the router as it passed and sent again (same bytes; only the TCP checksum,
left unfinished by the sender's checksum offload, is completed) while the client is in TIME-WAIT.

Timestamps (on by default) do not break the chain, as RFC 1337 says ("TWA cannot be prevented by
PAWS timestamps"): the replay's TSval is older than the TIME-WAIT's TS.Recent (the server's FIN),
so PAWS rejects it (PAWSTimewait +1) - but rejecting an unacceptable segment means answering it
with an ACK, which is segment 5.2 all the same; and the server's RST carries no timestamp
(tcp_v4_send_reset() adds none), so PAWS cannot judge it either. With tcp_timestamps=0 the replay
is simply out of window: the same ACK, the same RST. The scenario therefore runs with the default
timestamps; the checks follow whichever is in force.

    t      who      step                                   wire                      client state
    0      client   connect :40007 -> :5007                                          ESTABLISHED
    0      server   send 600 B "OLD-..."                   <- data (router copies)
    0.05   client   close() first                          FIN ->, <- ACK            FIN_WAIT2
    0.05   server   close(); close(listener): no socket    <- FIN, ACK ->            TIME_WAIT (60 s)
    0.4    router   replay the old data segment            <- data (5.1)             PAWSTimewait +1
    0.4    client   (kernel) TIME-WAIT answers             ACK -> (5.2)
    0.4    server   (kernel) no socket: RST, seq = ack     <- RST (5.3)
    0.4    client   tcp_rfc1337=0: TIME-WAIT killed                                  gone (59.7 s early)
                    tcp_rfc1337=1: RST ignored                                       TIME_WAIT
    0.9    router   replay the old data segment again      <- data (the probe)
    0.9    client   tcp_rfc1337=0: no socket               RST -> (seq = its ack)
                    tcp_rfc1337=1: TIME-WAIT answers       ACK -> (SND.NXT, RCV.NXT)
    1.1    (end)

Flip: --sysctl client:net.ipv4.tcp_rfc1337=1 (the TIME-WAIT survives the RST).
"""

from __future__ import annotations

import time

from lab.core import Lab
from lab.evidence import Evidence
from lab.nsops import read_counters
from lab.observe import counters_delta
from lab.packets import Segment
from lab.shaping import OPTIONAL
from lab.verdict import Check

from ._premise import time_wait_room

NAME = "tw-assassination"
INTENT = ("RFC 1337 figure 1: an old duplicate -> TIME-WAIT's ACK -> the closed server's RST kills "
          "TIME-WAIT (tcp_rfc1337=0) or is ignored (tcp_rfc1337=1)")
SHAPING = OPTIONAL
PORT = 5007
CLIENT_PORT = 40007
OLD_LEN = 600                   # the server's data segment that becomes the old duplicate
TW_WAIT_S = 0.3                 # how long TIME-WAIT has run before the replay
WATCH_S = 0.5                   # how long the client is watched after the replay
PROBE_WATCH_S = 0.2             # how long the answer to the probe (the replay, once more) is awaited
ANSWER_S = 0.05                 # an answer leaves the client within this of what it answers
KILL_S = 0.1                    # tcp_rfc1337=0: the TIME-WAIT is gone (sock_diag) within this of the RST
M32 = 1 << 32

CITE_TWA = ("RFC 1337 §1 figure 1 (5.1 any unacceptable old segment, 5.2 TIME-WAIT's ACK for SND.NXT/RCV.NXT); "
            "RFC 9293 §3.10.7.4 (unacceptable segment -> send an ACK); Linux tcp_timewait_state_process() -> "
            "TCP_TW_ACK, tcp_v4_timewait_ack() (net/ipv4/tcp_minisocks.c, tcp_ipv4.c; reference R-TW-OLD-SEG)")
CITE_PAWS = ("RFC 1337 §1: 'TWA cannot be prevented by PAWS timestamps'; RFC 7323 §5.3 R1 (TSval < TS.Recent: "
             "send an ACK, drop); Linux: PAWS reject in TIME-WAIT counts PAWSTimewait and still returns "
             "TCP_TW_ACK; tcp_v4_send_reset() (net/ipv4/tcp_ipv4.c) sends no timestamp option; reference R-TW-PAWS, R-CLOSED-RST")
CITE_RST = ("RFC 9293 §3.10.7.1 / RFC 793 p.36 (CLOSED: an incoming segment with ACK gets <SEQ=SEG.ACK><CTL=RST>); "
            "RFC 1337 figure 1 segment 5.3; Linux tcp_v4_rcv() no socket -> tcp_v4_send_reset()")
CITE_KILL = ("Linux v6.18 tcp_timewait_state_process() (net/ipv4/tcp_minisocks.c): a RST with seq == rcv_nxt, not "
             "PAWS-rejected, kills TIME-WAIT when tcp_rfc1337=0 (inet_twsk_deschedule_put(), 'TIME_WAIT "
             "assassination') and is ignored when tcp_rfc1337=1 (RFC 1337 §3 F1: 'Ignore RST segments in "
             "TIME-WAIT state'); RFC 9293 §3.10.7.4 (RST in TIME-WAIT: enter CLOSED). The wire probe: a live "
             "TIME-WAIT ACKs a replayed data segment (TCP_TW_ACK; data is never out-of-window rate-limited: "
             "tcp_oow_rate_limited(), net/ipv4/tcp_input.c); with no socket tcp_v4_rcv() -> tcp_v4_send_reset() "
             "answers RST, seq = the segment's ack (RFC 9293 §3.10.7.1); reference R-TW-RST, R-TW-OLD-SEG, R-CLOSED-RST")


def precondition(sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"client": 1}, "the one the RST assassinates")


def run(lab: Lab) -> dict:
    server, client = lab.peer("server"), lab.peer("client")
    C, S = lab.host("client"), lab.host("server")
    cli, srv = str(C.address), str(S.address)
    key_cli, key_srv = (cli, CLIENT_PORT, srv, PORT), (srv, PORT, cli, CLIENT_PORT)
    out: dict = {"client": cli, "server": srv, "client_port": CLIENT_PORT}

    server.listen("L", PORT)
    client.connect("c", srv, PORT, lport=CLIENT_PORT)
    server.accept("L", as_="c")
    lab.faults.copy("old-dup", S, C, has="psh")        # the server's data, copied on its way
    server.blast("c", OLD_LEN, "OLD-")
    got = client.drain("c", OLD_LEN, timeout_s=5)
    lab.faults.lift("old-dup")
    old = [s for s in lab.faults.logged("old-dup") if s.length > 0 and s.dport == CLIENT_PORT]
    out["copied"] = [s.to_json() for s in old]
    out["client_read"] = got.result.get("len")
    time.sleep(0.05)                                   # the FINs carry later TSvals

    # the client closes first (RFC 1337 figure 1, segments 2-5); the server closes everything
    client.close("c")
    lab.wait_for("the server to see the client's FIN (CLOSE_WAIT)",
                 lambda: _state(lab, "server", key_srv) == "CLOSE_WAIT", timeout_s=5)
    server.close("c")
    server.close("L")                                  # fully closed: no socket for the port at all
    lab.wait_for("the client's TIME_WAIT and no server socket",
                 lambda: _state(lab, "client", key_cli) == "TIME_WAIT"
                 and _state(lab, "server", key_srv) is None, timeout_s=5)
    time.sleep(TW_WAIT_S)
    tw = lab.views["client"].lookup(key_cli)
    out["tw_before"] = tw.to_json() if tw else None
    out["server_socket_before"] = _state(lab, "server", key_srv)
    before = {h: read_counters(lab.host(h).nspath) for h in ("client", "server")}
    if old:
        out["injected_at"] = lab.faults.inject(old[:1], C)        # segment 5.1
    time.sleep(WATCH_S)
    tw = lab.views["client"].lookup(key_cli)
    out["tw_after"] = tw.to_json() if tw else None
    out["counters"] = {h: counters_delta(before[h], read_counters(lab.host(h).nspath))
                       for h in ("client", "server")}
    if old:
        # the wire's verdict: the same old segment once more - a live TIME-WAIT ACKs it, a killed
        # one leaves no socket and the client's stack answers RST
        before = {h: read_counters(lab.host(h).nspath) for h in ("client", "server")}
        out["probe_at"] = lab.faults.inject(old[:1], C)
        time.sleep(PROBE_WATCH_S)
        tw = lab.views["client"].lookup(key_cli)
        out["tw_after_probe"] = tw.to_json() if tw else None
        out["probe_counters"] = {h: counters_delta(before[h], read_counters(lab.host(h).nspath))
                                 for h in ("client", "server")}
    return out


def _state(lab: Lab, host: str, key: tuple) -> str | None:
    sk = lab.views[host].lookup(key)
    return sk.state if sk is not None and sk.state != "LISTEN" else None


# -- the judgement -----------------------------------------------------------------------------
def _ts_on(ev: Evidence) -> bool:
    return all(ev.sysctl(h, "net.ipv4.tcp_timestamps", "1") != "0" for h in ("client", "server"))


def _seen(ev: Evidence, at: str, src: str, flag: str | None = None) -> list[Segment]:
    dst = "server" if src == "client" else "client"
    return [s for s in ev.segments(at, src=src, dst=dst, flag=flag)
            if CLIENT_PORT in (s.sport, s.dport) and PORT in (s.sport, s.dport)]


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def check(ev: Evidence) -> list[Check]:
    from ._twa_judge import _fate, _paws       # the RST's effect: scenarios/_twa_judge.py

    checks: list[Check] = []
    f = ev.facts
    ts_on = _ts_on(ev)
    rfc1337 = ev.sysctl("client", "net.ipv4.tcp_rfc1337", "0") != "0"
    copied = (f.get("copied") or [None])[0]
    t_inj = f.get("injected_at")

    # 5.1: the replay as the client's capture saw it arrive
    replay = _replayed(ev, copied, t_inj, f.get("probe_at"))
    cli_fin = next(iter(_seen(ev, "client", "client", "FIN")), None)
    srv_fin = next(iter(_seen(ev, "client", "server", "FIN")), None)
    tw_before = f.get("tw_before") or {}
    no_replay = _no_replay(ev, copied, t_inj, replay)
    # the replay is the lab's own doing: not seeing it arrive is never the client's failure
    ok = (False if tw_before.get("state") != "TIME_WAIT" or f.get("server_socket_before") is not None
          else None if no_replay else True)
    checks.append(Check.judged(
        "old-duplicate-reaches-time-wait", CITE_TWA,
        "a data segment the server sent earlier in this connection (copied by the router) reaches the client "
        "while the client is in TIME_WAIT and the server has no socket for the connection",
        (f"client.pcap: replay {'arrived' if replay else 'not seen'}: seq {copied['seq'] if copied else '-'} "
         f"ack {copied['ack'] if copied else '-'} {copied['length'] if copied else 0} B, sent first at "
         f"{round(t_inj - copied['t'], 3) if copied and t_inj else '-'} s earlier; sock_diag: client "
         f"{tw_before.get('state')} ({tw_before.get('expires_ms')} ms left), server socket: "
         f"{f.get('server_socket_before') or 'none'}"),
        ok, {"replay_seq": copied and copied["seq"], "replay_len": copied and copied["length"],
             "client_state": tw_before.get("state"), "tw_left_ms": tw_before.get("expires_ms"),
             "server_socket": f.get("server_socket_before"),
             "replay_age_s": round(t_inj - copied["t"], 3) if copied and t_inj else None},
        missing=no_replay))

    # 5.2: TIME-WAIT answers with an ACK for its SND.NXT and RCV.NXT
    want_seq = (cli_fin.seq + 1) % M32 if cli_fin else None
    want_ack = (srv_fin.seq + srv_fin.length + 1) % M32 if srv_fin else None
    ack = None
    if replay is not None:
        ack = next((s for s in _seen(ev, "client", "client") if s.t >= replay.t and s.has("ACK")
                    and not s.has("RST") and s.t - replay.t < 0.05), None)
    if no_replay:
        ok = None
    elif ack is None or cli_fin is None or srv_fin is None:
        ok = _missing(ev, "client")          # absent from client.pcap: failed only if it is complete
    else:
        ok = ack.seq == want_seq and ack.ack == want_ack and ack.length == 0
    checks.append(Check.judged(
        "time-wait-acks-it", CITE_TWA,
        "the client's TIME-WAIT answers with a pure ACK, seq = SND.NXT (its FIN + 1), ack = RCV.NXT "
        "(the server's FIN + 1)",
        (f"client.pcap: " + (f"{ack.flags} seq {ack.seq} ack {ack.ack} {_ms(ack.t - replay.t)} ms after the "
                             f"replay (want seq {want_seq} ack {want_ack})" if ack else "no ACK within 50 ms")),
        ok, {"ack_seq": ack and ack.seq, "ack_ack": ack and ack.ack, "want_seq": want_seq, "want_ack": want_ack,
             "answer_after_ms": _ms(ack.t - replay.t) if ack and replay else None},
        missing=no_replay or f"client.pcap lacks TIME-WAIT's ACK or a FIN of the close ({ev.capture_hole('client')})"))

    # 5.3: the server, with no socket, reflects the ACK as RST <SEQ=SEG.ACK>
    # (without timestamps TIME-WAIT's ACK is byte for byte the final ACK of the close: take the later one)
    ack_at_srv = next((s for s in _seen(ev, "server", "client") if ack is not None and s.same_wire(ack)
                       and s.t >= ack.t - 0.001), None)
    rst = None
    if ack_at_srv is not None:
        rst = next((s for s in _seen(ev, "server", "server", "RST") if s.t >= ack_at_srv.t
                    and s.t - ack_at_srv.t < 0.05), None)
    out_rsts = f.get("counters", {}).get("server", {}).get("TcpOutRsts", 0)
    if rst is not None:
        ok = rst.seq == ack_at_srv.ack and not rst.has("ACK") and out_rsts >= 1
    elif no_replay:
        ok = None
    elif ack is None:           # nothing to answer in client.pcap: time-wait-acks-it says why
        ok = _missing(ev, "client")
    else:                       # the ACK or the RST absent from server.pcap
        ok = _missing(ev, "server")
    checks.append(Check.judged(
        "closed-server-answers-rst", CITE_RST,
        "the ACK reaches the server, which has no socket and answers RST with seq = the ACK's ack (no ACK bit)",
        (f"server.pcap: ACK {'arrived' if ack_at_srv else 'never arrived'}; "
         + (f"{rst.flags} seq {rst.seq} {_ms(rst.t - ack_at_srv.t)} ms later (ACK's ack {ack_at_srv.ack})"
            if rst else "no RST") + f"; server TcpOutRsts +{out_rsts}"),
        ok, {"rst_seq": rst and rst.seq, "rst_flags": rst and rst.flags,
             "ack_ack": ack_at_srv and ack_at_srv.ack, "TcpOutRsts": out_rsts},
        missing=no_replay or ("client.pcap lacks TIME-WAIT's ACK" if ack is None else "server.pcap lacks the ACK or "
                              "the RST") + f" ({ev.capture_hole('client', 'server')})"))

    # PAWS does not prevent it (RFC 1337): the replay is PAWS-rejected, yet ACKed; the RST has no TSval
    rst_at_cli = next((s for s in _seen(ev, "client", "server", "RST") if rst is not None and s.same_wire(rst)), None)
    checks.append(_paws(ev, ts_on, replay, srv_fin, ack, rst, rst_at_cli, no_replay))

    checks.append(_fate(ev, rfc1337, rst_at_cli, want_seq, want_ack, copied))
    return checks


def _no_replay(ev: Evidence, copied: dict | None, since: float | None, replay: Segment | None) -> str:
    """Why the replay the checks judge is missing: "" when client.pcap saw it arrive. The replay
    is the lab's own doing (copied by the router, injected from it): without it the checks have
    no evidence, which is never the client's failure."""
    if replay is not None:
        return ""
    if not copied:
        return "the router copied no data segment of the connection, so nothing was replayed"
    if not since:
        return "the copied segment was never injected"
    hole = ev.capture_hole("client")
    return "the replayed segment is not in client.pcap" + (f" ({hole})" if hole else "")


def _missing(ev: Evidence, host: str) -> bool | None:
    """A segment the kernel should have sent is not in *host*'s capture: a failure when that
    capture is complete (False), not judged when tcpdump dropped packets there (None)."""
    return None if ev.capture_hole(host) else False


def _replayed(ev: Evidence, copied: dict | None, since: float | None,
              until: float | None = None) -> Segment | None:
    """The copied old segment as the client's capture saw it arrive (again) at or after *since*
    (and before *until*: the first replay is not the probe)."""
    if not copied or not since:
        return None
    return next((s for s in _seen(ev, "client", "server")
                 if (s.seq, s.ack, s.length, s.tsval) == (copied["seq"], copied["ack"], copied["length"],
                                                          copied["tsval"]) and s.t >= since - 0.001
                 and (until is None or s.t < until - 0.001)), None)


def _probe_answer(ev: Evidence, copied: dict | None) -> tuple[Segment | None, Segment | None]:
    """The probe (the old segment replayed once more, after the RST) and the client's answer to it."""
    probe = _replayed(ev, copied, ev.facts.get("probe_at"))
    if probe is None:
        return None, None
    return probe, next((s for s in _seen(ev, "client", "client") if probe.t <= s.t < probe.t + ANSWER_S), None)


