"""lab.wire: what the router's captures say about a FIN while a run goes on (for a gVisor host,
whose sockets sock_diag cannot see)."""

from __future__ import annotations

from lab.packets import Segment
from lab.wire import acks_of_fin, fin_acked, fin_answered, fins

SERVER, CLIENT = "10.77.2.10", "10.77.1.10"


def seg(t: float, sport: int, dport: int, flags: str, seq: int, ack: int) -> Segment:
    src, dst = (SERVER, CLIENT) if sport == 5000 else (CLIENT, SERVER)
    return Segment(t=t, src=src, sport=sport, dst=dst, dport=dport, flags=flags, seq=seq, ack=ack,
                   length=0, tsval=None, tsecr=None)


FIN = seg(1.0, 5000, 40000, "FIN,ACK", 100, 500)


def test_a_fin_is_answered_by_its_ack_or_a_rst_after_it():
    assert not fin_answered([FIN], 5000, 40000)
    assert fin_answered([FIN, seg(1.1, 40000, 5000, "ACK", 500, 101)], 5000, 40000)
    assert fin_answered([FIN, seg(1.1, 40000, 5000, "RST", 500, 0)], 5000, 40000)


def test_what_is_not_an_answer():
    wrong_ack = seg(1.1, 40000, 5000, "ACK", 500, 100)           # acknowledges less than the FIN
    rst_before = seg(0.9, 40000, 5000, "RST", 500, 0)            # a RST older than the FIN
    other_port = seg(1.1, 40001, 5000, "RST", 500, 0)
    assert not fin_answered([FIN, wrong_ack, rst_before, other_port], 5000, 40000)
    assert not fin_answered([seg(1.1, 40000, 5000, "ACK", 500, 101)], 5000, 40000)   # no FIN at all


def test_fin_helpers_agree_with_fin_answered():
    ack = seg(1.1, 40000, 5000, "ACK", 500, 101)
    assert fins([FIN, ack], 5000, 40000) == [FIN]
    assert acks_of_fin([FIN, ack], FIN, after=FIN.t) == [ack]


def test_fin_acked_reads_the_router_capture(monkeypatch):
    import lab.wire as wire

    monkeypatch.setattr(wire, "at_router", lambda lab, facing: [FIN, seg(1.1, 40000, 5000, "ACK", 500, 101)])
    assert fin_acked(None, "server", 5000, 40000)
    assert not fin_acked(None, "server", 40000, 5000)
