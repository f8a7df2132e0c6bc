"""who-closes-first's simultaneous close: what each end's capture proves of CLOSING, and the case's
three checks, judged on who_closes_first.Seen. Not a scenario (the leading underscore keeps it out
of the catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.records import SocketInfo
from lab.verdict import Check

if TYPE_CHECKING:
    from lab.connection import Conn
    from lab.packets import Segment

    from .who_closes_first import Seen

__all__ = ["SIMULTANEOUS_CHECKS", "simultaneous_never_ran", "closing_proof", "first_fin", "other_end",
           "CITE_NO_ROOM"]

CITE_CROSS = ("RFC 9293 §3.6 (simultaneous close, figure 13 / RFC 793 figure 14): both sides send FIN "
              "before receiving the other's")
CITE_CLOSING = ("RFC 9293 §3.10.7.4 (RFC 793 p.75): FIN-WAIT-1, a FIN arrives whose ACK does not cover "
                "our FIN: enter CLOSING; Linux tcp_fin() (FIN_WAIT1 -> TCP_CLOSING)")
CITE_BOTH_TW = ("RFC 9293 §3.10.7.4 (RFC 793 p.73): CLOSING, the ACK of our FIN arrives: enter TIME-WAIT; "
                "Linux tcp_rcv_state_process() TCP_CLOSING -> tcp_time_wait(); reference R-CLOSING")
CITE_NO_ROOM = ("reference R-MAX-TW-BUCKETS: tcp_max_tw_buckets exhausted: the closing socket skips TIME-WAIT "
                "(tcp_time_wait(), TCPTimeWaitOverflow)")


def other_end(host: str) -> str:
    return "server" if host == "client" else "client"


def _before(a: int, b: int) -> bool:
    """Sequence-space a < b (RFC 9293 §3.4, mod 2^32)."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def first_fin(conn: Conn, at: str, sender: str) -> Segment | None:
    """*sender*'s first FIN of *conn* in *at*'s capture, or None."""
    return next(iter(conn.segments(at, sender=sender, flag="FIN")), None)


def closing_proof(conn: Conn, me: str) -> dict:
    """From *me*'s capture: my FIN, the peer's FIN arriving while mine was unacknowledged and not
    covering it, my ACK of it, then the ACK of my FIN."""
    peer = other_end(me)
    mine, theirs = first_fin(conn, me, me), first_fin(conn, me, peer)
    out = {"my_fin_seq": mine.seq if mine else None, "my_fin_t": mine.t if mine else None,
           "peer_fin_seq": theirs.seq if theirs else None, "peer_fin_t": theirs.t if theirs else None,
           "peer_fin_ack": theirs.ack if theirs else None}
    if not mine or not theirs:
        out["proved"] = False
        return out
    my_end = (mine.seq + mine.length + 1) & 0xFFFFFFFF
    from_peer = conn.segments(me, sender=peer)
    acked_before = [s for s in from_peer if s.t < theirs.t and s.has("ACK") and not _before(s.ack, my_end)]
    my_ack = next((s for s in conn.segments(me, sender=me, flag="ACK", after=theirs.t)
                   if s.ack == (theirs.seq + theirs.length + 1) & 0xFFFFFFFF), None)
    fin_acked = next((s for s in from_peer if s.t > theirs.t and s.has("ACK")
                      and not _before(s.ack, my_end)), None)
    out.update(sent_before_peer_fin_arrived=mine.t < theirs.t,
               peer_fin_covers_my_fin=not _before(theirs.ack, my_end),
               my_fin_acked_before_peer_fin=bool(acked_before),
               my_ack_of_peer_fin_t=my_ack.t if my_ack else None,
               my_fin_acked_t=fin_acked.t if fin_acked else None)
    out["proved"] = (mine.t < theirs.t and _before(theirs.ack, my_end) and not acked_before
                     and my_ack is not None and fin_acked is not None)
    return out


# -- the checks, in the timeline's order ----------------------------------------------------------

def simultaneous_fins_cross(s: Seen) -> Check:
    """The FINs crossed: each was sent before the other's arrived."""
    proof = s.proof
    crossed = all(p.get("sent_before_peer_fin_arrived") for p in proof.values())
    unseen = any(p["my_fin_seq"] is None or p["peer_fin_seq"] is None for p in proof.values())
    observed = "pcap: " + "; ".join(
        f"{h} sent FIN seq={p['my_fin_seq']} at {s.rel(p['my_fin_t'])}, the peer's FIN arrived at "
        f"{s.rel(p['peer_fin_t'])}" for h, p in proof.items())
    return Check.judged(
        "simultaneous-fins-cross", CITE_CROSS,
        "each end sends its FIN before the other's FIN reaches it", observed,
        None if not crossed and unseen and s.hole else crossed,
        {h: {k: proof[h].get(k) for k in ("my_fin_seq", "my_fin_t", "peer_fin_t")} for h in proof},
        missing=f"{observed}; a FIN is missing from the captures ({s.hole})")


def simultaneous_both_closing(s: Seen) -> Check:
    """Both pass through CLOSING: from the capture, and seen by sock_diag."""
    proof, st = s.proof, s.paths["simultaneous"]
    seen = {h: "CLOSING" in st[h] for h in st}
    proved = {h: proof[h]["proved"] for h in proof}
    ok, missing = _closing_judged(s, seen)
    return Check.judged(
        "simultaneous-both-closing", CITE_CLOSING,
        "each end receives the peer's FIN while its own FIN is unacknowledged (the FIN's ack = its own "
        "FIN's seq, not seq+1), ACKs it and enters CLOSING (sock_diag), until the ACK of its FIN comes",
        "; ".join(
            f"{h}: peer FIN ack={proof[h]['peer_fin_ack']} vs own FIN seq={proof[h]['my_fin_seq']} "
            f"({'does not cover' if not proof[h].get('peer_fin_covers_my_fin') else 'covers'} it), own FIN "
            f"{'already' if proof[h].get('my_fin_acked_before_peer_fin') else 'not yet'} acked, "
            f"capture proof {'holds' if proved[h] else 'fails'}; sock_diag "
            + ("saw CLOSING" if seen[h] else "did not sample CLOSING") for h in proof),
        ok, {"capture": proof, "sock_diag_states": st, "sock_diag_saw_closing": seen}, missing=missing)


def _closing_judged(s: Seen, seen: dict) -> tuple[bool | None, str]:
    """CLOSING, from both captures and sock_diag. A capture proof that fails on segments that are
    there fails; one that lacks segments a dropping capture may have missed cannot judge. Where
    the proof holds and sock_diag never showed CLOSING, the samples of the socket taken while the
    capture says it was CLOSING decide: another state there fails, no sample there (the sampler
    fell behind, or CLOSING was shorter than its pace) cannot judge."""
    proof = s.proof
    lacking = [h for h, p in proof.items() if not p["proved"] and (
        p.get("my_fin_seq") is None or p.get("peer_fin_seq") is None
        or p.get("my_ack_of_peer_fin_t") is None or p.get("my_fin_acked_t") is None)]
    wrong = [h for h, p in proof.items() if not p["proved"] and h not in lacking]
    if wrong or (lacking and not s.hole):
        return False, ""
    if lacking:
        return None, f"the captures lack segments of the close at {lacking} ({s.hole})"
    holes = []
    for h in (h for h in proof if not seen[h]):
        t0, t1 = proof[h]["peer_fin_t"], proof[h]["my_fin_acked_t"]
        # samples are kept while a timer runs: CLOSING's retransmission timer does
        if [x.state for x in s.conns["simultaneous"].samples(h) if x.asked > t0 + 0.001 and x.answered < t1 - 0.001]:
            return False, ""
        gap = s.ev.sampler_gap_ms(t0, t1)
        holes.append(f"no sock_diag sample of the {h}'s socket in the {(t1 - t0) * 1000:.1f} ms its capture "
                     "shows it CLOSING" + (f" (the sampler's longest gap there: {gap} ms)" if gap else ""))
    return (None, "; ".join(holes)) if holes else (True, "")


def simultaneous_both_hold_time_wait(s: Seen) -> Check:
    """Both hold TIME-WAIT (each with room for it)."""
    st = s.paths["simultaneous"]
    want = {h: s.room(h) for h in st}
    got = {h: "TIME_WAIT" in st[h] for h in st}
    after = (s.cases["simultaneous"].get("sockets_after") or {})
    left = {h: [(x.state, x.expires_ms) for x in map(SocketInfo.from_json, after.get(h, []))]
            for h in ("client", "server")}
    return Check(
        "simultaneous-both-hold-time-wait", CITE_BOTH_TW if all(want.values()) else CITE_NO_ROOM,
        "; ".join(f"{h} {'enters TIME_WAIT' if want[h] else 'has no TIME-WAIT room and skips it'}" for h in want),
        "sock_diag: " + "; ".join(f"{h} {' -> '.join(st[h])} (after: {left[h]})" for h in st),
        got == want, {"time_wait": got, "tw_room": want, "sockets_after": left})


def simultaneous_never_ran(s: Seen) -> Check:
    return Check("simultaneous-close", CITE_CROSS, "both ends close at once", "the case never ran", False, {})


SIMULTANEOUS_CHECKS = (simultaneous_fins_cross, simultaneous_both_closing, simultaneous_both_hold_time_wait)
