"""wandering-duplicates, the judgement: what the checks share (Seen: each part's replayed segment
and connection, read once), then the checks of part (a), the replayed old duplicate that reaches
TIME-WAIT, in the order of its timeline (part (b)/(c): scenarios/_wandering_bypassed.py). Not a
scenario: the leading underscore keeps it out of the catalog; scenarios/wandering_duplicates.py
describes the rules and runs the steps.

    t      who      step                                   wire                        state
    0      client   connect :40006 -> :5006, send 600 B    data -> (router copies it)
    0.1    server   close() first; client close()          <- FIN, FIN ->              server TIME_WAIT
    0.4    router   replay the copied data segment         data -> server
    0.4    server   (kernel) TIME-WAIT answers              <- ACK (PAWSTimewait +1 with TS)
    0.4    client   (kernel) no socket: RST                 RST ->                     rfc1337=1: TW stays
    0.4    server   accept() on the listener: nothing                                  timer back to 60 s
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import wire
from lab.kernel import TCP_TIMEWAIT_LEN_MS
from lab.verdict import INCONCLUSIVE, NOT_APPLICABLE, Check

from ._paws import PAWS_COUNTER_WHY, counted, without_timestamps
from ._wandering_plan import M32, PORT, PORT_A, PORT_B, TW_WAIT_S
from ._wandering_wire import UNSEEN

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.evidence import Evidence
    from lab.packets import Segment

CITE_TW = ("reference R-TW-OLD-SEG, R-TW-ACK-RESTART; Linux "
           "tcp_timewait_state_process(): out-of-window segment -> TCP_TW_ACK, inet_twsk_reschedule(60 s) "
           "when it carries ACK; RFC 9293 §3.10.7.4 (an unacceptable segment is answered with an ACK)")
CITE_PAWS_TW = ("RFC 7323 §5.3 R1 / reference R-TW-PAWS: a segment with TSval older than TS.Recent fails PAWS; in "
                "TIME-WAIT Linux counts PAWSTimewait and still answers with an ACK (tcp_timewait_state_process())")
CITE_NOAPP = ("RFC 9293 §3.10.7.4 (TIME-WAIT: an unacceptable segment gets an ACK; segment text is ignored) and "
              "§3.4.1 (no segment of an earlier incarnation may be used); the socket FAQ: SO_REUSEADDR reuses the "
              "port, the 4-tuple stays in TIME-WAIT")
CITE_RFC1337 = ("reference R-TW-RST: a RST with seq == rcv_nxt kills TIME-WAIT when tcp_rfc1337=0 and is "
                "ignored when 1 (RFC 1337 fix F1); Linux tcp_timewait_state_process()")


def timestamps_on(ev: Evidence) -> bool:
    """Timestamps are negotiated only when both ends have them on (tcp_timestamps != 0)."""
    return all(ev.sysctl(h, "net.ipv4.tcp_timestamps", "1") != "0" for h in ("client", "server"))


def rfc1337_on(ev: Evidence) -> bool:
    """The server's TIME-WAIT ignores a RST: tcp_rfc1337 on Linux; gVisor always (RFC 1337 fix 1)."""
    return wire.stack_of(ev, "server") == "gvisor" or ev.sysctl("server", "net.ipv4.tcp_rfc1337", "0") != "0"


# -- what the checks share ------------------------------------------------------------------------

@dataclass(frozen=True)
class Replay:
    """One part's replayed old segment: the router's copy of it, the copy server.pcap saw arrive
    after the injection, and why that is missing ("" when it arrived). The replay is the lab's
    own doing (copied by the router, injected from it): without it the checks have no evidence,
    which is never the server's failure."""

    facts: dict                    # the part's facts, as run() returned them
    copied: dict | None            # the router's copy (Segment.to_json())
    seg: Segment | None
    missing: str

    @classmethod
    def of(cls, ev: Evidence, conn: Conn, facts: dict) -> Replay:
        copied = (facts.get("copied") or [None])[0]
        after = facts.get("injected_at")
        seg = None
        if copied and after is not None:
            seg = next((s for s in conn.segments("server", sender="client", after=after - 0.001)
                        if (s.seq, s.ack, s.length, s.tsval)
                        == (copied["seq"], copied["ack"], copied["length"], copied["tsval"])), None)
        if seg is not None:
            missing = ""
        elif not copied:
            missing = "the router copied no data segment of the old connection, so nothing was replayed"
        elif after is None:
            missing = "the copied segment was never injected"
        else:
            hole = ev.capture_hole("server")
            missing = "the replayed segment is not in server.pcap" + (f" ({hole})" if hole else "")
        return cls(facts, copied, seg, missing)


@dataclass(frozen=True)
class Absorbed:
    """Part (a): the old duplicate that reaches the server's TIME-WAIT, and its answer."""

    conn: Conn
    replay: Replay
    ack: Segment | None            # TIME-WAIT's ACK of it (server.pcap, within 50 ms)
    cli_fin: Segment | None        # the FINs in server.pcap
    srv_fin: Segment | None
    tw_before: str | None          # the 4-tuple's state in the server before the replay, and after
    tw_after: str | None

    @classmethod
    def of(cls, ev: Evidence) -> Absorbed:
        a = ev.facts.get("a", {})
        conn = ev.conn(PORT_A, PORT)
        replay = Replay.of(ev, conn, a)
        answers = [s for s in conn.segments("server", sender="server", after=replay.seg.t)
                   if s.has("ACK") and not s.has("RST")] if replay.seg else []
        return cls(conn, replay, answers[0] if answers and answers[0].t - replay.seg.t < 0.05 else None,
                   next(iter(conn.segments("server", sender="client", flag="FIN")), None),
                   next(iter(conn.segments("server", sender="server", flag="FIN")), None),
                   (a.get("tw_before") or {}).get("state"), (a.get("tw_after") or {}).get("state"))


@dataclass(frozen=True)
class Bypassed:
    """Part (b)/(c): both incarnations of one 4-tuple and the old one's segment replayed."""

    conn: Conn                     # the 4-tuple both incarnations share
    replay: Replay
    syns: list[Segment]            # the client's SYNs (client.pcap): the old incarnation's, then the new
    synacks: list[Segment]         # the server's SYN-ACKs (server.pcap)
    premise: tuple[str, str]       # ("", "") when the replay was set up, else the outcome and why not

    @classmethod
    def of(cls, ev: Evidence) -> Bypassed:
        b = ev.facts.get("b", {})
        conn = ev.conn(PORT_B, PORT)
        return cls(conn, Replay.of(ev, conn, b),
                   [s for s in conn.segments("client", sender="client", flag="SYN") if not s.has("ACK")],
                   conn.segments("server", sender="server", flag="SYN"), _premise(b))

    @property
    def reopened(self) -> bool:
        return bool((self.replay.facts.get("reconnect") or {}).get("ok"))


def _premise(b: dict) -> tuple[str, str]:
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


@dataclass(frozen=True)
class Seen:
    ev: Evidence
    ts_on: bool                    # timestamps negotiated (both ends have them on)
    rfc1337: bool                  # the server's tcp_rfc1337
    a: Absorbed
    b: Bypassed

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        return cls(ev, timestamps_on(ev), rfc1337_on(ev), Absorbed.of(ev), Bypassed.of(ev))

    def missing(self, host: str) -> bool | None:
        """A segment the kernel should have sent is not in *host*'s capture: a failure when that
        capture is complete (False), not judged when tcpdump dropped packets there (None)."""
        return None if self.ev.capture_hole(host) else False


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def unjudged(kind: str, name: str, cite: str, expected: str, why: str) -> Check:
    make = Check.not_applicable if kind == NOT_APPLICABLE else Check.inconclusive
    return make(name, cite, expected, why)


# -- (a) TIME-WAIT absorbs the old duplicate: the checks, in the timeline's order -----------------

def time_wait_acks_old_duplicate(s: Seen) -> Check:
    """TIME-WAIT answers the old duplicate with an ACK of its own RCV.NXT."""
    a, copied = s.a, s.a.replay.copied
    replay, ack, srv_fin, cli_fin = a.replay.seg, a.ack, a.srv_fin, a.cli_fin
    want_seq = (srv_fin.seq + 1) % M32 if srv_fin else None
    want_ack = (cli_fin.seq + cli_fin.length + 1) % M32 if cli_fin else None
    if a.replay.missing or a.tw_before == UNSEEN:
        ok = None
    elif a.tw_before != "TIME_WAIT":
        ok = False
    elif ack is None or srv_fin is None or cli_fin is None:
        ok = s.missing("server")
    else:
        ok = ack.seq == want_seq and ack.ack == want_ack and ack.length == 0
    observed = (f"server.pcap: replay of seq {copied['seq'] if copied else '-'} "
                f"({copied['length'] if copied else 0} B) "
                f"{'arrived' if replay else 'never arrived'} while {'the probe' if _probed(a) else 'sock_diag'} showed "
                f"{a.tw_before}; "
                + (f"answer {ms(ack.t - replay.t)} ms later: {ack.flags} seq {ack.seq} ack {ack.ack} "
                   f"(want seq {want_seq} ack {want_ack})" if ack else "no ACK within 50 ms"))
    return Check.judged(
        "time-wait-acks-old-duplicate", CITE_TW,
        "the replayed data segment reaches the server's TIME-WAIT socket, which answers with an ACK "
        "(seq = its FIN's seq + 1, ack = the client's FIN + 1) and delivers nothing",
        observed, ok,
        {"replay_seq": copied and copied["seq"], "replay_len": copied and copied["length"],
         "state_before": a.tw_before, "ack_seq": ack and ack.seq, "ack_ack": ack and ack.ack,
         "want_seq": want_seq, "want_ack": want_ack,
         "answer_after_ms": ms(ack.t - replay.t) if ack and replay else None},
        missing=a.replay.missing or f"{observed}, but {s.ev.capture_hole('server')}")


def no_application_sees_it(s: Seen) -> Check:
    """No application sees it: the listener on that port accepts nothing."""
    acc = s.a.replay.facts.get("accept_after") or {}
    ok = None if s.a.replay.missing else (not acc.get("ok") and acc.get("errno") == errno.ETIMEDOUT)
    return Check.judged(
        "no-application-sees-it", CITE_NOAPP,
        "accept() on the server's listener (same port) times out: the old bytes reach no application",
        (f"accept() after the replay: {acc.get('error') or 'a connection!'} "
         f"({acc.get('message') or acc.get('result')}); the 4-tuple's socket afterwards: {s.a.tw_after or 'none'}"),
        ok, {"accept_errno": acc.get("errno"), "accept_error": acc.get("error"), "state_after": s.a.tw_after},
        missing=s.a.replay.missing)


def paws_in_time_wait(s: Seen) -> Check:
    """PAWS: with timestamps the old TSval is older than the FIN's; TIME-WAIT still ACKs.
    Without timestamps PAWS has nothing to act on: not applicable (PAWSTimewait +0 proves
    nothing), unless something says timestamps were used after all."""
    a, ev = s.a, s.ev
    replay, ack, cli_fin = a.replay.seg, a.ack, a.cli_fin
    counter, paws = counted(a.replay.facts, a.replay.facts.get("server_counters", {}))
    tsv, fin_tsv = (replay.tsval if replay else None), (cli_fin.tsval if cli_fin else None)
    observed = (f"replay TSval {tsv}, client FIN TSval {fin_tsv}; server {counter} +{paws} around the replay; "
                f"ACK {'sent' if ack else 'not sent'}")
    values = {"replay_tsval": tsv, "fin_tsval": fin_tsv, "PAWSTimewait": paws, "paws_counter": counter,
              "timestamps": s.ts_on}
    if not s.ts_on:
        return without_timestamps("paws-in-time-wait", CITE_PAWS_TW, ev, (tsv, fin_tsv), paws, observed, values,
                                  "TIME-WAIT's ACK of the replay is time-wait-acks-old-duplicate's")
    if a.replay.missing:
        ok = None
    elif tsv is None or fin_tsv is None or ack is None:
        ok = False if tsv is None and replay is not None else s.missing("server")
    else:
        ok = tsv < fin_tsv and paws >= 1
    return Check.judged(
        "paws-in-time-wait", CITE_PAWS_TW,
        "timestamps on: the replay's TSval is older than TS.Recent (the client's FIN): "
        f"{counter} +1 ({PAWS_COUNTER_WHY}), and TIME-WAIT answers with an ACK anyway",
        observed, ok, values, missing=a.replay.missing or f"{observed}, but {ev.capture_hole('server')}")


def time_wait_timer_restarted(s: Seen) -> Check:
    """The 2MSL timer starts again: Linux reschedules TIME-WAIT on any ACK-bearing old segment
    (tcp_timewait_state_process(): inet_twsk_reschedule() before the ACK goes out), so every
    sock_diag sample asked after that ACK shows the new deadline; each bounds it (TimerSample.due),
    the narrowest tells. No sample there: inconclusive, naming the gap."""
    a, ev = s.a, s.ev
    replay, ack = a.replay.seg, a.ack
    tol_ms = 2 * 1000 / (ev.hz or 100) + 20
    expected = (f"after the replay (it carries ACK) the TIME-WAIT timer is due {TCP_TIMEWAIT_LEN_MS} ms after it "
                f"(+- {tol_ms:.0f} ms), not {int(TW_WAIT_S * 1000)} ms earlier as before")
    if a.replay.missing:
        return Check.inconclusive("time-wait-timer-restarted", CITE_TW, expected, a.replay.missing)
    start, until = (ack.t if ack else replay.t), replay.t + 0.4
    bounds = [x.due for x in a.conn.samples("server", state="TIME_WAIT") if start < x.asked and x.answered < until]
    want = replay.t + TCP_TIMEWAIT_LEN_MS / 1000
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
        None if off is None else abs(off - TCP_TIMEWAIT_LEN_MS) <= tol_ms,
        {"due_after_replay_ms": off, "tolerance_ms": tol_ms, "samples": len(bounds), "sampler_gap_ms": gap},
        missing=(f"no sock_diag sample of the TIME-WAIT between {'its ACK of' if ack else ''} the replay and "
                 f"0.4 s after it" + (f" (the sampler's longest gap there: {gap} ms)" if gap else "")))


def _rst_outcome(s: Seen, rst: Segment | None, rst_at_srv: Segment | None, gone: float | None
                 ) -> tuple[bool | None, str]:
    """time-wait-and-the-peers-rst's outcome, and what is missing when there is none."""
    a, ev = s.a, s.ev
    if a.replay.missing:
        return None, a.replay.missing
    if a.ack is None:
        return s.missing("server"), f"no ACK from TIME-WAIT in server.pcap ({ev.capture_hole('server')})"
    if rst is None or rst_at_srv is None:
        host = "client" if rst is None else "server"
        return s.missing(host), f"the client's RST is not in {host}.pcap ({ev.capture_hole(host)})"
    if rst.seq != a.ack.ack:
        return False, ""
    if a.tw_after == UNSEEN:
        return None, f"the TIME-WAIT after the RST is {UNSEEN}"
    if s.rfc1337:
        return a.tw_after == "TIME_WAIT" and gone is None, ""
    if gone is not None and gone - rst_at_srv.t < 0.1:
        return True, ""
    gap = ev.sampler_gap_ms(rst_at_srv.t, rst_at_srv.t + 0.1)
    return (False if a.tw_after == "TIME_WAIT" or not gap else None), (
        f"the sampler was not polling when the RST arrived (a gap of {gap} ms): how soon TIME-WAIT went is unseen")


def _probed(a: Absorbed) -> bool:
    return bool((a.replay.facts.get("tw_after") or {}).get("probe"))


def time_wait_and_the_peers_rst(s: Seen) -> Check:
    """The closed client answers TIME-WAIT's ACK with RST; tcp_rfc1337 decides what it does.
    A sampler that was not polling when the RST should have killed the TIME-WAIT cannot say
    how soon it went: inconclusive."""
    a, ack, tw_after = s.a, s.a.ack, s.a.tw_after
    rst = next((r for r in a.conn.segments("client", sender="client", flag="RST", after=ack.t - 0.001)), None) \
        if ack is not None else None
    rst_at_srv = a.conn.arrived(rst, "server") if rst is not None else None
    gone = a.conn.gone_at("server", after=ack.t) if ack is not None else None
    ok, missing = _rst_outcome(s, rst, rst_at_srv, gone)
    if s.rfc1337:
        expected = ("the client has no socket and answers TIME-WAIT's ACK with RST (seq = that ACK's ack); "
                    + ("gVisor's TIME-WAIT drops every RST (RFC 1337 fix 1) and stays" if wire.stack_of(s.ev, "server")
                       == "gvisor" else "tcp_rfc1337=1: the server's TIME-WAIT ignores it and stays"))
    else:
        expected = ("the client answers TIME-WAIT's ACK with RST (seq = that ACK's ack); tcp_rfc1337=0: the "
                    "RST kills the TIME-WAIT at once (RFC 1337 assassination, see tw-assassination)")
    return Check.judged(
        "time-wait-and-the-peers-rst", CITE_RFC1337, expected,
        (f"client.pcap: RST {'seq ' + str(rst.seq) if rst else 'not sent'} (ACK's ack {ack.ack if ack else '-'}), "
         f"{'reached' if rst_at_srv else 'did not reach'} the server; server "
         f"{'gVisor (RFC 1337 fix 1)' if _probed(a) else f'tcp_rfc1337={int(s.rfc1337)}'}; "
         f"{'the probe after it' if _probed(a) else 'sock_diag'}: TIME-WAIT "
         + (f"gone {ms(gone - rst_at_srv.t)} ms after the RST" if gone and rst_at_srv
            else "gone" if gone else f"still {tw_after} 0.5 s later")),
        ok, {"rst_seq": rst and rst.seq, "ack_ack": ack and ack.ack, "tcp_rfc1337": int(s.rfc1337),
             "state_after": tw_after, "gone_after_rst_ms": ms(gone - rst_at_srv.t) if gone and rst_at_srv else None},
        missing=missing)
