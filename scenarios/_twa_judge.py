"""tw-assassination, the judgement of what the RST did: PAWS (which does not prevent it, where
there are timestamps) and the TIME-WAIT's fate, decided by sock_diag and by the wire's probe. Not a
scenario: the leading underscore keeps it out of the catalog; scenarios/tw_assassination.py
describes the rules, runs the steps and judges figure 1's segments.

A segment absent from a capture whose tcpdump dropped packets is not judged (inconclusive); one
that is there and wrong fails. sock_diag's "gone within KILL_S" needs a poll in that window: a
sampler that was not polling there (a gap in its cadence) leaves how soon TIME-WAIT went unseen."""

from __future__ import annotations

from lab.evidence import Evidence
from lab.packets import Segment
from lab.verdict import Check

from .tw_assassination import (ANSWER_S, CITE_KILL, CITE_PAWS, CLIENT_PORT, KILL_S, PORT, WATCH_S, _missing, _ms,
                               _probe_answer)


def _paws(ev: Evidence, ts_on: bool, replay: Segment | None, srv_fin: Segment | None, ack: Segment | None,
          rst: Segment | None, rst_at_cli: Segment | None, no_replay: str) -> Check:
    """RFC 1337's 'TWA cannot be prevented by PAWS timestamps', where there are timestamps: the
    replay is PAWS-rejected and still ACKed, and the RST carries no TSval. Without timestamps PAWS
    has nothing to act on: not applicable (PAWSTimewait +0 proves nothing), unless something
    shows timestamps in use after all."""
    paws = ev.facts.get("counters", {}).get("client", {}).get("TcpExtPAWSTimewait", 0)
    rtsv, ftsv = (replay.tsval if replay else None), (srv_fin.tsval if srv_fin else None)
    observed = (f"replay TSval {rtsv}, server FIN TSval {ftsv}; client PAWSTimewait +{paws}; ACK "
                f"{'sent' if ack else 'not sent'}; RST at the client "
                + ('with TSval ' + str(rst_at_cli.tsval) if rst_at_cli and rst_at_cli.tsval is not None
                   else 'without timestamp' if rst_at_cli else 'not seen'))
    values = {"timestamps": ts_on, "replay_tsval": rtsv, "fin_tsval": ftsv, "PAWSTimewait": paws,
              "rst_tsval": rst_at_cli and rst_at_cli.tsval}
    if not ts_on:
        expected = "timestamps off: no TSval, so PAWS has nothing to act on (PAWSTimewait stays +0)"
        if rtsv is None and ftsv is None and paws == 0:
            return Check.not_applicable(
                "paws-does-not-prevent-it", CITE_PAWS, expected,
                f"tcp_timestamps=0 (client {ev.sysctl('client', 'net.ipv4.tcp_timestamps')}, server "
                f"{ev.sysctl('server', 'net.ipv4.tcp_timestamps')}): no segment carries a TSval, there is no "
                f"PAWS that could prevent the assassination; PAWSTimewait +{paws} shows nothing (the replay's "
                "ACK and the RST are time-wait-acks-it's and closed-server-answers-rst's)", values)
        return Check("paws-does-not-prevent-it", CITE_PAWS, expected, observed, False, values)
    if no_replay:
        ok = None
    elif rtsv is None or paws < 1 or (ftsv is not None and rtsv >= ftsv) \
            or (rst_at_cli is not None and rst_at_cli.tsval is not None):
        ok = False              # what the captures and the counter show breaks the rule
    elif ftsv is None or ack is None:
        ok = _missing(ev, "client")
    elif rst_at_cli is None:
        ok = _missing(ev, "client" if rst is not None else "server")
    else:
        ok = True
    return Check.judged(
        "paws-does-not-prevent-it", CITE_PAWS,
        "timestamps on: the replay's TSval is older than the server FIN's (TS.Recent), PAWS rejects "
        "it (client PAWSTimewait +1) and TIME-WAIT still sends the ACK; the RST carries no "
        "timestamp, so PAWS cannot stop it",
        observed, ok, values,
        missing=no_replay or f"{observed}, but {ev.capture_hole('client', 'server')}")


def _fate(ev: Evidence, rfc1337: bool, rst_at_cli: Segment | None, want_seq: int | None,
          want_ack: int | None, copied: dict | None) -> Check:
    """The verdict of the RST on the TIME-WAIT, decided by sock_diag and by the wire (the probe)."""
    f = ev.facts
    gone = None
    if rst_at_cli is not None:
        gone = next((e.t for e in ev.states("client") if e.data["socket"]["sport"] == CLIENT_PORT
                     and e.data["socket"]["dport"] == PORT and e.data["socket"]["state"] == "GONE"
                     and e.t >= rst_at_cli.t - 0.001), None)
    tw_after = f.get("tw_after") or {}
    in_window = rst_at_cli is not None and want_ack is not None and rst_at_cli.seq == want_ack
    key = f"{ev.addresses['client']}:{CLIENT_PORT}-{ev.addresses['server']}:{PORT}"
    last = [x for x in ev.timer_samples.get("client", []) if x[1] == key and x[2] == "TIME_WAIT"
            and (gone is None or x[0] < gone)]
    early_s = round(last[-1][4] / 1000, 1) if last and gone else None      # left when it was killed
    probe, answer = _probe_answer(ev, copied)
    is_rst = answer is not None and answer.has("RST") and not answer.has("ACK")
    is_ack = answer is not None and answer.flags == "ACK" and answer.length == 0
    probe_rsts = f.get("probe_counters", {}).get("client", {}).get("TcpOutRsts", 0)
    if rfc1337:
        diag_ok = in_window and gone is None and tw_after.get("state") == "TIME_WAIT"
        wire_ok = is_ack and (answer.seq, answer.ack) == (want_seq, want_ack) and probe_rsts == 0
        name = "time-wait-survives-rst"
        expected = ("tcp_rfc1337=1 (RFC 1337 F1): the RST (seq = RCV.NXT) is ignored; the client is still in "
                    f"TIME_WAIT {WATCH_S} s later (sock_diag), and the old segment replayed once more is "
                    "answered by TIME-WAIT's ACK (seq = SND.NXT, ack = RCV.NXT), not by a RST (the wire)")
    else:
        diag_ok = in_window and gone is not None and gone - rst_at_cli.t < KILL_S and not tw_after
        wire_ok = is_rst and answer.seq == probe.ack and probe_rsts >= 1
        name = "time-wait-assassinated"
        expected = ("tcp_rfc1337=0: the RST (seq = RCV.NXT) kills the client's TIME-WAIT at once (sock_diag: gone "
                    f"within {round(KILL_S * 1000)} ms, long before its 60 s), and the old segment replayed once "
                    "more finds no socket: the client's stack answers it with a RST, seq = its ack (the wire)")
    diag, diag_missing = _diag_judged(ev, rfc1337, rst_at_cli, in_window, gone, tw_after, key, diag_ok)
    # the wire: a probe that never reached the client's capture leaves its half unobserved; an
    # answer missing from a capture that dropped packets too
    wire, wire_missing = wire_ok, ""
    if probe is None:
        wire, wire_missing = None, ("the probe (the old segment replayed once more after the RST) is not in "
                                    "client.pcap, so the wire could not say whether the TIME-WAIT lived")
    elif answer is None and ev.capture_hole("client"):
        wire, wire_missing = None, (f"no answer to the probe in client.pcap, but {ev.capture_hole('client')}: "
                                    "it may be among them")
    # either half showing the wrong fate fails; otherwise a half unobserved leaves it undecided
    ok = False if False in (diag, wire) else None if None in (diag, wire) else True
    if answer is not None:
        said = f"{answer.flags} seq {answer.seq}" + (f" ack {answer.ack}" if answer.has("ACK") else "")
        wire = (f"the old segment replayed again {_ms(probe.t - rst_at_cli.t) if rst_at_cli else '-'} ms after "
                f"the RST drew {said} from the client {_ms(answer.t - probe.t)} ms later (probe's ack {probe.ack}; "
                f"SND.NXT {want_seq}, RCV.NXT {want_ack}); client TcpOutRsts +{probe_rsts}")
    else:
        wire = ("the old segment replayed again " + ("drew no answer within "
                f"{round(ANSWER_S * 1000)} ms" if probe else "never reached the client (no probe)"))
    return Check.judged(
        name, CITE_KILL, expected,
        (f"client.pcap: RST seq {rst_at_cli.seq if rst_at_cli else '-'} (RCV.NXT {want_ack}); client tcp_rfc1337="
         f"{int(rfc1337)}; sock_diag: TIME-WAIT "
         + (f"gone {_ms(gone - rst_at_cli.t)} ms after the RST, with {early_s} s of its timer left" if gone
            else f"still {tw_after.get('state')} {WATCH_S} s later ({tw_after.get('expires_ms')} ms left)"
            if tw_after else "not seen")
         + f"; wire: {wire}"),
        ok,
        {"rst_seq": rst_at_cli and rst_at_cli.seq, "rcv_nxt": want_ack, "tcp_rfc1337": int(rfc1337),
         "gone_after_rst_ms": _ms(gone - rst_at_cli.t) if gone and rst_at_cli else None,
         "state_after": tw_after.get("state"), "tw_left_after_ms": tw_after.get("expires_ms"),
         "timer_left_when_killed_s": early_s, "decided_by_sock_diag": bool(diag_ok),
         "decided_by_wire": bool(wire_ok), "probe_answer": None if answer is None else "RST" if is_rst
         else "ACK" if is_ack else answer.flags,
         "probe_answer_seq": answer and answer.seq, "probe_ack": probe and probe.ack,
         "probe_TcpOutRsts": probe_rsts},
        missing="; ".join(x for x in (diag_missing, wire_missing) if x)
        + ("; sock_diag alone does not decide" if wire is None and diag else ""))


def _diag_judged(ev: Evidence, rfc1337: bool, rst_at_cli: Segment | None, in_window: bool, gone: float | None,
                 tw_after: dict, key: str, diag_ok: bool) -> tuple[bool | None, str]:
    """sock_diag's half of the fate. A RST absent from a capture that dropped packets cannot be
    judged. With tcp_rfc1337=0 "gone within KILL_S" needs a poll in that window: a TIME_WAIT
    sample asked after it, or the lookup 0.5 s later still finding it, fails; the sampler not
    polling there (a gap) leaves how soon it went unseen."""
    if diag_ok:
        return True, ""
    if rst_at_cli is None:
        hole = ev.capture_hole("client", "server")
        return (None, f"the server's RST is not in the captures ({hole})") if hole else (False, "")
    if rfc1337 or not in_window or tw_after:
        return False, ""
    alive = [x[0] for x in ev.timer_samples.get("client", []) if x[1] == key and x[2] == "TIME_WAIT"
             and x[0] > rst_at_cli.t + KILL_S]
    gap = ev.sampler_gap_ms(rst_at_cli.t, rst_at_cli.t + KILL_S)
    if alive or not gap:
        return False, ""
    return None, (f"the sampler was not polling in the {round(KILL_S * 1000)} ms after the RST (a gap of {gap} ms): "
                  "how soon TIME-WAIT went is unseen" + (f" (it was gone {_ms(gone - rst_at_cli.t)} ms after)"
                                                        if gone else ""))
