"""The scenarios whose own Linux sysctl, or whose reading through sock_diag, once kept a gVisor host
out, run with it (netns backend, runsc): each judged from the wire, and what the verdict rests on
read again straight from the pcaps."""

from __future__ import annotations

import pytest

from lab import gvisor
from lab.packets import read_pcap
from lab.runner import run_scenario

from .test_gvisor import late_fin_answers, nothing_of, outcomes, values

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(gvisor.runsc_missing() is not None, reason="runsc is not installed")]


def run(name: str, tmp_path, **stacks: str) -> dict:
    report = run_scenario(name, backend="netns", artifacts=tmp_path, options={"stacks": stacks})
    assert report["stacks"] == {**{"client": "linux", "router": "linux", "server": "linux"}, **stacks}
    return report


def test_time_wait_duration_measures_gvisors_two_lifetimes(tmp_path):
    """TIME-WAIT and the orphaned FIN-WAIT-2 both 60 s: straight from the router's capture, each
    4-tuple's first RST to a probe comes 59.5-61.5 s after its lifetime began."""
    from scenarios.time_wait_duration import PORT

    report = run("time-wait-duration", tmp_path, client="gvisor")
    assert report["verdict"] == "pass", outcomes(report)
    assert report["options"]["sysctls_not_set"] == ["client:net.ipv4.tcp_fin_timeout=5"]
    segs = read_pcap(tmp_path / "router-client.pcap")
    for key, begun in (("key_a", lambda s, p: s.sport == p and s.dport == PORT and s.flags == "ACK"),
                       ("key_b", lambda s, p: s.sport == PORT and s.dport == p and s.flags == "ACK")):
        port = report["facts"][key][1]
        fin = next(s for s in segs if s.has("FIN") and port in (s.sport, s.dport))
        start = next(s.t for s in segs if s.t > fin.t and begun(s, port))
        first_rst = next(s.t for s in segs if s.sport == port and s.has("RST"))
        assert 59.5 <= first_rst - start <= 61.5, (key, first_rst - start)
    nothing_of(report["lab_id"])


def test_tw_buckets_gvisor_keeps_every_time_wait(tmp_path):
    """No bucket limit: straight from client.pcap, all five late FINs are ACKed, none reset."""
    from scenarios.tw_buckets import PORT

    report = run("tw-buckets", tmp_path, client="gvisor")
    assert report["verdict"] == "pass", outcomes(report)
    answers = late_fin_answers(tmp_path / "client.pcap", PORT, report["facts"]["client_ports"])
    assert answers == ["ACK"] * 5, answers
    nothing_of(report["lab_id"])


def test_five_tuple_gvisor_refuses_a_connect_onto_its_time_wait(tmp_path):
    """Part B: straight from client.pcap, no SYN leaves the bound port for the same server port
    after the old connection's FIN (connect() failed before sending one)."""
    from scenarios.five_tuple import BOUND, PORT

    report = run("five-tuple", tmp_path, client="gvisor")
    assert report["verdict"] == "pass", outcomes(report)
    assert values(report, "connect-same-4-tuple-b-same")["error"] == "EADDRINUSE"
    segs = [s for s in read_pcap(tmp_path / "client.pcap") if s.sport == BOUND and s.dport == PORT]
    fin = next(s for s in segs if s.has("FIN"))
    assert not [s for s in segs if s.has("SYN") and s.t > fin.t]
    nothing_of(report["lab_id"])


def test_retransmitted_fin_gvisors_orphan_backs_off(tmp_path):
    """A gVisor server's orphan: straight from server.pcap, six FINs of one sequence number, the
    last gap at least twice the second."""
    from scenarios.retransmitted_fin import PORT

    report = run("retransmitted-fin", tmp_path, server="gvisor")
    assert report["verdict"] == "pass", outcomes(report)
    fins = [s for s in read_pcap(tmp_path / "server.pcap") if s.sport == PORT and s.has("FIN")]
    gaps = [b.t - a.t for a, b in zip(fins, fins[1:])]
    assert len(fins) >= 6 and len({f.seq for f in fins}) == 1 and gaps[-1] >= 2 * gaps[1], gaps
    assert outcomes(report)["give-up-is-silent"] == "n/a"
    nothing_of(report["lab_id"])


def test_tw_reopen_gvisors_time_wait_drops_a_syn_below_rcv_nxt(tmp_path):
    """Straight from the router's capture facing the server: seq-behind's SYNs get no answer at all
    from gVisor; seq-ahead's first SYN gets a SYN-ACK."""
    from scenarios.tw_reopen import CASES, PORT

    report = run("tw-reopen", tmp_path, server="gvisor")
    assert report["verdict"] == "pass", outcomes(report)
    segs = read_pcap(tmp_path / "router-server.pcap")
    for case, answered in (("seq-ahead", True), ("seq-behind", False)):
        port = CASES[case]
        fin = next(s for s in segs if s.sport == port and s.dport == PORT and s.has("FIN"))
        syns = [s for s in segs if s.sport == port and s.flags == "SYN" and s.t > fin.t]
        replies = [s for s in segs if s.sport == PORT and s.dport == port and s.t > syns[0].t
                   and s.seq != fin.ack]          # not the server's answer to a probe (seq = its snd_nxt)
        assert syns and bool(replies) == answered, (case, len(syns), [r.flags for r in replies])
    nothing_of(report["lab_id"])


def test_wandering_duplicates_gvisor_accepts_the_old_segment(tmp_path):
    """gVisor has no PAWS: straight from server.pcap, its answer to the replayed old segment ACKs
    the segment's end, and the application read the old bytes; the rest passes."""
    report = run("wandering-duplicates", tmp_path, server="gvisor")
    got = outcomes(report)
    if got["paws-rejects-old-segment"] == "n/a":   # a busy machine: the transfer did not outrun the ISN clock;
        assert "outrun" in report["facts"]["b"]["why_not"] and "fail" not in got.values(), got   # said so
        return
    assert {n for n, o in got.items() if o == "fail"} == {"paws-rejects-old-segment",
                                                           "application-reads-only-new-bytes"}, got
    b = report["facts"]["b"]
    segs = read_pcap(tmp_path / "server.pcap")
    replay = next(s for s in segs if s.seq == b["old_seq"] and s.length > 0 and s.t >= b["injected_at"] - 0.01)
    answer = next(s for s in segs if s.src == replay.dst and s.t > replay.t and s.has("ACK"))
    assert answer.ack == (replay.seq + replay.length) % (1 << 32)
    assert "OLD-" in b["server_read_tail_text"][:8]
    nothing_of(report["lab_id"])
