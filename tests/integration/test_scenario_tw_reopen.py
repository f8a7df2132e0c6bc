"""tw-reopen on both backends, with timestamps (both reopenings accepted by TIME-WAIT, ISN = old
snd_nxt + 65537) and with client tcp_timestamps=0 (the SYN below rcv_nxt is refused: ACK, RST,
fresh ISN); the decisive numbers are read again from server.pcap."""

from __future__ import annotations

import pytest

from lab.core import parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios.tw_reopen import CASES, PORT

pytestmark = pytest.mark.integration


def story(segs: list[Segment], lport: int) -> dict:
    """server.pcap, 4-tuple client:lport: the old rcv_nxt and snd_nxt, the first reopening SYN and
    the server's first answer to it."""
    t = [s for s in segs if (s.sport, s.dport) in ((lport, PORT), (PORT, lport))]
    cfin = next(s for s in t if s.sport == lport and s.has("FIN"))
    sfin = next(s for s in t if s.sport == PORT and s.has("FIN"))
    syn = next(s for s in t if s.sport == lport and s.flags == "SYN" and s.t > cfin.t)
    answer = next(s for s in t if s.sport == PORT and s.t >= syn.t)
    gap = (syn.seq - (cfin.seq + 1)) & 0xFFFFFFFF
    return {"sfin": sfin, "syn": syn, "answer": answer, "ahead": 0 < gap < 1 << 31,
            "isn_step": (answer.seq - (sfin.seq + 1)) & 0xFFFFFFFF, "rcv_nxt": (cfin.seq + 1) & 0xFFFFFFFF,
            "segments": t}


def test_tw_reopen_default(backend, tmp_path):
    report = run_scenario("tw-reopen", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    at_server = read_pcap(tmp_path / "server.pcap")
    ahead, behind = story(at_server, CASES["seq-ahead"]), story(at_server, CASES["seq-behind"])
    assert ahead["ahead"] and not behind["ahead"]
    for s in (ahead, behind):                    # both accepted by TIME-WAIT, ISN = old snd_nxt + 65537
        assert s["answer"].flags == "SYN,ACK" and s["isn_step"] == 65537
    assert behind["syn"].tsval is not None       # the timestamp decided it
    # condition (2): the injected duplicate was accepted, reset, and the server kept nothing
    dup = story(at_server, CASES["old-duplicate"])
    assert dup["answer"].flags == "SYN,ACK" and dup["isn_step"] == 65537
    assert any(s.has("RST") and s.sport == CASES["old-duplicate"] for s in dup["segments"])
    facts = report["facts"]["cases"]["old-duplicate"]
    assert [s["state"] for s in facts["server_before_inject"]] == ["TIME_WAIT"]
    assert facts["server_after"] == []


def test_tw_reopen_without_timestamps(backend, tmp_path):
    report = run_scenario("tw-reopen", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl("client:net.ipv4.tcp_timestamps=0")])
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    at_server = read_pcap(tmp_path / "server.pcap")
    ahead, behind = story(at_server, CASES["seq-ahead"]), story(at_server, CASES["seq-behind"])
    assert ahead["syn"].tsval is None and behind["syn"].tsval is None
    assert ahead["answer"].flags == "SYN,ACK" and ahead["isn_step"] == 65537     # seq decides
    # the opposite outcome: below rcv_nxt and no timestamp -> TIME-WAIT answers with an ACK
    assert behind["answer"].flags == "ACK" and behind["answer"].ack == behind["rcv_nxt"]
    rst = next(s for s in behind["segments"] if s.has("RST") and s.t >= behind["answer"].t)
    assert rst.seq == behind["answer"].ack
    again = [s for s in behind["segments"] if s.flags == "SYN,ACK" and s.t > rst.t]
    assert again and (again[0].seq - (behind["sfin"].seq + 1)) & 0xFFFFFFFF != 65537
    assert report["facts"]["cases"]["seq-behind"]["reconnect_ok"] is True
