"""wandering-duplicates, the judgement of part (b)/(c): TIME-WAIT bypassed (SO_LINGER 0), the
same 4-tuple reopened, and the old incarnation's segment replayed into the new one; the checks in
the order of its timeline, on the analysis in scenarios/_wandering_judge.py. Not a scenario (the
leading underscore keeps it out of the catalog); scenarios/wandering_duplicates.py describes the
rules and runs the steps.

    t      who      step                                   wire                        state
    0.95   client   connect :40106 -> :5006 (SO_LINGER 0)   SYN ISN x1, <- SYN-ACK y1
    0.95   both     server sends 12 MB, then client 12 MB   ...                         (~0.05 s)
    1.0    client   send 1000 B "OLD-..."                  data seq x1+1+12M, ack y1+1+12M (copied)
    1.03   client   close(): abort                          RST ->                      no TIME_WAIT
    1.59   client   connect :40106 again, 0.64 s after x1   SYN x2 = x1 + ~10.0M, <- SYN-ACK y2
    1.75   both     server sends m bytes, client n "NEW-"   RCV.NXT = old seq, SND.UNA = old ack
    1.76   router   replay the old segment                  data -> server
    1.76   server   (kernel) (b) PAWS drop, dup ACK | (c) accepted, ACK seq+1000
    1.81   client   send 4000 B "NEW-..."                   server app reads 4000 B:
                                                           (b) all NEW- | (c) 1000 B OLD- + 3000 B NEW-
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import ISN_PER_S
from lab.verdict import Check

from ._wandering_judge import Seen, ms, unjudged
from ._wandering_plan import M32, MARK, PORT_B, TAIL

if TYPE_CHECKING:
    from lab.packets import Segment

CITE_BYPASS = ("SO_LINGER {on, 0}: close() aborts with RST and no TIME-WAIT (RFC 9293 §3.10.4 ABORT; Linux "
               "tcp_close() -> tcp_disconnect(), TCPAbortOnData); the same 4-tuple can be reopened at once")
CITE_ISN = ("reference R-ISN-CLOCK: ISN = SipHash(4-tuple, secret) + (ns clock >> 6), 15.625 M per second "
            "(secure_tcp_seq(), RFC 6528 / RFC 9293 §3.4.1 clock-driven ISN)")
CITE_PAWS = ("RFC 7323 §5.3 R1 (PAWS): TSval < TS.Recent -> not acceptable, send an ACK, drop; Linux "
             "tcp_validate_incoming()/tcp_paws_discard(), counter PAWSEstab; reference R-PAWS")
CITE_ACCEPT = ("RFC 9293 §3.10.7.4 (acceptable: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND; an ACK =< SND.UNA is a "
               "duplicate that 'can be ignored', the text is still processed) and RFC 1337 H1; Linux also wants "
               "SEG.ACK >= SND.UNA - bytes acked (tcp_ack(), RFC 5961 §5.2, since 6.7); tcp_sequence(), "
               "tcp_data_queue(); reference R-RFC5961-ACK, R-WANDERING-DUP")
CITE_DELIVER = ("RFC 1337 §2.2 H1 (old duplicate data accepted) / RFC 9293 §3.4.1 (segments of an earlier "
                "incarnation must not be used): the hazard 2 MSL of TIME-WAIT prevents; the application cannot "
                "tell (socket FAQ: a restarted server may receive unexpected data from an old incarnation)")


def time_wait_bypassed(s: Seen) -> Check:
    """TIME-WAIT bypassed: the old incarnation ends with RST, the same 4-tuple opens again.
    That no TIME_WAIT was seen proves something only if the sampler polled in between."""
    b, ev = s.b, s.ev
    t1 = b.syns[0].t if b.syns else None
    t2 = b.syns[-1].t if len(b.syns) >= 2 else None
    rst = next((r for r in b.conn.segments("client", sender="client", flag="RST")
                if t1 and t2 and t1 < r.t < t2), None)
    seen = sorted({e.state for h in ("client", "server")
                   for e in b.conn.states(h) if t1 <= e.t <= t2}) if t1 and t2 else []
    reset = b.replay.facts.get("server_recv_after_abort") or {}
    blind = ev.sampler_blind_ms(rst.t, t2) if rst and t2 else None
    missing = ""
    if not b.reopened or reset.get("errno") != errno.ECONNRESET or "TIME_WAIT" in seen:
        ok = False
    elif rst is None or t2 is None:
        ok = s.missing("client")
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
        (f"client.pcap: {len(b.syns)} SYNs from :{PORT_B}, RST {'seq ' + str(rst.seq) if rst else 'none'} between "
         f"them; server recv after it: {reset.get('error')}; sock_diag states of the 4-tuple in between: "
         f"{seen or 'none'}; second SYN {ms(t2 - rst.t) if rst and t2 else '-'} ms after the RST"),
        ok, {"syns": len(b.syns), "rst_seq": rst and rst.seq, "server_recv_errno": reset.get("errno"),
             "states_between": seen, "reopen_after_rst_ms": ms(t2 - rst.t) if rst and t2 else None},
        missing=missing)


def isn_clock(s: Seen) -> Check:
    """The ISN clock: both new ISNs lie 15.625 M/s x the time between the SYNs above the old ones."""
    b, ev = s.b, s.ev
    expected = "new ISN - old ISN = 15.625 M x seconds between the two SYNs (+- 1 ms of clock), for both ends"
    if b.premise[0] and not b.reopened:
        return Check.not_applicable("isn-clock", CITE_ISN, expected, b.premise[1])
    rows, ok = [], True
    for who, pair in (("client", b.syns), ("server", b.synacks)):
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
    whole = len(b.syns) >= 2 and len(b.synacks) >= 2
    hole = ev.capture_hole("client", "server")
    return Check.judged(
        "isn-clock", CITE_ISN, expected, observed, (ok if whole else (False if not ok else None)),
        {"isns": rows, "tolerance": ISN_PER_S * 0.001},
        missing=(f"{observed}; client.pcap has {len(b.syns)} of the 2 SYNs, server.pcap {len(b.synacks)} of the 2 "
                 f"SYN-ACKs" + (f" ({hole})" if hole else "")))


def old_segment_in_new_window(s: Seen) -> Check:
    """The copied segment of the old incarnation falls exactly at the new connection's RCV.NXT."""
    b, facts, copied, replay = s.b, s.b.replay.facts, s.b.replay.copied, s.b.replay.seg
    expected = ("the replayed old segment's seq = the new connection's RCV.NXT and its ack = the server's SND.UNA "
                "(both directions of the old connection outran the ISN clock)")
    if b.premise[0]:
        return unjudged(b.premise[0], "old-segment-in-new-window", CITE_ACCEPT, expected, b.premise[1])
    x1 = b.syns[0].seq if b.syns else None
    x2 = b.syns[-1].seq if len(b.syns) >= 2 else None
    y2 = b.synacks[-1].seq if len(b.synacks) >= 2 else None
    sent_c, sent_s = facts.get("client_sent_before"), facts.get("server_sent_before")
    rcv_nxt = (x2 + 1 + sent_c) % M32 if x2 is not None and sent_c is not None else None
    snd_una = (y2 + 1 + sent_s) % M32 if y2 is not None and sent_s is not None else None
    old_off = (copied["seq"] - x1 - 1) % M32 if copied and x1 is not None else None
    if b.replay.missing or rcv_nxt is None or snd_una is None:
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
         "snd_una": snd_una, "aligned": facts.get("aligned"), "old_phase_s": facts.get("old_phase_s")},
        missing=b.replay.missing
        or f"{observed}: the new SYNs are not all captured ({s.ev.capture_hole() or 'no drops'})")


# -- what the server's TCP does with the replay: (b) timestamps on, (c) off ------------------------

def _server_tcp(s: Seen) -> tuple[Segment | None, int | None, dict]:
    """The server's answer to the replay (within 40 ms), TS.Recent (the client's last TSval
    before it), and the counters around it."""
    b, replay = s.b, s.b.replay.seg
    if replay is None:
        return None, None, b.replay.facts.get("server_counters", {})
    answer = next((x for x in b.conn.segments("server", sender="server", after=replay.t)
                   if x.has("ACK") and x.t - replay.t < 0.04), None)
    t2 = b.syns[-1].t if len(b.syns) >= 2 else 0
    recent = [x.tsval for x in b.conn.segments("server", sender="client")
              if t2 < x.t < replay.t and x.tsval is not None]
    return answer, recent[-1] if recent else None, b.replay.facts.get("server_counters", {})


def _server_tcp_check(s: Seen, name: str, cite: str, expected: str, ok_if) -> Check:
    """paws-rejects-old-segment or old-segment-accepted: *ok_if*(replay, answer, ts_recent, paws)."""
    b, replay = s.b, s.b.replay.seg
    if b.premise[0]:
        return unjudged(b.premise[0], name, cite, expected, b.premise[1])
    answer, ts_recent, counters = _server_tcp(s)
    # gVisor keeps no PAWS counters in nstat: its answer and what the application reads judge it
    gvisor = wire.stack_of(s.ev, "server") == "gvisor"
    paws = None if gvisor else counters.get("TcpExtPAWSEstab", 0) + counters.get("TcpExtPAWSOldAck", 0)
    if b.replay.missing:
        ok = None
    elif answer is None or (s.ts_on and replay.tsval is not None and ts_recent is None):
        ok = s.missing("server")
    else:
        ok = ok_if(replay, answer, ts_recent, paws)
    observed = (f"replay TSval {replay.tsval if replay else '-'}, TS.Recent (client's last TSval) {ts_recent}; "
                + (f"server PAWSEstab/PAWSOldAck +{paws}; " if paws is not None else
                   "server gVisor (no PAWS counters); ")
                + "server's answer: "
                + (f"{answer.flags} ack {answer.ack} (replay seq {replay.seq}, +{replay.length} = "
                   f"{(replay.seq + replay.length) % M32})" if answer and replay else "none"))
    return Check.judged(
        name, cite, expected, observed, ok,
        {"timestamps": s.ts_on, "replay_tsval": replay and replay.tsval, "ts_recent": ts_recent,
         "PAWSEstab": counters.get("TcpExtPAWSEstab", 0), "PAWSOldAck": counters.get("TcpExtPAWSOldAck", 0),
         "answer_ack": answer and answer.ack, "replay_seq": replay and replay.seq,
         "replay_len": replay and replay.length},
        missing=b.replay.missing or f"{observed}, but {s.ev.capture_hole('server')}")


def paws_rejects_old_segment(s: Seen) -> Check:
    """(b) Timestamps on: PAWS drops the replay and the server re-ACKs RCV.NXT."""
    return _server_tcp_check(
        s, "paws-rejects-old-segment", CITE_PAWS,
        "timestamps on: the replay's TSval is older than TS.Recent: PAWS drops it (Linux counts PAWSEstab +1) "
        "and the server re-ACKs RCV.NXT (ack = the replay's seq)",
        lambda replay, answer, ts_recent, paws: (replay.tsval is not None and replay.tsval < ts_recent
                                                 and (paws is None or paws >= 1) and answer.ack == replay.seq))


def old_segment_accepted(s: Seen) -> Check:
    """(c) Timestamps off: nothing marks the replay as old; the server accepts it."""
    return _server_tcp_check(
        s, "old-segment-accepted", CITE_ACCEPT,
        "timestamps off: nothing marks the segment as old: it is accepted, the server ACKs "
        "seq + length, no PAWS counter moves",
        lambda replay, answer, ts_recent, paws: (replay.tsval is None and paws in (0, None)
                                                 and answer.ack == (replay.seq + replay.length) % M32))


# -- what the server's application reads next ------------------------------------------------------

def _application_check(s: Seen, name: str, cite: str, expected: str, ok: bool) -> Check:
    b, replay = s.b, s.b.replay.seg
    if b.premise[0]:
        return unjudged(b.premise[0], name, cite, expected, b.premise[1])
    tail, text = b.replay.facts.get("server_read_tail") or {}, b.replay.facts.get("server_read_tail_text") or ""
    marks, sent_tail = tail.get("markers") or {}, b.replay.facts.get("client_sent_tail")
    payload = replay.payload if replay else b""
    quote = text[:48] + ("..." if len(text) > 48 else "")
    return Check.judged(
        name, cite, expected,
        (f"client sent {sent_tail} B \"NEW-...\"; server's recv() got {tail.get('len')} B: {quote!r} "
         f"(markers OLD- x{marks.get('OLD-')}, NEW- x{marks.get('NEW-')}); replay payload "
         f"{payload[:24]!r}... ({len(payload)} B)"
         + (f"; bytes {len(payload)}- read: {text[len(payload):len(payload) + 16]!r}..." if payload and not s.ts_on
            else "")),
        None if b.replay.missing else ok,
        {"client_sent": sent_tail, "server_read": tail.get("len"), "old_markers": marks.get("OLD-"),
         "new_markers": marks.get("NEW-"), "replay_payload_len": len(payload),
         "read_head": text[:64], "old_bytes_delivered": text[:len(payload)] if not s.ts_on and ok else ""},
        missing=b.replay.missing)


def application_reads_only_new_bytes(s: Seen) -> Check:
    """(b) The server's application reads the client's new bytes, none of the old incarnation's."""
    tail = s.b.replay.facts.get("server_read_tail") or {}
    marks = tail.get("markers") or {}
    ok = (tail.get("len") == s.b.replay.facts.get("client_sent_tail") == TAIL and marks.get("OLD-") == 0
          and marks.get("NEW-", 0) >= TAIL // 4 - 1)
    return _application_check(
        s, "application-reads-only-new-bytes", CITE_PAWS,
        f"the server's application reads the client's {TAIL} new bytes, none from the old incarnation", ok)


def application_reads_old_bytes(s: Seen) -> Check:
    """(c) The server's application reads the replayed payload in place of the client's first bytes."""
    facts, replay = s.b.replay.facts, s.b.replay.seg
    tail, payload = facts.get("server_read_tail") or {}, replay.payload if replay else b""
    marks = tail.get("markers") or {}
    got = (facts.get("server_read_tail_text") or "").encode(errors="replace")
    ok = (tail.get("len") == facts.get("client_sent_tail") == TAIL and bool(payload)
          and got[:len(payload)] == payload
          and marks.get("OLD-", 0) >= len(payload) // 4 - 1 and b"OLD-" not in got[len(payload):])
    return _application_check(
        s, "application-reads-old-bytes", CITE_DELIVER,
        f"the server's application reads {TAIL} bytes, as many as the client sent, but the first "
        f"{len(payload) or MARK} are the old incarnation's (the replayed payload), not the client's", ok)
