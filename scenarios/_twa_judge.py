"""tw-assassination, the judgement of what the RST did: PAWS (which does not prevent it, where
there are timestamps) and the TIME-WAIT's fate, decided by sock_diag and by the wire's probe. Not a
scenario: the leading underscore keeps it out of the catalog; scenarios/tw_assassination.py
describes the rules, runs the steps and judges figure 1's segments (its Seen is what these read).

A segment absent from a capture whose tcpdump dropped packets is not judged (inconclusive); one
that is there and wrong fails. sock_diag's "gone within KILL_S" needs a poll in that window: a
sampler that was not polling there (a gap in its cadence) leaves how soon TIME-WAIT went unseen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.verdict import Check

from ._paws import PAWS_COUNTER_WHY, counted, without_timestamps

if TYPE_CHECKING:
    from lab.evidence import Evidence
    from lab.packets import Segment

    from .tw_assassination import Seen

__all__ = ["ANSWER_S", "KILL_S", "WATCH_S", "CITE_PAWS", "missing_in", "ms", "paws_does_not_prevent_it",
           "time_wait_assassinated", "time_wait_survives_rst", "is_ack", "in_window", "wire_judged", "wire_said"]

WATCH_S = 0.5                   # how long the client is watched after the replay (the run waits this)
ANSWER_S = 0.05                 # an answer leaves the client within this of what it answers
KILL_S = 0.1                    # tcp_rfc1337=0: the TIME-WAIT is gone (sock_diag) within this of the RST

CITE_PAWS = ("RFC 1337 §1: 'TWA cannot be prevented by PAWS timestamps'; RFC 7323 §5.3 R1 (TSval < TS.Recent: "
             "send an ACK, drop); Linux: PAWS reject in TIME-WAIT counts PAWSTimewait and still returns "
             "TCP_TW_ACK; tcp_v4_send_reset() (net/ipv4/tcp_ipv4.c) sends no timestamp option; reference R-TW-PAWS, "
             "R-CLOSED-RST")
CITE_KILL = ("Linux v6.18 tcp_timewait_state_process() (net/ipv4/tcp_minisocks.c): a RST with seq == rcv_nxt, not "
             "PAWS-rejected, kills TIME-WAIT when tcp_rfc1337=0 (inet_twsk_deschedule_put(), 'TIME_WAIT "
             "assassination') and is ignored when tcp_rfc1337=1 (RFC 1337 §3 F1: 'Ignore RST segments in "
             "TIME-WAIT state'); RFC 9293 §3.10.7.4 (RST in TIME-WAIT: enter CLOSED). The wire probe: a live "
             "TIME-WAIT ACKs a replayed data segment (TCP_TW_ACK; data is never out-of-window rate-limited: "
             "tcp_oow_rate_limited(), net/ipv4/tcp_input.c); with no socket tcp_v4_rcv() -> tcp_v4_send_reset() "
             "answers RST, seq = the segment's ack (RFC 9293 §3.10.7.1); reference R-TW-RST, R-TW-OLD-SEG, "
             "R-CLOSED-RST")
EXPECT_SURVIVES = ("tcp_rfc1337=1 (RFC 1337 F1): the RST (seq = RCV.NXT) is ignored; the client is still in "
                   f"TIME_WAIT {WATCH_S} s later (sock_diag), and the old segment replayed once more is "
                   "answered by TIME-WAIT's ACK (seq = SND.NXT, ack = RCV.NXT), not by a RST (the wire)")
EXPECT_KILLED = ("tcp_rfc1337=0: the RST (seq = RCV.NXT) kills the client's TIME-WAIT at once (sock_diag: gone "
                 f"within {round(KILL_S * 1000)} ms, long before its 60 s), and the old segment replayed once "
                 "more finds no socket: the client's stack answers it with a RST, seq = its ack (the wire)")


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def missing_in(ev: Evidence, host: str) -> bool | None:
    """A segment the kernel should have sent is not in *host*'s capture: a failure when that
    capture is complete (False), not judged when tcpdump dropped packets there (None)."""
    return None if ev.capture_hole(host) else False


def paws_does_not_prevent_it(s: Seen) -> Check:
    """RFC 1337's 'TWA cannot be prevented by PAWS timestamps', where there are timestamps: the
    replay is PAWS-rejected and still ACKed, and the RST carries no TSval. Without timestamps PAWS
    has nothing to act on: not applicable (PAWSTimewait +0 proves nothing), unless something
    shows timestamps in use after all."""
    ev, rst_at_cli = s.ev, s.rst_at_cli
    ts_on = all(ev.sysctl(h, "net.ipv4.tcp_timestamps", "1") != "0" for h in ("client", "server"))
    counter, paws = counted(ev.facts, ev.facts.get("counters", {}).get("client", {}))
    rtsv, ftsv = (s.replay.tsval if s.replay else None), (s.srv_fin.tsval if s.srv_fin else None)
    observed = (f"replay TSval {rtsv}, server FIN TSval {ftsv}; client {counter} +{paws}; ACK "
                f"{'sent' if s.ack else 'not sent'}; RST at the client "
                + ('with TSval ' + str(rst_at_cli.tsval) if rst_at_cli and rst_at_cli.tsval is not None
                   else 'without timestamp' if rst_at_cli else 'not seen'))
    values = {"timestamps": ts_on, "replay_tsval": rtsv, "fin_tsval": ftsv, "PAWSTimewait": paws,
              "paws_counter": counter, "rst_tsval": rst_at_cli and rst_at_cli.tsval}
    if not ts_on:
        return without_timestamps("paws-does-not-prevent-it", CITE_PAWS, ev, (rtsv, ftsv), paws, observed, values,
                                  "the replay's ACK and the RST are time-wait-acks-it's and "
                                  "closed-server-answers-rst's")
    if s.no_replay:
        ok = None
    elif rtsv is None or paws < 1 or (ftsv is not None and rtsv >= ftsv) \
            or (rst_at_cli is not None and rst_at_cli.tsval is not None):
        ok = False              # what the captures and the counter show breaks the rule
    elif ftsv is None or s.ack is None:
        ok = missing_in(ev, "client")
    elif rst_at_cli is None:
        ok = missing_in(ev, "client" if s.rst is not None else "server")
    else:
        ok = True
    return Check.judged(
        "paws-does-not-prevent-it", CITE_PAWS,
        "timestamps on: the replay's TSval is older than the server FIN's (TS.Recent), PAWS rejects "
        f"it (client {counter} +1: {PAWS_COUNTER_WHY}) and TIME-WAIT still sends the ACK; the RST carries "
        "no timestamp, so PAWS cannot stop it",
        observed, ok, values,
        missing=s.no_replay or f"{observed}, but {ev.capture_hole('client', 'server')}")


# -- the RST's effect: which check follows the client's tcp_rfc1337 (tw_assassination.checks) -------

def time_wait_assassinated(s: Seen) -> Check:
    """tcp_rfc1337=0: the RST kills the TIME-WAIT at once (sock_diag), and the probe finds no
    socket: the client's stack answers it with a RST, seq = the probe's ack (the wire)."""
    rst, gone, tw_after = s.rst_at_cli, _gone(s), s.ev.facts.get("tw_after") or {}
    diag_ok = in_window(s) and gone is not None and gone - rst.t < KILL_S and not tw_after
    wire_ok = _is_rst(s.answer) and s.answer.seq == s.probe.ack and _probe_rsts(s) >= 1
    return _fate(s, "time-wait-assassinated", EXPECT_KILLED, diag_ok, wire_ok)


def time_wait_survives_rst(s: Seen) -> Check:
    """tcp_rfc1337=1: the RST is ignored: the TIME-WAIT is still there (sock_diag), and answers the
    probe with its ACK of SND.NXT, RCV.NXT (the wire)."""
    tw_after = s.ev.facts.get("tw_after") or {}
    diag_ok = in_window(s) and _gone(s) is None and tw_after.get("state") == "TIME_WAIT"
    wire_ok = is_ack(s.answer) and (s.answer.seq, s.answer.ack) == (s.want_seq, s.want_ack) and _probe_rsts(s) == 0
    return _fate(s, "time-wait-survives-rst", EXPECT_SURVIVES, diag_ok, wire_ok)


def in_window(s: Seen) -> bool:
    """The RST at the client carries seq = RCV.NXT: the one TIME-WAIT acts on."""
    return s.rst_at_cli is not None and s.want_ack is not None and s.rst_at_cli.seq == s.want_ack


def _gone(s: Seen) -> float | None:
    """When sock_diag saw the client's TIME-WAIT go, from the RST at the client on."""
    return s.conn.gone_at("client", after=s.rst_at_cli.t - 0.001) if s.rst_at_cli is not None else None


def _is_rst(a: Segment | None) -> bool:
    return a is not None and a.has("RST") and not a.has("ACK")


def is_ack(a: Segment | None) -> bool:
    return a is not None and a.flags == "ACK" and a.length == 0


def _probe_rsts(s: Seen) -> int:
    return s.ev.facts.get("probe_counters", {}).get("client", {}).get("TcpOutRsts", 0)


def _fate(s: Seen, name: str, expected: str, diag_ok: bool, wire_ok: bool) -> Check:
    """The verdict of the RST on the TIME-WAIT: either half (sock_diag, the wire) showing the
    wrong fate fails; otherwise a half unobserved leaves it undecided."""
    rst, gone, tw_after = s.rst_at_cli, _gone(s), s.ev.facts.get("tw_after") or {}
    diag, diag_missing = _diag_judged(s, gone, tw_after, diag_ok)
    wire, wire_missing = wire_judged(s, wire_ok)
    ok = False if False in (diag, wire) else None if None in (diag, wire) else True
    last = [x for x in s.conn.samples("client", state="TIME_WAIT") if gone is None or x.asked < gone]
    early_s = round(last[-1].expires_ms / 1000, 1) if last and gone else None      # left when it was killed
    a, probe = s.answer, s.probe
    return Check.judged(
        name, CITE_KILL, expected,
        (f"client.pcap: RST seq {rst.seq if rst else '-'} (RCV.NXT {s.want_ack}); client tcp_rfc1337="
         f"{int(s.rfc1337)}; sock_diag: TIME-WAIT "
         + (f"gone {ms(gone - rst.t)} ms after the RST, with {early_s} s of its timer left" if gone
            else f"still {tw_after.get('state')} {WATCH_S} s later ({tw_after.get('expires_ms')} ms left)"
            if tw_after else "not seen")
         + f"; wire: {wire_said(s)}"),
        ok,
        {"rst_seq": rst and rst.seq, "rcv_nxt": s.want_ack, "tcp_rfc1337": int(s.rfc1337),
         "gone_after_rst_ms": ms(gone - rst.t) if gone and rst else None,
         "state_after": tw_after.get("state"), "tw_left_after_ms": tw_after.get("expires_ms"),
         "timer_left_when_killed_s": early_s, "decided_by_sock_diag": bool(diag_ok),
         "decided_by_wire": bool(wire_ok), "probe_answer": None if a is None else "RST" if _is_rst(a)
         else "ACK" if is_ack(a) else a.flags,
         "probe_answer_seq": a and a.seq, "probe_ack": probe and probe.ack, "probe_TcpOutRsts": _probe_rsts(s)},
        missing="; ".join(x for x in (diag_missing, wire_missing) if x)
        + ("; sock_diag alone does not decide" if wire is None and diag else ""))


def wire_judged(s: Seen, wire_ok: bool) -> tuple[bool | None, str]:
    """The wire's half: a probe that never reached the client's capture leaves it unobserved; an
    answer missing from a capture that dropped packets too."""
    if s.probe is None:
        return None, ("the probe (the old segment replayed once more after the RST) is not in "
                      "client.pcap, so the wire could not say whether the TIME-WAIT lived")
    if s.answer is None and s.ev.capture_hole("client"):
        return None, (f"no answer to the probe in client.pcap, but {s.ev.capture_hole('client')}: "
                      "it may be among them")
    return wire_ok, ""


def wire_said(s: Seen) -> str:
    a, probe, rst = s.answer, s.probe, s.rst_at_cli
    if a is None:
        return "the old segment replayed again " + (f"drew no answer within {round(ANSWER_S * 1000)} ms"
                                                    if probe else "never reached the client (no probe)")
    said = f"{a.flags} seq {a.seq}" + (f" ack {a.ack}" if a.has("ACK") else "")
    return (f"the old segment replayed again {ms(probe.t - rst.t) if rst else '-'} ms after "
            f"the RST drew {said} from the client {ms(a.t - probe.t)} ms later (probe's ack {probe.ack}; "
            f"SND.NXT {s.want_seq}, RCV.NXT {s.want_ack})"
            + (f"; client TcpOutRsts +{_probe_rsts(s)}" if "client" in s.ev.facts.get("probe_counters", {}) else ""))


def _diag_judged(s: Seen, gone: float | None, tw_after: dict, diag_ok: bool) -> tuple[bool | None, str]:
    """sock_diag's half of the fate. A RST absent from a capture that dropped packets cannot be
    judged. With tcp_rfc1337=0 "gone within KILL_S" needs a poll in that window: a TIME_WAIT
    sample asked after it, or the lookup 0.5 s later still finding it, fails; the sampler not
    polling there (a gap) leaves how soon it went unseen."""
    rst, ev = s.rst_at_cli, s.ev
    if diag_ok:
        return True, ""
    if rst is None:
        hole = ev.capture_hole("client", "server")
        return (None, f"the server's RST is not in the captures ({hole})") if hole else (False, "")
    if s.rfc1337 or not in_window(s) or tw_after:
        return False, ""
    alive = [x.asked for x in s.conn.samples("client", state="TIME_WAIT") if x.asked > rst.t + KILL_S]
    gap = ev.sampler_gap_ms(rst.t, rst.t + KILL_S)
    if alive or not gap:
        return False, ""
    return None, (f"the sampler was not polling in the {round(KILL_S * 1000)} ms after the RST (a gap of {gap} ms): "
                  "how soon TIME-WAIT went is unseen" + (f" (it was gone {ms(gone - rst.t)} ms after)"
                                                        if gone else ""))
