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
reference R-TW-OLD-SEG, R-TW-ACK-RESTART, R-TW-PAWS, R-TW-RST, R-ISN-CLOCK, R-TIMESTAMPS, R-PAWS, R-RFC5961-ACK,
R-WANDERING-DUP.

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
    send). ISNs come from a clock that runs 15.625 M per second (reference R-ISN-CLOCK), so the new ISNs
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
        (a)'s PAWS check then has nothing to act on: it is not applicable, not passed.
Checks without their evidence judge nothing: a replay missing from server.pcap, no sock_diag
sample where one was needed, a segment missing from a capture that dropped packets make them
inconclusive; an old connection that did not outrun the ISN clock (a slow machine) leaves the
replay of (b)/(c) unset, and its checks not applicable.

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

import threading
import time
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import ISN_PER_S
from lab.nsops import read_counters
from lab.observe import counters_delta
from lab.scenario import KeyValue, Scenario
from lab.shaping import UNUSED

from ._keys.wandering_duplicates import KEY
from ._paws import tw_counter
from ._premise import time_wait_room
from ._steps import copied_data, rebinds_for_gvisor
from ._wandering_bypassed import (
    application_reads_old_bytes,
    application_reads_only_new_bytes,
    isn_clock,
    old_segment_accepted,
    old_segment_in_new_window,
    paws_rejects_old_segment,
    time_wait_bypassed,
)
from ._wandering_judge import (
    Seen,
    no_application_sees_it,
    paws_in_time_wait,
    rfc1337_on,
    time_wait_acks_old_duplicate,
    time_wait_and_the_peers_rst,
    time_wait_timer_restarted,
    timestamps_on,
)
from ._wandering_plan import ALIGN_MARGIN, M32, MARK, MARK_A, OLD_BYTES, PORT, PORT_A, PORT_B, TAIL, TW_WAIT_S
from ._wandering_wire import on_gvisor, paws_unseen, probed_state, timer_unseen

if TYPE_CHECKING:
    from lab.core import Lab
    from lab.evidence import Evidence

__all__ = ["SCENARIO", "PORT", "PORT_A", "PORT_B", "OLD_BYTES", "MARK", "TAIL"]

INTENT = ("a replayed old segment: TIME-WAIT ACKs and absorbs it; with TIME-WAIT bypassed PAWS "
          "rejects it, and without timestamps the new connection's application reads the old bytes")


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


def _room_for_time_wait(sysctls) -> str | None:
    """Why this run cannot show the scenario: too little TIME-WAIT room for what it observes."""
    return time_wait_room(sysctls, {"server": 1}, "the one part (a)'s replayed old segment reaches")


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
    facts["b"] = _run_b(lab, server, client, srv)
    return facts


def _run_a(lab: Lab, server, client, cli: str, srv: str) -> dict:
    S = lab.host("server")
    out: dict = {}
    client.connect("a", srv, PORT, lport=PORT_A)
    server.accept("L", as_="a")
    old, out["server_read"] = copied_data(lab, "old-a", client, server, "a", MARK_A, PORT_A)
    out["copied"] = [s.to_json() for s in old]
    time.sleep(0.05)                                   # later segments carry later TSvals

    server.close("a")                                  # the server closes first
    key_srv, key_cli = (srv, PORT, cli, PORT_A), (cli, PORT_A, srv, PORT)
    gvisor, g_client = (wire.stack_of(lab, h) == "gvisor" for h in ("server", "client"))   # no sock_diag there:
    lab.wait_for("the client to see the server's FIN (CLOSE_WAIT)",                      # the wire instead
                 lambda: wire.fin_acked(lab, "client", PORT, PORT_A) if g_client
                 else (lab.views["client"].lookup(key_cli) or _none).state == "CLOSE_WAIT", timeout_s=5)
    client.close("a")
    lab.wait_for("the server's TIME_WAIT and the client's socket gone",
                 lambda: (wire.fin_acked(lab, "server", PORT_A, PORT) if gvisor
                          else (lab.views["server"].lookup(key_srv) or _none).state == "TIME_WAIT")
                 and (wire.fin_acked(lab, "server", PORT_A, PORT) if g_client
                      else lab.views["client"].lookup(key_cli) is None), timeout_s=5)
    time.sleep(TW_WAIT_S)
    before = read_counters(S.nspath)
    out["paws_tw_counter"] = tw_counter(before)      # which counter this kernel counts PAWS in TIME-WAIT in
    tw_before = probed_state(lab, PORT, PORT_A) if gvisor else lab.views["server"].lookup(key_srv)
    out["tw_before"] = tw_before.to_json() if tw_before else None
    if old:
        out["injected_at"] = lab.faults.inject(old[:1], S)
    # an application listening on the same port: does anything reach it?
    stray = server.accept("L", as_="stray", timeout_s=0.5)
    out["accept_after"] = stray.to_json()
    tw_after = probed_state(lab, PORT, PORT_A) if gvisor else lab.views["server"].lookup(key_srv)  # (an exact lookup
    # falls back to the listener)
    out["tw_after"] = tw_after.to_json() if tw_after and tw_after.state != "LISTEN" else None
    out["server_counters"] = _phase_counters(lab, "server", before)
    return out


class _None:
    state = None


_none = _None()


def _run_b(lab: Lab, server, client, srv: str) -> dict:
    out: dict = {}
    t_old = time.time()
    first = _old_incarnation(lab, server, client, srv, out)
    # reopen when the ISN clock has moved ALIGN_MARGIN short of the old connection's bytes, so
    # that the new incarnation needs to send only about that much to reach the old segment
    t_syn = out["old_connect_t"] = first.t
    wait = t_syn + (OLD_BYTES - ALIGN_MARGIN) / ISN_PER_S - time.time()
    out["waited_before_reopen_s"] = round(max(0.0, wait), 3)
    if wait > 0:
        time.sleep(wait)
    again = client.connect("b2", srv, PORT, lport=PORT_B, **rebinds_for_gvisor(lab))
    out["reconnect"] = again.to_json()
    out["old_phase_s"] = round(time.time() - t_old, 3)
    if not again.ok:
        return out
    server.accept("L", as_="b2")
    seg = _aligned(lab, out)
    if seg is not None:
        _replay_into_the_new(lab, server, client, seg, out)
    return out


def _old_incarnation(lab: Lab, server, client, srv: str, out: dict):
    """Both directions move OLD_BYTES, then one copied segment; then TIME-WAIT bypassed: abort
    with RST, after which the same 4-tuple can be reopened. Returns the connect() result."""
    C, S = lab.host("client"), lab.host("server")
    first = client.connect("b", srv, PORT, lport=PORT_B, linger=0, **rebinds_for_gvisor(lab))
    server.accept("L", as_="b")
    lab.sampled()        # followed from here: the reopen can follow the RST within milliseconds
    _together(lambda: server.blast("b", OLD_BYTES, "old:"), lambda: client.drain("b", OLD_BYTES))
    _together(lambda: client.blast("b", OLD_BYTES, "OLD-"), lambda: server.drain("b", OLD_BYTES))
    lab.faults.copy("old-b", C, S, has="psh")
    client.blast("b", MARK, "OLD-", offset=OLD_BYTES)
    server.drain("b", MARK, timeout_s=5)
    lab.faults.lift("old-b")
    client.close("b")                                  # SO_LINGER {1, 0}: RST
    reset = server.recv("b", timeout_s=2)
    out["server_recv_after_abort"] = reset.to_json()
    server.close("b")
    return first


def _aligned(lab: Lab, out: dict):
    """The old segment to replay, from the router's copies, and how many bytes each end of the new
    incarnation sends to bring RCV.NXT to its seq and SND.UNA to its ack (in *out*); None (with
    why_not) when the copies are missing or the old sequence numbers lie behind the new ISNs."""
    syns = [s for s in lab.faults.logged("syns") if s.sport == PORT_B]
    synacks = [s for s in lab.faults.logged("synacks") if s.dport == PORT_B]
    old = [s for s in lab.faults.logged("old-b", settle_s=0) if s.length > 0 and s.sport == PORT_B]
    out["copied"] = [s.to_json() for s in old]
    out["syn_isns"] = [s.seq for s in syns]
    out["synack_isns"] = [s.seq for s in synacks]
    if len(syns) < 2 or len(synacks) < 2 or not old:
        out["aligned"] = False
        out["why_not"] = f"copied {len(syns)} SYNs, {len(synacks)} SYN-ACKs, {len(old)} old data segments"
        return None
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
        return None
    out["aligned"] = True
    return seg


def _replay_into_the_new(lab: Lab, server, client, seg, out: dict) -> None:
    """Bring the new incarnation to the old segment's seq and ack, replay it, then the client's
    next bytes: what does the server's application read?"""
    S = lab.host("server")
    m_new, n_new = out["server_bytes_to_old_ack"], out["client_bytes_to_old_seq"]
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


# -- the checks, in the timeline's order: (a) in scenarios/_wandering_judge.py, (b)/(c) in
# scenarios/_wandering_bypassed.py; which ones follow the sysctls in force --------------------------

def checks(ev: Evidence):
    """(a)'s timer restart is judged where TIME-WAIT survives the client's RST (tcp_rfc1337=1);
    (b)/(c) follow the timestamps in force."""
    if on_gvisor(ev):           # no sock_diag, no nstat for gVisor's endpoints: _wandering_wire
        absorbed = (time_wait_acks_old_duplicate, no_application_sees_it, paws_unseen, timer_unseen,
                    time_wait_and_the_peers_rst)
    else:
        absorbed = (time_wait_acks_old_duplicate, no_application_sees_it, paws_in_time_wait) \
            + ((time_wait_timer_restarted,) if rfc1337_on(ev) else ()) + (time_wait_and_the_peers_rst,)
    if timestamps_on(ev):        # (b): PAWS drops the replay, the application reads only new bytes
        return absorbed + (time_wait_bypassed, isn_clock, old_segment_in_new_window, paws_rejects_old_segment,
                           application_reads_only_new_bytes)
    return absorbed + (time_wait_bypassed, isn_clock, old_segment_in_new_window, old_segment_accepted,
                       application_reads_old_bytes)    # (c): accepted, the old bytes read


SCENARIO = Scenario(
    name="wandering-duplicates", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    shaping=UNUSED,                 # the old connection must outrun the ISN clock: no slow links
    port=PORT, sysctls={"server": {"net.ipv4.tcp_rfc1337": "1"}}, stacks=("linux", "gvisor"),
    parallel_safe=False,            # the old connection's transfer races the ISN clock: run alone
    precondition=_room_for_time_wait, key=KEY,
    key_values=(
        KeyValue("TIME-WAIT timer after the replay (ms)", "time-wait-timer-restarted", "due_after_replay_ms",
                 abs_tol=50),
        KeyValue("PAWSTimewait", "paws-in-time-wait", "PAWSTimewait"),
        KeyValue("ISN clock (per s)", "isn-clock", "isns.0.per_second", rel_tol=0.01),
        KeyValue("old bytes delivered", "application-reads-*", "old_markers"),
    ))
