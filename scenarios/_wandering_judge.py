"""wandering-duplicates, the judgement: what the captures, sock_diag and the counters say about
part (a), the replayed old duplicate that reaches TIME-WAIT, and the helpers part (b) shares
(scenarios/_wandering_bypassed.py). Not a scenario: the leading underscore keeps it out of the
catalog; scenarios/wandering_duplicates.py describes the rules and runs the steps."""

from __future__ import annotations

import errno

from lab.evidence import Evidence
from lab.packets import Segment
from lab.verdict import NOT_APPLICABLE, Check

from .wandering_duplicates import (CITE_NOAPP, CITE_PAWS_TW, CITE_RFC1337, CITE_TW, LINUX_TIMEWAIT_MS, M32,
                                   PORT, PORT_A, TW_WAIT_S)

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


def _no_replay(ev: Evidence, part: dict, copied: dict | None, replay: Segment | None) -> str:
    """Why the replay the checks judge is missing: "" when server.pcap saw it arrive. The replay
    is the lab's own doing (copied by the router, injected from it): without it the checks have
    no evidence, which is never the server's failure."""
    if replay is not None:
        return ""
    if not copied:
        return "the router copied no data segment of the old connection, so nothing was replayed"
    if part.get("injected_at") is None:
        return "the copied segment was never injected"
    hole = ev.capture_hole("server")
    return "the replayed segment is not in server.pcap" + (f" ({hole})" if hole else "")


def _missing(ev: Evidence, host: str) -> bool | None:
    """A segment the kernel should have sent is not in *host*'s capture: a failure when that
    capture is complete (False), not judged when tcpdump dropped packets there (None)."""
    return None if ev.capture_hole(host) else False


def _unjudged(kind: str, name: str, cite: str, expected: str, why: str) -> Check:
    make = Check.not_applicable if kind == NOT_APPLICABLE else Check.inconclusive
    return make(name, cite, expected, why)


def check_absorbed(ev: Evidence) -> list[Check]:
    a = ev.facts.get("a", {})
    copied = (a.get("copied") or [None])[0]
    replay = _arrival(ev, copied, a.get("injected_at"))
    answers = [s for s in _from(ev, "server", "server", dport=PORT_A)
               if replay and s.t >= replay.t and s.has("ACK") and not s.has("RST")]
    ctx = {"a": a, "copied": copied, "replay": replay, "no_replay": _no_replay(ev, a, copied, replay),
           "ack": answers[0] if answers and answers[0].t - replay.t < 0.05 else None,
           "cli_fin": next(iter(_from(ev, "server", "client", sport=PORT_A, flag="FIN")), None),
           "srv_fin": next(iter(_from(ev, "server", "server", dport=PORT_A, flag="FIN")), None),
           "tw_before": (a.get("tw_before") or {}).get("state"),
           "tw_after": (a.get("tw_after") or {}).get("state"),
           "rfc1337": ev.sysctl("server", "net.ipv4.tcp_rfc1337", "0") != "0"}
    checks = [_a_acks(ev, ctx), _a_no_app(ev, ctx), _a_paws(ev, ctx)]
    if ctx["rfc1337"]:
        checks.append(_a_timer(ev, ctx))
    checks.append(_a_peers_rst(ev, ctx))
    return checks


def _a_acks(ev: Evidence, c: dict) -> Check:
    """1. TIME-WAIT answers the old duplicate with an ACK of its own RCV.NXT."""
    replay, ack, copied, srv_fin, cli_fin = c["replay"], c["ack"], c["copied"], c["srv_fin"], c["cli_fin"]
    want_seq = (srv_fin.seq + 1) % M32 if srv_fin else None
    want_ack = (cli_fin.seq + cli_fin.length + 1) % M32 if cli_fin else None
    if c["no_replay"]:
        ok = None
    elif c["tw_before"] != "TIME_WAIT":
        ok = False
    elif ack is None or srv_fin is None or cli_fin is None:
        ok = _missing(ev, "server")
    else:
        ok = ack.seq == want_seq and ack.ack == want_ack and ack.length == 0
    observed = (f"server.pcap: replay of seq {copied['seq'] if copied else '-'} ({copied['length'] if copied else 0} B) "
                f"{'arrived' if replay else 'never arrived'} while sock_diag showed {c['tw_before']}; "
                + (f"answer {_ms(ack.t - replay.t)} ms later: {ack.flags} seq {ack.seq} ack {ack.ack} "
                   f"(want seq {want_seq} ack {want_ack})" if ack else "no ACK within 50 ms"))
    return Check.judged(
        "time-wait-acks-old-duplicate", CITE_TW,
        "the replayed data segment reaches the server's TIME-WAIT socket, which answers with an ACK "
        "(seq = its FIN's seq + 1, ack = the client's FIN + 1) and delivers nothing",
        observed, ok,
        {"replay_seq": copied and copied["seq"], "replay_len": copied and copied["length"],
         "state_before": c["tw_before"], "ack_seq": ack and ack.seq, "ack_ack": ack and ack.ack,
         "want_seq": want_seq, "want_ack": want_ack,
         "answer_after_ms": _ms(ack.t - replay.t) if ack and replay else None},
        missing=c["no_replay"] or f"{observed}, but {ev.capture_hole('server')}")


def _a_no_app(ev: Evidence, c: dict) -> Check:
    """2. no application sees it: the listener on that port accepts nothing."""
    acc = c["a"].get("accept_after") or {}
    ok = None if c["no_replay"] else (not acc.get("ok") and acc.get("errno") == errno.ETIMEDOUT)
    return Check.judged(
        "no-application-sees-it", CITE_NOAPP,
        "accept() on the server's listener (same port) times out: the old bytes reach no application",
        (f"accept() after the replay: {acc.get('error') or 'a connection!'} "
         f"({acc.get('message') or acc.get('result')}); the 4-tuple's socket afterwards: {c['tw_after'] or 'none'}"),
        ok, {"accept_errno": acc.get("errno"), "accept_error": acc.get("error"), "state_after": c["tw_after"]},
        missing=c["no_replay"])


def _a_paws(ev: Evidence, c: dict) -> Check:
    """3. PAWS: with timestamps the old TSval is older than the FIN's; TIME-WAIT still ACKs.
    Without timestamps PAWS has nothing to act on: not applicable (PAWSTimewait +0 proves
    nothing), unless something says timestamps were used after all."""
    replay, ack, cli_fin = c["replay"], c["ack"], c["cli_fin"]
    paws = c["a"].get("server_counters", {}).get("TcpExtPAWSTimewait", 0)
    tsv, fin_tsv = (replay.tsval if replay else None), (cli_fin.tsval if cli_fin else None)
    observed = (f"replay TSval {tsv}, client FIN TSval {fin_tsv}; server PAWSTimewait +{paws} around the replay; "
                f"ACK {'sent' if ack else 'not sent'}")
    values = {"replay_tsval": tsv, "fin_tsval": fin_tsv, "PAWSTimewait": paws, "timestamps": _ts_on(ev)}
    if not _ts_on(ev):
        expected = "timestamps off: no TSval, so PAWS has nothing to act on (PAWSTimewait stays +0)"
        if tsv is None and fin_tsv is None and paws == 0:
            return Check.not_applicable(
                "paws-in-time-wait", CITE_PAWS_TW, expected,
                f"tcp_timestamps=0 (client {ev.sysctl('client', 'net.ipv4.tcp_timestamps')}, server "
                f"{ev.sysctl('server', 'net.ipv4.tcp_timestamps')}): no segment carries a TSval and PAWS "
                f"cannot act; PAWSTimewait +{paws} shows nothing (TIME-WAIT's ACK of the replay is "
                "time-wait-acks-old-duplicate's)", values)
        return Check("paws-in-time-wait", CITE_PAWS_TW, expected, observed, False, values)
    if c["no_replay"]:
        ok = None
    elif tsv is None or fin_tsv is None or ack is None:
        ok = False if tsv is None and replay is not None else _missing(ev, "server")
    else:
        ok = tsv < fin_tsv and paws >= 1
    return Check.judged(
        "paws-in-time-wait", CITE_PAWS_TW,
        "timestamps on: the replay's TSval is older than TS.Recent (the client's FIN): "
        "PAWSTimewait +1, and TIME-WAIT answers with an ACK anyway",
        observed, ok, values, missing=c["no_replay"] or f"{observed}, but {ev.capture_hole('server')}")


def _a_timer(ev: Evidence, c: dict) -> Check:
    """4. the 2MSL timer starts again: Linux reschedules TIME-WAIT on any ACK-bearing old segment
    (tcp_timewait_state_process(): inet_twsk_reschedule() before the ACK goes out), so every
    sock_diag sample asked after that ACK shows the new deadline; each bounds it
    (Evidence.due_times), the narrowest tells. No sample there: inconclusive, naming the gap."""
    replay, ack = c["replay"], c["ack"]
    tol_ms = 2 * 1000 / (ev.hz or 100) + 20
    expected = (f"after the replay (it carries ACK) the TIME-WAIT timer is due {LINUX_TIMEWAIT_MS} ms after it "
                f"(+- {tol_ms:.0f} ms), not {int(TW_WAIT_S * 1000)} ms earlier as before")
    if c["no_replay"]:
        return Check.inconclusive("time-wait-timer-restarted", CITE_TW, expected, c["no_replay"])
    key = f"{ev.addresses['server']}:{PORT}-{ev.addresses['client']}:{PORT_A}"
    start, until = (ack.t if ack else replay.t), replay.t + 0.4
    bounds = []
    for ts, k, st, _tm, exp_ms, _r, *rest in ev.timer_samples.get("server", []):
        answered = rest[0] if rest else ts
        if k == key and st == "TIME_WAIT" and start < ts and answered < until:
            bounds.append((ts + exp_ms / 1000, answered + exp_ms / 1000))
    want = replay.t + LINUX_TIMEWAIT_MS / 1000
    off = None
    if bounds:
        # without the ACK to time it by, a sample may precede the replay's processing: skip those
        after = [b for b in bounds if b[1] >= want - tol_ms / 1000] or bounds
        lo, hi = min(after, key=lambda b: b[1] - b[0])
        off = round((min(max(want, lo), hi) - replay.t) * 1000)
    gap = ev.sampler_gap_ms(start, until)
    return Check.judged(
        "time-wait-timer-restarted", CITE_TW, expected,
        f"sock_diag: {len(bounds)} samples after the replay; timer due {off} ms after it",
        None if off is None else abs(off - LINUX_TIMEWAIT_MS) <= tol_ms,
        {"due_after_replay_ms": off, "tolerance_ms": tol_ms, "samples": len(bounds), "sampler_gap_ms": gap},
        missing=(f"no sock_diag sample of the TIME-WAIT between {'its ACK of' if ack else ''} the replay and "
                 f"0.4 s after it" + (f" (the sampler's longest gap there: {gap} ms)" if gap else "")))


def _a_peers_rst(ev: Evidence, c: dict) -> Check:
    """5. the closed client answers TIME-WAIT's ACK with RST; tcp_rfc1337 decides what it does.
    A sampler that was not polling when the RST should have killed the TIME-WAIT cannot say
    how soon it went: inconclusive."""
    ack, rfc1337, tw_after = c["ack"], c["rfc1337"], c["tw_after"]
    rst = next((s for s in _from(ev, "client", "client", sport=PORT_A, flag="RST")
                if ack is not None and s.t >= ack.t - 0.001), None)
    rst_at_srv = next((s for s in _from(ev, "server", "client", sport=PORT_A, flag="RST")
                       if rst is not None and s.same_wire(rst)), None)
    gone = _gone_at(ev, "server", PORT, PORT_A, ack.t if ack else float("inf"))
    missing = c["no_replay"]
    if missing:
        ok = None
    elif ack is None:
        ok, missing = _missing(ev, "server"), f"no ACK from TIME-WAIT in server.pcap ({ev.capture_hole('server')})"
    elif rst is None or rst_at_srv is None:
        host = "client" if rst is None else "server"
        ok, missing = _missing(ev, host), f"the client's RST is not in {host}.pcap ({ev.capture_hole(host)})"
    elif rst.seq != ack.ack:
        ok = False
    elif rfc1337:
        ok = tw_after == "TIME_WAIT" and gone is None
    elif gone is not None and gone - rst_at_srv.t < 0.1:
        ok = True
    else:
        gap = ev.sampler_gap_ms(rst_at_srv.t, rst_at_srv.t + 0.1)
        ok = False if tw_after == "TIME_WAIT" or not gap else None
        missing = f"the sampler was not polling when the RST arrived (a gap of {gap} ms): how soon TIME-WAIT went is unseen"
    if rfc1337:
        expected = ("the client has no socket and answers TIME-WAIT's ACK with RST (seq = that ACK's ack); "
                    "tcp_rfc1337=1: the server's TIME-WAIT ignores it and stays")
    else:
        expected = ("the client answers TIME-WAIT's ACK with RST (seq = that ACK's ack); tcp_rfc1337=0: the "
                    "RST kills the TIME-WAIT at once (RFC 1337 assassination, see tw-assassination)")
    return Check.judged(
        "time-wait-and-the-peers-rst", CITE_RFC1337, expected,
        (f"client.pcap: RST {'seq ' + str(rst.seq) if rst else 'not sent'} (ACK's ack {ack.ack if ack else '-'}), "
         f"{'reached' if rst_at_srv else 'did not reach'} the server; server tcp_rfc1337={int(rfc1337)}; "
         f"sock_diag: TIME-WAIT " + (f"gone {_ms(gone - rst_at_srv.t)} ms after the RST" if gone and rst_at_srv
                                     else "gone" if gone else f"still {tw_after} 0.5 s later")),
        ok, {"rst_seq": rst and rst.seq, "ack_ack": ack and ack.ack, "tcp_rfc1337": int(rfc1337),
             "state_after": tw_after, "gone_after_rst_ms": _ms(gone - rst_at_srv.t) if gone and rst_at_srv else None},
        missing=missing)
