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

With a gVisor end (--stack client=gvisor or server=gvisor) the close is waited for on the wire; a
gVisor client is judged from the captures against gVisor's own choice, to ignore the RST
(_twa_wire.py); a gVisor server's closed port must send segment 5.3 as Linux's does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.nsops import read_counters
from lab.observe import counters_delta
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check

from ._keys.tw_assassination import KEY
from ._paws import tw_counter
from ._premise import time_wait_room
from ._steps import copied_data
from ._twa_judge import (
    ANSWER_S,
    WATCH_S,
    missing_in,
    ms,
    paws_does_not_prevent_it,
    time_wait_assassinated,
    time_wait_survives_rst,
)

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.core import Lab
    from lab.evidence import Evidence
    from lab.packets import Segment

INTENT = ("RFC 1337 figure 1: an old duplicate -> TIME-WAIT's ACK -> the closed server's RST kills "
          "TIME-WAIT (tcp_rfc1337=0) or is ignored (tcp_rfc1337=1)")
PORT = 5007
CLIENT_PORT = 40007
OLD_LEN = 600                   # the server's data segment that becomes the old duplicate
TW_WAIT_S = 0.3                 # how long TIME-WAIT has run before the replay
PROBE_WATCH_S = 0.2             # how long the answer to the probe (the replay, once more) is awaited
M32 = 1 << 32

CITE_TWA = ("RFC 1337 §1 figure 1 (5.1 any unacceptable old segment, 5.2 TIME-WAIT's ACK for SND.NXT/RCV.NXT); "
            "RFC 9293 §3.10.7.4 (unacceptable segment -> send an ACK); Linux tcp_timewait_state_process() -> "
            "TCP_TW_ACK, tcp_v4_timewait_ack() (net/ipv4/tcp_minisocks.c, tcp_ipv4.c; reference R-TW-OLD-SEG)")
CITE_RST = ("RFC 9293 §3.10.7.1 / RFC 793 p.36 (CLOSED: an incoming segment with ACK gets <SEQ=SEG.ACK><CTL=RST>); "
            "RFC 1337 figure 1 segment 5.3; Linux tcp_v4_rcv() no socket -> tcp_v4_send_reset()")


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
    old, out["client_read"] = copied_data(lab, "old-dup", server, client, "c", OLD_LEN, CLIENT_PORT)
    out["copied"] = [s.to_json() for s in old]          # the server's data, copied on its way
    time.sleep(0.05)                                   # the FINs carry later TSvals

    _close_both(lab, client, server, key_cli, key_srv)   # RFC 1337 figure 1, segments 2-5
    time.sleep(TW_WAIT_S)
    tw = lab.views["client"].lookup(key_cli)         # a gVisor host's sockets are not Linux's: None
    out["tw_before"] = tw.to_json() if tw else None
    out["server_socket_before"] = _state(lab, "server", key_srv)
    before = _counters(lab)
    if "client" in before:                           # which counter this kernel counts PAWS in TIME-WAIT in
        out["paws_tw_counter"] = tw_counter(before["client"])
    if old:
        out["injected_at"] = lab.faults.inject(old[:1], C)        # segment 5.1
    time.sleep(WATCH_S)
    tw = lab.views["client"].lookup(key_cli)
    out["tw_after"] = tw.to_json() if tw else None
    out["counters"] = _counters(lab, before)
    if old:
        # the wire's verdict: the same old segment once more - a live TIME-WAIT ACKs it, a killed
        # one leaves no socket and the client's stack answers RST
        before = _counters(lab)
        out["probe_at"] = lab.faults.inject(old[:1], C)
        time.sleep(PROBE_WATCH_S)
        tw = lab.views["client"].lookup(key_cli)
        out["tw_after_probe"] = tw.to_json() if tw else None
        out["probe_counters"] = _counters(lab, before)
    return out


def _close_both(lab: Lab, client, server, key_cli: tuple, key_srv: tuple) -> None:
    """The client closes first; the server closes everything (no socket for the port at all).
    Waited for through sock_diag, or on the wire when an end runs gVisor (it has no sock_diag)."""
    on_wire = wire.any_gvisor(lab)
    client.close("c")
    if on_wire:
        lab.wait_for("the server's ACK of the client's FIN (on the wire)",
                     lambda: wire.fin_acked(lab, "client", CLIENT_PORT, PORT), timeout_s=5)
    else:
        lab.wait_for("the server to see the client's FIN (CLOSE_WAIT)",
                     lambda: _state(lab, "server", key_srv) == "CLOSE_WAIT", timeout_s=5)
    server.close("c")
    server.close("L")
    if on_wire:
        lab.wait_for("the client's ACK of the server's FIN (on the wire)",
                     lambda: wire.fin_acked(lab, "server", PORT, CLIENT_PORT), timeout_s=5)
    else:
        lab.wait_for("the client's TIME_WAIT and no server socket",
                     lambda: _state(lab, "client", key_cli) == "TIME_WAIT"
                     and _state(lab, "server", key_srv) is None, timeout_s=5)


def _counters(lab: Lab, before: dict | None = None) -> dict:
    """The Linux hosts' counters (a gVisor host keeps none Linux can read), or their change since
    *before*."""
    now = {h: read_counters(lab.host(h).nspath) for h in ("client", "server") if wire.stack_of(lab, h) == "linux"}
    return now if before is None else {h: counters_delta(before[h], now[h]) for h in now}


def _state(lab: Lab, host: str, key: tuple) -> str | None:
    sk = lab.views[host].lookup(key)
    return sk.state if sk is not None and sk.state != "LISTEN" else None


def _rfc1337(ev: Evidence) -> bool:
    """The client ignores a RST in TIME-WAIT (RFC 1337 F1)."""
    return ev.sysctl("client", "net.ipv4.tcp_rfc1337", "0") != "0"


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """Figure 1 as the captures show it: the old segment the router copied, its replay (5.1) and
    TIME-WAIT's ACK (5.2) in client.pcap, that ACK and the closed server's RST (5.3) in server.pcap
    and the RST in client.pcap; then the probe (the replay once more) and the client's answer."""

    ev: Evidence
    conn: Conn
    copied: dict | None              # the copied segment, as the router logged it
    replay: Segment | None           # 5.1, arriving at the client
    no_replay: str                   # why the replay is missing: "" when client.pcap saw it
    cli_fin: Segment | None          # the close's FINs, in client.pcap
    srv_fin: Segment | None
    ack: Segment | None              # 5.2 in client.pcap ...
    ack_at_srv: Segment | None       # ... and in server.pcap
    rst: Segment | None              # 5.3 in server.pcap ...
    rst_at_cli: Segment | None       # ... and in client.pcap
    probe: Segment | None            # the old segment replayed once more, arriving at the client
    answer: Segment | None           # the client's answer to it

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        conn, f = ev.conn(CLIENT_PORT, PORT), ev.facts
        copied = (f.get("copied") or [None])[0]
        replay = _replayed(conn, copied, f.get("injected_at"), f.get("probe_at"))
        # without timestamps TIME-WAIT's ACK is byte for byte the final ACK of the close: arrived()
        # takes the copy at or after it
        ack = _answer(conn, replay, lambda a: a.has("ACK") and not a.has("RST"))
        ack_at_srv = conn.arrived(ack, "server") if ack is not None else None
        rst = next((r for r in conn.segments("server", sender="server", flag="RST", after=ack_at_srv.t)
                    if r.t - ack_at_srv.t < 0.05), None) if ack_at_srv is not None else None
        probe = _replayed(conn, copied, f.get("probe_at"))
        return cls(ev, conn, copied, replay, _no_replay(ev, copied, f.get("injected_at"), replay),
                   next(iter(conn.segments("client", sender="client", flag="FIN")), None),
                   next(iter(conn.segments("client", sender="server", flag="FIN")), None),
                   ack, ack_at_srv, rst, conn.arrived(rst, "client") if rst is not None else None,
                   probe, _answer(conn, probe))

    @property
    def want_seq(self) -> int | None:
        """TIME-WAIT's SND.NXT: the client's FIN + 1."""
        return (self.cli_fin.seq + 1) % M32 if self.cli_fin else None

    @property
    def want_ack(self) -> int | None:
        """TIME-WAIT's RCV.NXT: the server's FIN + 1."""
        return (self.srv_fin.seq + self.srv_fin.length + 1) % M32 if self.srv_fin else None

    @property
    def rfc1337(self) -> bool:
        return _rfc1337(self.ev)


def _replayed(conn: Conn, copied: dict | None, since: float | None, until: float | None = None) -> Segment | None:
    """The copied old segment as the client's capture saw it arrive (again) at or after *since*
    (and before *until*: the first replay is not the probe)."""
    if not copied or not since:
        return None
    same = (copied["seq"], copied["ack"], copied["length"], copied["tsval"])
    return next((s for s in conn.segments("client", sender="server", after=since - 0.001)
                 if (s.seq, s.ack, s.length, s.tsval) == same and (until is None or s.t < until - 0.001)), None)


def _answer(conn: Conn, seg: Segment | None, wanted=lambda a: True) -> Segment | None:
    """The client's first (*wanted*) segment within ANSWER_S of *seg* arriving, in client.pcap."""
    if seg is None:
        return None
    return next((a for a in conn.segments("client", sender="client", after=seg.t)
                 if a.t - seg.t < ANSWER_S and wanted(a)), None)


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


# -- figure 1, segment by segment: the checks, in the timeline's order ---------------------------

def old_duplicate_reaches_time_wait(s: Seen) -> Check:
    """5.1: the replay reaches the client in TIME_WAIT, the server holding no socket. The replay is
    the lab's own doing: not seeing it arrive is never the client's failure."""
    f, copied, t_inj = s.ev.facts, s.copied, s.ev.facts.get("injected_at")
    tw_before = f.get("tw_before") or {}
    ok = (False if tw_before.get("state") != "TIME_WAIT" or f.get("server_socket_before") is not None
          else None if s.no_replay else True)
    return Check.judged(
        "old-duplicate-reaches-time-wait", CITE_TWA,
        "a data segment the server sent earlier in this connection (copied by the router) reaches the client "
        "while the client is in TIME_WAIT and the server has no socket for the connection",
        (f"client.pcap: replay {'arrived' if s.replay else 'not seen'}: seq {copied['seq'] if copied else '-'} "
         f"ack {copied['ack'] if copied else '-'} {copied['length'] if copied else 0} B, sent first at "
         f"{round(t_inj - copied['t'], 3) if copied and t_inj else '-'} s earlier; sock_diag: client "
         f"{tw_before.get('state')} ({tw_before.get('expires_ms')} ms left), server socket: "
         f"{f.get('server_socket_before') or 'none'}"),
        ok, {"replay_seq": copied and copied["seq"], "replay_len": copied and copied["length"],
             "client_state": tw_before.get("state"), "tw_left_ms": tw_before.get("expires_ms"),
             "server_socket": f.get("server_socket_before"),
             "replay_age_s": round(t_inj - copied["t"], 3) if copied and t_inj else None},
        missing=s.no_replay)


def time_wait_acks_it(s: Seen) -> Check:
    """5.2: TIME-WAIT answers with an ACK for its SND.NXT and RCV.NXT."""
    ack, want_seq, want_ack = s.ack, s.want_seq, s.want_ack
    if s.no_replay:
        ok = None
    elif ack is None or s.cli_fin is None or s.srv_fin is None:
        ok = missing_in(s.ev, "client")      # absent from client.pcap: failed only if it is complete
    else:
        ok = ack.seq == want_seq and ack.ack == want_ack and ack.length == 0
    return Check.judged(
        "time-wait-acks-it", CITE_TWA,
        "the client's TIME-WAIT answers with a pure ACK, seq = SND.NXT (its FIN + 1), ack = RCV.NXT "
        "(the server's FIN + 1)",
        ("client.pcap: " + (f"{ack.flags} seq {ack.seq} ack {ack.ack} {ms(ack.t - s.replay.t)} ms after the "
                             f"replay (want seq {want_seq} ack {want_ack})" if ack else "no ACK within 50 ms")),
        ok, {"ack_seq": ack and ack.seq, "ack_ack": ack and ack.ack, "want_seq": want_seq, "want_ack": want_ack,
             "answer_after_ms": ms(ack.t - s.replay.t) if ack and s.replay else None},
        missing=s.no_replay
        or f"client.pcap lacks TIME-WAIT's ACK or a FIN of the close ({s.ev.capture_hole('client')})")


def closed_server_answers_rst(s: Seen) -> Check:
    """5.3: the server, with no socket, reflects the ACK as RST <SEQ=SEG.ACK>."""
    rst, ack_at_srv = s.rst, s.ack_at_srv
    linux = wire.stack_of(s.ev, "server") == "linux"      # gVisor keeps no counter Linux can read
    out_rsts = s.ev.facts.get("counters", {}).get("server", {}).get("TcpOutRsts", 0)
    if rst is not None:
        ok = rst.seq == ack_at_srv.ack and not rst.has("ACK") and (out_rsts >= 1 or not linux)
    elif s.no_replay:
        ok = None
    elif s.ack is None:         # nothing to answer in client.pcap: time-wait-acks-it says why
        ok = missing_in(s.ev, "client")
    else:                       # the ACK or the RST absent from server.pcap
        ok = missing_in(s.ev, "server")
    return Check.judged(
        "closed-server-answers-rst", CITE_RST,
        "the ACK reaches the server, which has no socket and answers RST with seq = the ACK's ack (no ACK bit)",
        (f"server.pcap: ACK {'arrived' if ack_at_srv else 'never arrived'}; "
         + (f"{rst.flags} seq {rst.seq} {ms(rst.t - ack_at_srv.t)} ms later (ACK's ack {ack_at_srv.ack})"
            if rst else "no RST") + (f"; server TcpOutRsts +{out_rsts}" if linux else "; the server runs gVisor")),
        ok, {"rst_seq": rst and rst.seq, "rst_flags": rst and rst.flags,
             "ack_ack": ack_at_srv and ack_at_srv.ack, "TcpOutRsts": out_rsts if linux else None},
        missing=s.no_replay or ("client.pcap lacks TIME-WAIT's ACK" if s.ack is None
                                else "server.pcap lacks the ACK or the RST")
        + f" ({s.ev.capture_hole('client', 'server')})")


# then PAWS, which does not prevent it, and the RST's effect: scenarios/_twa_judge.py
FIGURE_1 = (old_duplicate_reaches_time_wait, time_wait_acks_it, closed_server_answers_rst, paws_does_not_prevent_it)


def gvisor_client_checks():
    """A gVisor client: the replay's arrival and the RST's effect from the wire (_twa_wire.py); PAWS's
    counter is Linux's."""
    from ._twa_wire import old_duplicate_reaches_time_wait_wire, paws_not_applicable, time_wait_survives_rst_wire

    return (old_duplicate_reaches_time_wait_wire, time_wait_acks_it, closed_server_answers_rst,
            paws_not_applicable, time_wait_survives_rst_wire)


def checks(ev: Evidence):
    """What the RST must do follows the client's tcp_rfc1337 in force; a gVisor client is judged
    from the wire against gVisor's own choice (_twa_wire.py)."""
    if wire.stack_of(ev, "client") == "gvisor":
        return gvisor_client_checks()
    return FIGURE_1 + ((time_wait_survives_rst,) if _rfc1337(ev) else (time_wait_assassinated,))


SCENARIO = Scenario(
    name="tw-assassination", intent=INTENT, run=run, analyse=Seen.of, checks=checks,
    precondition=precondition, shaping=OPTIONAL, port=PORT, key=KEY, stacks=("linux", "gvisor"),
    key_values=(
        KeyValue("tcp_rfc1337", "time-wait-*", "tcp_rfc1337"),
        KeyValue("TIME-WAIT after the RST", "time-wait-*", "state_after", none_means="gone (killed)"),
        KeyValue("killed after the RST (ms)", "time-wait-*", "gone_after_rst_ms", abs_tol=50),
        KeyValue("PAWSTimewait", "paws-does-not-prevent-it", "PAWSTimewait"),
    ))
