"""lossy-link, reading the captures: every segment each end sent, whether it arrived, and per
connection the story of its close (scenarios/lossy_link.py runs the closes and describes the
rules; scenarios/_lossy_checks.py judges them). Not a scenario: the leading underscore keeps it
out of the catalog.

A segment the sender's capture holds and the receiver's lacks was lost on the link
(lab.packets.match_arrivals). For each close: the client's FIN(s), the server's FIN(s), and the
client's answers to the server's FIN - an ACK of it or a RST; the first answer is the final one of
the handshake, and the close ends at the server when an answer arrives there.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from lab.kernel import TCP_RTO_MIN_MS, TCP_TIMEWAIT_LEN_S
from lab.packets import Segment, match_arrivals

from ._lossy_early_reset import early_reset

if TYPE_CHECKING:
    from lab.evidence import Evidence

__all__ = ["Close", "Direction", "GROUPS", "SIGMAS", "Seen", "decided", "distribution", "gave_up", "groups",
           "in_window", "no_time_wait", "still_going"]

PORT = 5010
SIGMAS = 4.0                    # the observed loss share must lie within p +- 4 sigma (binomial):
                                # a correct link fails this about once in 16 000 runs per direction
# the close-time groups (plain keys in report.json) and what the terminal calls them
GROUPS = {"all": "all", "clean": "no segment of the close lost", "final_ack_lost": "final ACK lost",
          "other_losses": "other losses only"}


def no_time_wait(ev: Evidence) -> bool:
    """The client's tcp_max_tw_buckets is 0: no TIME-WAIT, and the RST rules apply."""
    return int(ev.sysctl("client", "net.ipv4.tcp_max_tw_buckets", "1")) == 0


@dataclass(frozen=True)
class Direction:
    """One direction of the link while it lost packets: segments sent, and lost on the way."""

    sent: int
    lost: int


@dataclass(frozen=True)
class Close:
    """One connection's close as the two captures show it. Without a FIN from both ends in the
    captures only the counts are known (fins_seen False): the rest keeps its defaults."""

    port: int                              # the client's port
    client_fins: int
    client_fins_lost: int
    server_fins: int
    server_fins_lost: int
    segments_lost: int                     # of either end, in the whole connection
    final_acks: int = 0                    # the client's ACKs of the server's FIN
    last_ack_t: float | None = None        # when the client sent the last of them (TIME-WAIT's last restart)
    final_acks_lost: int = 0
    final_answer: str | None = None        # the client's first answer to the server's FIN: ACK or RST
    final_ack_lost: bool = False           # ... and it was lost
    rsts_lost: int = 0
    later_answers: str = ""                # the answers after it: A (ACK) or R (RST) each
    rst_in_window_at: float | None = None  # a RST from the server at the client's RCV.NXT, arrived then
    fins_reaching_client: int = 0
    fins_unanswered: int = 0               # server FINs that reached the client after it had answered one
                                           # (its TIME-WAIT held), not answered before the next
    first_fins_unanswered: int = 0         # ... before it had answered any: lost in the hand-over to
                                           # the orphan's mini-socket (see _unanswered)
    rst_from_client: int = 0
    reset_early: bool = False              # a RST of the client's ended it before any server FIN reached
                                           # the client (seen from gVisor in FIN-WAIT-2: never lawful)
    early_reset: dict | None = None        # ... when, and the server's segment that provoked it
    rst_after_expiry: float | None = None  # a RST answering a segment this many s after the client's
                                           # mini-socket's last restart: its timer had run out
    ended_by: str | None = None            # the answer whose arrival ended the server's side: ACK or RST
    ended_by_reack: bool = False           # ... an ACK other than the first answer: TIME-WAIT's re-ACK
    ended_by_late_answer: bool = False     # ... a re-ACK of a late segment (no FIN came again before it)
    close_ms: float | None = None          # the client's first FIN -> the server's end
    server_wait_ms: float | None = None    # the server's first FIN -> its end
    complete: bool = False                 # the server's end was seen
    fins_seen: bool = False

    def to_json(self) -> dict:
        """As report.json keeps it: the counts alone when no FIN pair was seen."""
        names = [f.name for f in fields(self) if f.name != "fins_seen"]
        if not self.fins_seen:
            names = names[:6] + ["complete"]
        return {n: getattr(self, n) for n in names}

    @classmethod
    def of(cls, port: int, out_c: list[Segment], out_s: list[Segment], arrived: dict,
           fw2_s: float | None = None) -> Close:
        """From what the client (*out_c*) and the server (*out_s*) sent on this connection, and
        when each arrived (match_arrivals: None for lost); *fw2_s*: the shortest an orphaned
        FIN-WAIT-2 lives here (None: not known)."""
        c_fins = [s for s in out_c if s.has("FIN")]
        s_fins = [s for s in out_s if s.has("FIN")]
        counts = dict(port=port, client_fins=len(c_fins), client_fins_lost=_lost(c_fins, arrived),
                      server_fins=len(s_fins), server_fins_lost=_lost(s_fins, arrived),
                      segments_lost=_lost(out_c + out_s, arrived))
        if not c_fins or not s_fins:
            return cls(**counts)
        fins_in, acks, rsts, answers = _answers(out_c, s_fins, arrived)
        unanswered, first_unanswered = _unanswered(fins_in, answers)
        ends = [(arrived[id(a)], a) for a in answers if arrived[id(a)] is not None]
        early = [(t, r) for r in out_c if r.has("RST") and r not in rsts and (t := arrived[id(r)]) is not None]
        end_t, end_seg = min(ends or early, key=lambda e: e[0]) if ends or early else (None, None)
        first = answers[0] if answers else None
        reack = end_seg is not None and not end_seg.has("RST") and end_seg is not first
        reset = early_reset(out_c, out_s, fins_in, arrived)
        return cls(
            **counts, final_acks=len(acks), final_acks_lost=_lost(acks, arrived),
            last_ack_t=acks[-1].t if acks else None,
            final_answer=None if first is None else ("RST" if first.has("RST") else "ACK"),
            # reset first, the client had no final ACK to lose: what answered the FIN was the RST
            # for no connection
            final_ack_lost=first is not None and arrived[id(first)] is None and reset is None,
            rsts_lost=_lost(rsts, arrived),
            later_answers="".join("R" if a.has("RST") else "A" for a in answers[1:]),
            rst_in_window_at=_rst_in_window(out_s, acks, arrived),
            fins_reaching_client=len(fins_in), fins_unanswered=unanswered, first_fins_unanswered=first_unanswered,
            rst_from_client=len(rsts) + len(early), reset_early=reset is not None,
            early_reset=reset,
            rst_after_expiry=_expired(c_fins[0], out_s, rsts, fins_in, arrived, fw2_s),
            ended_by=None if end_seg is None else ("RST" if end_seg.has("RST") else "ACK"),
            ended_by_reack=reack,
            # TIME-WAIT answers any unacceptable segment with an ACK (RFC 9293 3.10.7.4), not only a
            # retransmitted FIN: a late copy of the server's earlier ACK drew one in a busy VM
            ended_by_late_answer=reack and sum(t <= end_seg.t for t in fins_in) < 2,
            close_ms=None if end_t is None else round((end_t - c_fins[0].t) * 1000, 2),
            server_wait_ms=None if end_t is None else round((end_t - s_fins[0].t) * 1000, 2),
            complete=end_t is not None, fins_seen=True)


def _lost(segs: list[Segment], arrived: dict) -> int:
    return sum(arrived[id(s)] is None for s in segs)


def _answers(out_c: list[Segment], s_fins: list[Segment], arrived: dict):
    """Each FIN of the server's that reached the client (client.pcap's clock), and what the client
    answered from the first on: an ACK of it, or a RST (a RST answering a segment with ACK carries
    seq = that ack, no ACK bit: RFC 9293 §3.10.7.1). Returns (arrival times, ACKs, RSTs, both in
    time order)."""
    fin_end = (s_fins[0].seq + s_fins[0].length + 1) & 0xFFFFFFFF
    fins_in = sorted(t for s in s_fins if (t := arrived[id(s)]) is not None)
    first_in = fins_in[0] if fins_in else math.inf
    acks = [s for s in out_c if s.has("ACK") and not s.has("RST") and s.ack == fin_end and s.t >= first_in]
    rsts = [s for s in out_c if s.has("RST") and s.t >= first_in]
    return fins_in, acks, rsts, sorted(acks + rsts, key=lambda s: s.t)


def _expired(c_fin: Segment, out_s: list[Segment], rsts: list[Segment], fins_in: list[float], arrived: dict,
             fw2_s: float | None) -> float | None:
    """Did the client's first RST answer a segment that came after its mini-socket's timer had
    run out? Then nothing was left to answer it but the RST for no connection (R-CLOSED-RST).
    In TIME-WAIT every segment of the server's restarts the 60 s timer (R-TW-FIN,
    R-TW-ACK-RESTART), so the gap that counts is from the last arrival before it; the timer never
    fires early (R-TIMER-WHEEL). Before any FIN came the orphan sat in FIN-WAIT-2 from the ACK of
    its FIN, and nothing restarts that timer (R-FIN-TIMEOUT). Taking the last arrival as the
    restart can only shorten the gap: a lawful RST may be missed, an unlawful one never excused.
    Returns the gap in s, or None."""
    if not rsts:
        return None
    ins = sorted(t for s in out_s if (t := arrived[id(s)]) is not None and t <= rsts[0].t)
    if len(ins) < 2:
        return None
    answered, before = ins[-1], ins[-2]
    if fins_in and fins_in[0] <= before:
        gap, life = answered - before, TCP_TIMEWAIT_LEN_S
    else:
        fin_end = (c_fin.seq + c_fin.length + 1) & 0xFFFFFFFF
        acked = [t for s in out_s if s.ack == fin_end and not s.has("FIN") and (t := arrived[id(s)]) is not None]
        gap, life = (answered - min(acked), fw2_s) if acked else (0.0, None)
    return round(gap, 3) if life is not None and gap >= life else None


def fw2_floor_s(fin_timeout: str | None) -> float | None:
    """The shortest an orphaned FIN-WAIT-2 lives: tcp_fin_time() = max(tcp_fin_timeout, 3.5 x RTO)
    with RTO >= TCP_RTO_MIN (R-FIN-TIMEOUT); above 60 s a timer runs first (R-FW2-OVER60), and
    None says not known."""
    try:
        t = float(fin_timeout or "")
    except ValueError:
        return None
    return max(t, 3.5 * TCP_RTO_MIN_MS / 1000) if t <= TCP_TIMEWAIT_LEN_S else None


def _unanswered(fins_in: list[float], answers: list[Segment]) -> tuple[int, int]:
    """FINs that reached the client with no answer before the next one reached it, counted in
    one pass as (those that came once the client had answered a FIN - its TIME-WAIT, or with no
    TIME-WAIT its RST, was there to answer -, those that came before it had answered any). Such a
    first FIN met the orphan on its way from FIN_WAIT1 to its FIN-WAIT-2 mini-socket: in Debian
    12's kernel on containers (IPv6, TCG) one came 0.2 ms after the ACK of the client's FIN and got
    no answer; Linux's own comment on that hand-over (net/ipv4/tcp_input.c
    tcp_rcv_state_process(), TCP_FIN_WAIT1) says "We still can lose it now ... but it is really
    marginal case". The server's retransmission then meets TIME-WAIT, which must answer it."""
    after, before = 0, 0
    for i, t in enumerate(fins_in):
        nxt = fins_in[i + 1] if i + 1 < len(fins_in) else math.inf
        if not any(t <= a.t < nxt for a in answers):
            if any(a.t < t for a in answers):
                after += 1
            else:
                before += 1
    return after, before


def _rst_in_window(out_s: list[Segment], acks: list[Segment], arrived: dict) -> float | None:
    """When a RST from the server reached the client after its ACKs began, with seq = the client's
    RCV.NXT (the ack its ACKs carry): in window for a TIME-WAIT."""
    return next((t for r in out_s if r.has("RST") and acks and r.seq == acks[-1].ack
                 and (t := arrived[id(r)]) is not None and t >= acks[0].t), None)


@dataclass(frozen=True)
class Seen:
    """The run as the checks read it: each direction's losses, each connection's close, the link
    the qdiscs reported, and what the captures may miss."""

    ev: Evidence
    directions: dict[str, Direction]       # "client->server", "server->client"
    conns: list[Close]                     # in the order of the client's ports
    links: dict                            # the qdiscs read back (facts["links"])
    n: int                                 # closes asked for
    want_rst: bool                         # no TIME-WAIT: the RST rules apply
    hole: str                              # Evidence.capture_hole() of client and server

    @property
    def lost(self) -> list[Close]:
        """The closes whose final answer to the server's FIN was lost."""
        return [c for c in self.conns if c.final_ack_lost]

    @classmethod
    def of(cls, ev: Evidence) -> Seen:
        cli, srv = ev.addresses["client"], ev.addresses["server"]
        pkts = _before_probing(ev)
        sent_c = [s for s in pkts["client"] if s.src == cli and s.dst == srv]
        sent_s = [s for s in pkts["server"] if s.src == srv and s.dst == cli]
        arrived = match_arrivals(sent_c, [s for s in pkts["server"] if s.src == cli])
        arrived.update(match_arrivals(sent_s, [s for s in pkts["client"] if s.src == srv]))
        # each connection's segments, by the client's port: one pass over each direction (asking
        # ev.conn(port).segments() for each of 100 connections reads each capture 100 times)
        by_c, by_s = _by_port(sent_c, lambda s: s.sport), _by_port(sent_s, lambda s: s.dport)
        fw2 = fw2_floor_s(ev.sysctl("client", "net.ipv4.tcp_fin_timeout", None))
        conns = [Close.of(p, by_c.get(p, []), by_s.get(p, []), arrived, fw2) for p in ev.facts.get("client_ports", [])]
        return cls(ev, _directions(ev, pkts, sent_c, sent_s, arrived), conns, ev.facts.get("links", {}),
                   ev.facts.get("closes", len(conns)), no_time_wait(ev), ev.capture_hole("client", "server"))


def still_going(s: Seen) -> list[int]:
    """The closes whose end the run did not watch: a gVisor server's FIN still unanswered when its
    watch ended (lossy_link._wait_for_the_server), not ended in the captures either, and with
    nothing unlawful in what they show so far - every server FIN that reached the client answered
    as the client's state requires (an ACK while TIME-WAIT lives, a RST without it or once it ran
    out), no early reset. A client that stops answering leaves the server retransmitting too: that
    close is judged (and fails), never excused as still going."""
    watched_out = set((s.ev.facts.get("watch_ended") or {}).get("ports", ()))
    return [x.port for x in s.conns if x.port in watched_out and not x.complete and _lawful_so_far(s, x)]


def _lawful_so_far(s: Seen, x: Close) -> bool:
    answers = (x.final_answer or "")[:1] + x.later_answers          # "A"/"R" for each answer, in order
    if x.fins_unanswered or x.first_fins_unanswered > 1 or x.reset_early:   # one first FIN may meet the hand-over
        return False
    if s.want_rst:
        return "A" not in answers[1:]               # after the first answer nothing is left to ACK
    return "R" not in answers or x.rst_after_expiry is not None


def decided(s: Seen) -> tuple[Seen, list[int]]:
    """*s* without the closes still going (still_going), and their ports: the heart checks judge the
    closes whose end was seen, and a pass over them with some still going is only inconclusive."""
    going = still_going(s)
    return (replace(s, conns=[x for x in s.conns if x.port not in going]) if going else s), going


def gave_up(s: Seen) -> dict[int, dict]:
    """The closes that ended by the server giving up: no answer to any of its FINs reached it, and
    sock_diag saw its orphaned LAST-ACK go (LAST_ACK -> gone) no sooner than its orphan budget
    after its first retransmission (tcp_orphan_retries, scenarios/_orphan_budget.py, less 1 s
    for the capture's and the sampler's clocks): {client port: what was seen}. RFC 1122
    4.2.3.5 lets a sender close the connection once R2 is spent; a give-up before the budget is
    not one, and stays unexplained."""
    from ._orphan_budget import budget_of

    srv = s.ev.addresses.get("server")
    _, retries, budget_ms = budget_of(s.ev.sysctl("server", "net.ipv4.tcp_orphan_retries"))
    gone = {e.data["socket"].get("dport"): e.t for e in s.ev.timeline
            if e.host == "server" and e.kind == "state" and e.data.get("previous") == "LAST_ACK"
            and (e.data.get("socket") or {}).get("state") == "GONE"}
    out = {}
    for c in s.conns:
        if c.complete or not c.fins_seen or c.port not in gone:
            continue
        fins = sorted(x.t for x in s.ev.packets.get("server", [])
                      if x.src == srv and x.dport == c.port and x.has("FIN"))
        if len(fins) >= 2 and gone[c.port] - fins[1] >= budget_ms / 1000 - 1:
            out[c.port] = {"retransmissions": len(fins) - 1, "budget_s": budget_ms / 1000, "retry_until": retries,
                           "after_first_retransmission_s": round(gone[c.port] - fins[1], 3)}
    return out


def _before_probing(ev: Evidence) -> dict[str, list[Segment]]:
    """Each end's capture up to the router's probes of a gVisor client (facts["client_probes"]):
    the forged probes and the client's answers, which the router drops, are not the closes'."""
    cut = (ev.facts.get("client_probes") or {}).get("started")
    return {h: [s for s in ev.packets.get(h, []) if cut is None or s.t < cut] for h in ("client", "server")}


def _by_port(segs: list[Segment], port) -> dict[int, list[Segment]]:
    out: dict[int, list[Segment]] = {}
    for s in segs:
        out.setdefault(port(s), []).append(s)
    return out


def _directions(ev: Evidence, pkts: dict[str, list[Segment]], sent_c: list[Segment], sent_s: list[Segment],
                arrived: dict) -> dict[str, Direction]:
    """The link loses packets from loss_from on; a segment sent after the receiver's capture saw
    its last packet (of *pkts*, _before_probing's) cannot be judged."""
    loss_from = ev.facts.get("loss_from", 0.0)
    end_c = max((s.t for s in pkts["client"]), default=0.0)
    end_s = max((s.t for s in pkts["server"]), default=0.0)
    out = {}
    for key, segs, end in (("client->server", sent_c, end_s), ("server->client", sent_s, end_c)):
        judged = [s for s in segs if loss_from <= s.t < end]
        out[key] = Direction(len(judged), _lost(judged, arrived))
    return out


def in_window(lost: int, sent: int, p: float) -> tuple[bool, float, float]:
    """Is *lost* of *sent* within p x sent +- SIGMAS binomial standard deviations (+- 1 for counting)?"""
    mean = p * sent
    half = SIGMAS * math.sqrt(sent * p * (1 - p)) + 1
    return mean - half <= lost <= mean + half, max(0.0, mean - half), mean + half


# -- close times ----------------------------------------------------------------------------------

def groups(conns: list[Close]) -> dict[str, list[Close]]:
    """The completed closes by what they lost (GROUPS' keys)."""
    done = [c for c in conns if c.complete]
    clean = [c for c in done if c.client_fins_lost == c.server_fins_lost == c.final_acks_lost == c.rsts_lost == 0]
    return {"all": done, "clean": clean, "final_ack_lost": [c for c in done if c.final_ack_lost],
            "other_losses": [c for c in done if c not in clean and not c.final_ack_lost]}


def distribution(conns: list[Close]) -> dict[str, dict[str, dict]]:
    """Close times (client's first FIN to the server's end, and the server's own wait from its
    first FIN) by group: n, min, p50, p90, max."""
    return {k: {"close_ms": _stats([c.close_ms for c in v]), "server_wait_ms": _stats([c.server_wait_ms for c in v])}
            for k, v in groups(conns).items()}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    q = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
    return {"n": len(v), "min": v[0], "p50": round(statistics.median(v), 2), "p90": round(q[8], 2),
            "max": v[-1]}
