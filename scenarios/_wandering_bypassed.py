"""wandering-duplicates, the judgement of part (b)/(c): TIME-WAIT bypassed (SO_LINGER 0), the
same 4-tuple reopened, and the old incarnation's segment replayed into the new one. Not a
scenario (the leading underscore keeps it out of the catalog); scenarios/wandering_duplicates.py
describes the rules and runs the steps."""

from __future__ import annotations

import errno

from lab.evidence import Evidence
from lab.verdict import INCONCLUSIVE, NOT_APPLICABLE, Check

from ._wandering_judge import _arrival, _from, _missing, _ms, _no_replay, _states_between, _ts_on, _unjudged
from .wandering_duplicates import (CITE_ACCEPT, CITE_BYPASS, CITE_DELIVER, CITE_ISN, CITE_PAWS, ISN_PER_S, M32,
                                   MARK, PORT_B, TAIL)

def check_bypassed(ev: Evidence) -> list[Check]:
    b = ev.facts.get("b", {})
    syns = [s for s in _from(ev, "client", "client", sport=PORT_B, flag="SYN") if not s.has("ACK")]
    copied = (b.get("copied") or [None])[0]
    replay = _arrival(ev, copied, b.get("injected_at"))
    ctx = {"b": b, "syns": syns, "synacks": _from(ev, "server", "server", dport=PORT_B, flag="SYN"),
           "copied": copied, "replay": replay, "premise": _b_premise(b),
           "no_replay": _no_replay(ev, b, copied, replay)}
    return [_b_bypassed(ev, ctx), _b_isn_clock(ev, ctx), _b_in_window(ev, ctx), _b_server_tcp(ev, ctx),
            _b_application(ev, ctx)]


def _b_premise(b: dict) -> tuple[str, str]:
    """Whether part (b)/(c) set up its replay: ("", "") when it did, else the outcome the checks
    of the replay take and why. The old connection not outrunning the ISN clock (a slow or busy
    machine) leaves the rule nothing to act on; the router's copies missing is the lab's hole."""
    if not (b.get("reconnect") or {}).get("ok"):
        return NOT_APPLICABLE, (f"no new incarnation: connect() from port {PORT_B} again failed "
                                "(time-wait-bypassed judges that)")
    if b.get("aligned"):
        return "", ""
    why = b.get("why_not") or "the router's copies are missing"
    return (NOT_APPLICABLE if "old_seq" in b else INCONCLUSIVE), f"the replay was not set up: {why}"


def _b_bypassed(ev: Evidence, c: dict) -> Check:
    """1. TIME-WAIT bypassed: the old incarnation ends with RST, the same 4-tuple opens again.
    That no TIME_WAIT was seen proves something only if the sampler polled in between."""
    b, syns = c["b"], c["syns"]
    t1 = syns[0].t if syns else None
    t2 = syns[-1].t if len(syns) >= 2 else None
    rst = next((s for s in _from(ev, "client", "client", sport=PORT_B, flag="RST")
                if t1 and t2 and t1 < s.t < t2), None)
    seen = sorted({st for h in ("client", "server")
                   for st in _states_between(ev, h, PORT_B, t1 or 0, t2 or 0)}) if t1 and t2 else []
    reset = b.get("server_recv_after_abort") or {}
    blind = ev.sampler_blind_ms(rst.t, t2) if rst and t2 else None
    missing = ""
    if not (b.get("reconnect") or {}).get("ok") or reset.get("errno") != errno.ECONNRESET or "TIME_WAIT" in seen:
        ok = False
    elif rst is None or t2 is None:
        ok = _missing(ev, "client")
        missing = f"client.pcap lacks the RST or a SYN ({ev.capture_hole('client')})"
    elif blind:
        ok, missing = None, (f"no sock_diag poll between the RST and the new SYN (a gap of {blind} ms): a "
                             "TIME_WAIT there could not have been seen")
    else:
        ok = True
    return Check.judged(
        "time-wait-bypassed", CITE_BYPASS,
        "close() with SO_LINGER 0 sends RST (server recv: ECONNRESET); neither host holds TIME_WAIT; "
        f"connect() from port {PORT_B} to the same server succeeds (no TIME-WAIT holds the 4-tuple): "
        "a new incarnation",
        (f"client.pcap: {len(syns)} SYNs from :{PORT_B}, RST {'seq ' + str(rst.seq) if rst else 'none'} between them; "
         f"server recv after it: {reset.get('error')}; sock_diag states of the 4-tuple in between: {seen or 'none'}; "
         f"second SYN {_ms(t2 - rst.t) if rst and t2 else '-'} ms after the RST"),
        ok, {"syns": len(syns), "rst_seq": rst and rst.seq, "server_recv_errno": reset.get("errno"),
             "states_between": seen, "reopen_after_rst_ms": _ms(t2 - rst.t) if rst and t2 else None},
        missing=missing)


def _b_isn_clock(ev: Evidence, c: dict) -> Check:
    """2. the ISN clock: both new ISNs lie 15.625 M/s x the time between the SYNs above the old ones."""
    syns, synacks = c["syns"], c["synacks"]
    expected = "new ISN - old ISN = 15.625 M x seconds between the two SYNs (+- 1 ms of clock), for both ends"
    if c["premise"][0] and not (c["b"].get("reconnect") or {}).get("ok"):
        return Check.not_applicable("isn-clock", CITE_ISN, expected, c["premise"][1])
    rows, ok = [], True
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
    observed = "; ".join(f"{r['who']}: ISN {r['old_isn']} -> {r['new_isn']} (+{r['isn_delta']}) in {r['seconds']} s "
                         f"= {r['per_second']}/s, {r['error']:+d} off" for r in rows) or "SYNs not captured"
    # both connects succeeded, so both SYNs and SYN-ACKs were sent: one missing is the capture's hole
    whole = len(syns) >= 2 and len(synacks) >= 2
    return Check.judged(
        "isn-clock", CITE_ISN, expected, observed, (ok if whole else (False if not ok else None)),
        {"isns": rows, "tolerance": ISN_PER_S * 0.001},
        missing=(f"{observed}; client.pcap has {len(syns)} of the 2 SYNs, server.pcap {len(synacks)} of the 2 "
                 f"SYN-ACKs" + (f" ({ev.capture_hole('client', 'server')})" if ev.capture_hole('client', 'server') else "")))


def _b_in_window(ev: Evidence, c: dict) -> Check:
    """3. the copied segment of the old incarnation falls exactly at the new connection's RCV.NXT."""
    b, syns, synacks, copied, replay = c["b"], c["syns"], c["synacks"], c["copied"], c["replay"]
    expected = ("the replayed old segment's seq = the new connection's RCV.NXT and its ack = the server's SND.UNA "
                "(both directions of the old connection outran the ISN clock)")
    if c["premise"][0]:
        return _unjudged(*c["premise"][:1], "old-segment-in-new-window", CITE_ACCEPT, expected, c["premise"][1])
    x1 = syns[0].seq if syns else None
    x2 = syns[-1].seq if len(syns) >= 2 else None
    y2 = synacks[-1].seq if len(synacks) >= 2 else None
    sent_c, sent_s = b.get("client_sent_before"), b.get("server_sent_before")
    rcv_nxt = (x2 + 1 + sent_c) % M32 if x2 is not None and sent_c is not None else None
    snd_una = (y2 + 1 + sent_s) % M32 if y2 is not None and sent_s is not None else None
    old_off = (copied["seq"] - x1 - 1) % M32 if copied and x1 is not None else None
    if c["no_replay"] or rcv_nxt is None or snd_una is None:
        ok = None
    else:
        ok = replay.seq == rcv_nxt and replay.ack == snd_una
    observed = (f"old segment: byte {old_off} of the old client stream, seq {copied['seq'] if copied else '-'} "
                f"ack {copied['ack'] if copied else '-'}; new ISNs client {x2} server {y2}; after the client sent "
                f"{sent_c} B and the server {sent_s} B: RCV.NXT {rcv_nxt}, SND.UNA {snd_una}; replay "
                f"{'arrived' if replay else 'not seen'} at the server")
    return Check.judged(
        "old-segment-in-new-window", CITE_ACCEPT, expected, observed, ok,
        {"old_seq": copied and copied["seq"], "old_ack": copied and copied["ack"],
         "old_stream_offset": old_off, "new_client_isn": x2, "new_server_isn": y2,
         "client_bytes_new": sent_c, "server_bytes_new": sent_s, "rcv_nxt": rcv_nxt,
         "snd_una": snd_una, "aligned": b.get("aligned"), "old_phase_s": b.get("old_phase_s")},
        missing=c["no_replay"] or f"{observed}: the new SYNs are not all captured ({ev.capture_hole() or 'no drops'})")


def _b_server_tcp(ev: Evidence, c: dict) -> Check:
    """4. what the server's TCP does with it: PAWS drop (timestamps) or acceptance (none)."""
    b, replay, ts_on = c["b"], c["replay"], _ts_on(ev)
    if ts_on:
        name, cite = "paws-rejects-old-segment", CITE_PAWS
        expected = ("timestamps on: the replay's TSval is older than TS.Recent: PAWS drops it (PAWSEstab +1) "
                    "and the server re-ACKs RCV.NXT (ack = the replay's seq)")
    else:
        name, cite = "old-segment-accepted", CITE_ACCEPT
        expected = ("timestamps off: nothing marks the segment as old: it is accepted, the server ACKs "
                    "seq + length, no PAWS counter moves")
    if c["premise"][0]:
        return _unjudged(c["premise"][0], name, cite, expected, c["premise"][1])
    counters = b.get("server_counters", {})
    paws = counters.get("TcpExtPAWSEstab", 0) + counters.get("TcpExtPAWSOldAck", 0)
    answer = None
    if replay is not None:
        answer = next((s for s in _from(ev, "server", "server", dport=PORT_B)
                       if s.t >= replay.t and s.has("ACK") and s.t - replay.t < 0.04), None)
    t2 = c["syns"][-1].t if len(c["syns"]) >= 2 else 0
    recent = [s.tsval for s in _from(ev, "server", "client", sport=PORT_B)
              if replay is not None and t2 < s.t < replay.t and s.tsval is not None]
    ts_recent = recent[-1] if recent else None
    if c["no_replay"]:
        ok = None
    elif answer is None or (ts_on and replay.tsval is not None and ts_recent is None):
        ok = _missing(ev, "server")
    elif ts_on:
        ok = (replay.tsval is not None and replay.tsval < ts_recent and paws >= 1 and answer.ack == replay.seq)
    else:
        ok = replay.tsval is None and paws == 0 and answer.ack == (replay.seq + replay.length) % M32
    observed = (f"replay TSval {replay.tsval if replay else '-'}, TS.Recent (client's last TSval) {ts_recent}; "
                f"server PAWSEstab/PAWSOldAck +{paws}; server's answer: "
                + (f"{answer.flags} ack {answer.ack} (replay seq {replay.seq}, +{replay.length} = "
                   f"{(replay.seq + replay.length) % M32})" if answer and replay else "none"))
    return Check.judged(
        name, cite, expected, observed, ok,
        {"timestamps": ts_on, "replay_tsval": replay and replay.tsval, "ts_recent": ts_recent,
         "PAWSEstab": counters.get("TcpExtPAWSEstab", 0), "PAWSOldAck": counters.get("TcpExtPAWSOldAck", 0),
         "answer_ack": answer and answer.ack, "replay_seq": replay and replay.seq,
         "replay_len": replay and replay.length},
        missing=c["no_replay"] or f"{observed}, but {ev.capture_hole('server')}")


def _b_application(ev: Evidence, c: dict) -> Check:
    """5. what the server's application reads next."""
    b, replay, ts_on = c["b"], c["replay"], _ts_on(ev)
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
    cite = CITE_DELIVER if not ts_on else CITE_PAWS
    if c["premise"][0]:
        return _unjudged(c["premise"][0], name, cite, expected, c["premise"][1])
    return Check.judged(
        name, cite, expected,
        (f"client sent {sent_tail} B \"NEW-...\"; server's recv() got {tail.get('len')} B: {quote!r} "
         f"(markers OLD- x{marks.get('OLD-')}, NEW- x{marks.get('NEW-')}); replay payload "
         f"{payload[:24]!r}... ({len(payload)} B)"
         + (f"; bytes {len(payload)}- read: {text[len(payload):len(payload) + 16]!r}..." if payload and not ts_on else "")),
        None if c["no_replay"] else ok,
        {"client_sent": sent_tail, "server_read": tail.get("len"), "old_markers": marks.get("OLD-"),
         "new_markers": marks.get("NEW-"), "replay_payload_len": len(payload),
         "read_head": text[:64], "old_bytes_delivered": text[:len(payload)] if not ts_on and ok else ""},
        missing=c["no_replay"])
