"""tw-reopen's checks of the client's RST: after a SYN TIME-WAIT refused (the RST kills the TIME-WAIT
with tcp_rfc1337=0, and the next SYN reaches the listener), and after an accepted old duplicate (RFC
1122 condition (2): the RST shows it was one, and nothing returns to TIME-WAIT on Linux). Not a
scenario: the leading underscore keeps it out of the catalog; scenarios/tw_reopen.py describes the
rules, runs the steps and reads the captures (its Case and Seen are what these read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.kernel import TW_ISN_STEP
from lab.verdict import Check

from . import _tw_reopen_wire as on_wire
from ._tw_reopen_incarnation import M32

if TYPE_CHECKING:
    from .tw_reopen import Case, Seen

__all__ = ["refused_syn_recovery", "rfc1122_condition_2_not_implemented"]

CITE_REFUSED = ("RFC 9293 §3.10.7.3 (SYN-SENT: an unacceptable ACK is answered with <SEQ=SEG.ACK><CTL=RST>); "
                "reference R-TW-RST: an RST with seq == rcv_nxt kills TIME-WAIT when tcp_rfc1337=0 and is ignored "
                "when 1; "
                "Linux tcp_rcv_synsent_state_process() retransmits the SYN after TCP_TIMEOUT_MIN")
CITE_RED_PEN = ("RFC 1122 §4.2.2.13 condition (2): \"returns to TIME-WAIT state if the SYN turns out to be an old "
                "duplicate\"; Linux net/ipv4/tcp_minisocks.c tcp_timewait_state_process(), comment \"RED-PEN: we "
                "violate main RFC requirement, if this SYN will appear old duplicate (i.e. we receive RST in reply "
                "to SYN-ACK), we must return socket to time-wait state. It is not good, but not fatal yet.\" "
                "(reference R-TW-RED-PEN)")


def refused_syn_recovery(c: Case) -> Check:
    """A SYN TIME-WAIT refused: its ACK draws the client's RST (seq = its ack), which kills the
    TIME-WAIT when tcp_rfc1337=0, so the client's next SYN meets the listener (a fresh ISN); with
    tcp_rfc1337=1 the RST is ignored and the next SYN is ACKed again."""
    d, inc = c.decision, c.inc
    if on_wire.on_gvisor(c.ev):
        return on_wire.refused_silently(c)
    syn, ans, rst = d.syn, d.ans, d.rst
    rfc1337 = int(c.ev.sysctl("server", "net.ipv4.tcp_rfc1337", "0") or 0)
    syn2, ans2, _ = inc.answers[1] if len(inc.answers) > 1 else (None, None, None)
    rst_ok = rst is not None and ans is not None and rst.seq == ans.ack
    fresh = ans2 is not None and ans2.has("SYN") and ans2.has("ACK") and \
        (ans2.seq - inc.old_snd_nxt) & M32 != TW_ISN_STEP
    if rfc1337 == 0:
        ok = rst_ok and syn2 is not None and syn2.seq == syn.seq and fresh and bool(c.facts.get("reconnect_ok"))
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
    if unseen and c.hole and not ok and not broken:
        ok = None           # a segment of the recovery may be on the wire but not in a capture
    return Check.judged(
        f"{c.name}-refused-syn-recovery", CITE_REFUSED, expected,
        f"server.pcap: RST {'seq=' + str(rst.seq) if rst else 'none'} after the ACK; next SYN "
        f"{'seq=' + str(syn2.seq) if syn2 else 'none'} "
        f"{round((syn2.t - syn.t) * 1000, 1) if syn2 else ''} ms later, answered by "
        f"{(ans2.flags + ' seq=' + str(ans2.seq)) if ans2 else 'nothing'}"
        + (f" (ISN - old snd_nxt = {(ans2.seq - inc.old_snd_nxt) & M32})" if ans2 and ans2.has('SYN') else "")
        + f"; connect {'ok' if c.facts.get('reconnect_ok') else c.facts.get('reconnect_error')}",
        ok, {"rst_seq": rst.seq if rst else None, "ack_ack": ans.ack if ans else None,
             "second_syn_after_ms": round((syn2.t - syn.t) * 1000, 1) if syn2 else None,
             "second_answer": ans2.flags if ans2 else None,
             "second_isn_minus_old_snd_nxt": (ans2.seq - inc.old_snd_nxt) & M32 if ans2 else None,
             "tcp_rfc1337": rfc1337, "reconnect_ok": c.facts.get("reconnect_ok")},
        missing=f"server.pcap lacks a segment of the recovery (the ACK, RST, second SYN or its answer): {c.hole}")


def rfc1122_condition_2_not_implemented(s: Seen) -> Check:
    """The old duplicate: an abandoned attempt's SYN, injected while the server holds TIME-WAIT,
    is accepted and answered by a SYN-ACK; the client, with no socket, answers RST - the SYN was an
    old duplicate. RFC 1122 (2) asks TIME-WAIT back; Linux keeps nothing (RED-PEN). Condition (2)
    acts only on an accepted SYN that turns out to be an old duplicate: not applicable otherwise."""
    name, c = "rfc1122-condition-2-not-implemented", s.cases["old-duplicate"]
    if not c.facts:
        return Check(name, CITE_RED_PEN, "the case runs", "the case never ran", False, {})
    strict = bool(s.ev.options.get("strict_rfc"))
    inc, f, lport = c.inc, c.facts, c.facts["client_port"]
    gvisor = on_wire.on_gvisor(s.ev)
    tw_before = [x for x in f.get("server_before_inject", []) if x["state"] == "TIME_WAIT"] or (
        [{"state": "TIME_WAIT", "expires_ms": None}] if gvisor and
        (f.get("server_probe_before") or {}).get("answer") == "ack" else [])
    syn, ans, _ = (inc.answers if inc is not None and inc.answers else [(None, None, None)])[0]
    accepted = ans is not None and ans.has("SYN") and ans.has("ACK")
    isn_step = (ans.seq - inc.old_snd_nxt) & M32 if accepted else None
    # the client has no socket for it any more: it answers the SYN-ACK with RST
    rst = next(iter(c.conn.segments("server", sender="client", flag="RST", after=ans.t)), None) \
        if ans is not None else None
    after = f.get("server_after", [])
    restored = on_wire.time_wait_restored(s) if gvisor else any(x["state"] == "TIME_WAIT" for x in after)
    if strict:
        expected = ("RFC 1122 §4.2.2.13 (2), strictly: the SYN turned out to be an old duplicate (RST in reply to the "
                    "SYN-ACK), so the server returns to TIME-WAIT")
    elif gvisor:
        expected = ("informational, gVisor as written (handleTimeWaitSegment(): the SYN goes to the listener and the "
                    "TIME-WAIT endpoint is done): when the client's RST shows the SYN was an old duplicate, nothing "
                    "returns to TIME-WAIT")
    else:
        expected = ("informational, Linux as documented (RED-PEN): TIME-WAIT accepts the SYN and is destroyed; when "
                    "the client's RST shows the SYN was an old duplicate, nothing returns to TIME-WAIT")
    unmet = [why for bad, why in (
        (not tw_before, "the server held no TIME_WAIT when the SYN was injected"),
        (f.get("abandoned_connect_ok") is not False, "the client's attempt was not abandoned"),
        (not accepted, "TIME-WAIT did not accept the SYN (no SYN-ACK)"),
        (accepted and isn_step != TW_ISN_STEP and not gvisor,
         "the SYN-ACK's ISN is not TIME-WAIT's (old snd_nxt + 65537)"),
        (gvisor and restored is None, "the router's probe after the exchange got no answer"),
        (rst is None, "the client sent no RST: the SYN never turned out to be an old duplicate")) if bad]
    left_s = (tw_before[0]["expires_ms"] / 1000) if tw_before and tw_before[0]["expires_ms"] is not None else None
    if inc is None:
        return Check.inconclusive(name, CITE_RED_PEN, expected,
                                  f"the captures lack the old connection's SYN or FINs on :{lport}"
                                  + (f" ({c.hole})" if c.hole else ""))
    if unmet and c.hole and (ans is None or rst is None):
        return Check.inconclusive(name, CITE_RED_PEN, expected,
                                  f"server.pcap lacks the answer to the injected SYN or the client's RST ({c.hole})")
    if unmet:
        return Check.not_applicable(name, CITE_RED_PEN, expected, "; ".join(unmet),
                                    {"accepted": accepted, "isn_minus_old_snd_nxt": isn_step,
                                     "rst_from_client": rst is not None, "time_wait_left_s_before": left_s})
    return _condition_2(c, name, expected, strict, restored, isn_step, left_s)


def _condition_2(c: Case, name: str, expected: str, strict: bool, restored: bool, isn_step: int,
                 left_s: float | None) -> Check:
    """The judgement, its premise met: strictly, TIME-WAIT must be back; as Linux documents, not."""
    f, after, cli = c.facts, c.facts.get("server_after", []), c.at_client
    # sock_diag's view of the server's end of the 4-tuple from the injection on (Conn.states matches
    # the server's end only, and every case shares the server's port: the client's port picks it)
    seen = [e.state for e in c.conn.states("server")
            if e.socket.dport == f["client_port"] and e.t >= f["injected_at"]]
    if on_wire.on_gvisor(c.ev):            # no sock_diag: the router's probe after the exchange
        seen = [f"probe: {(f.get('server_probe_after') or {}).get('answer')}"]
    return Check(
        name, CITE_RED_PEN, expected,
        f"an abandoned attempt's SYN (seq {f.get('held_syn_seq')}, held in the router, connect gave up: "
        f"{f.get('abandoned_connect_error')}) injected while the server held TIME_WAIT ("
        + (f"{left_s} s left" if left_s is not None else "the router's probe: ack") + "): server "
        f"answered SYN-ACK with ISN = old snd_nxt + {isn_step}, client answered RST; the server's end from then on: "
        f"{' -> '.join(seen) or 'no change seen'}"
        + ("" if on_wire.on_gvisor(c.ev) else
           f"; after: {[(x['state'], x['expires_ms']) for x in after] or 'no socket for the 4-tuple'}") + " -> "
        + ("RFC 1122 condition (2) NOT implemented" if not restored else "TIME_WAIT restored"),
        restored if strict else not restored,
        {"time_wait_left_s_before": left_s, "accepted": True, "isn_minus_old_snd_nxt": isn_step,
         "rst_from_client": True, "server_states_after_inject": seen,
         "server_sockets_after": after, "time_wait_restored": restored, "strict_rfc": strict,
         "client_saw_syn_ack": bool(cli.answers) if cli is not None else False})
