"""wandering-duplicates on both backends: default (timestamps on: (a) TIME-WAIT absorbs, (b) PAWS
drops the old segment) and the flipped case with tcp_timestamps=0 on both hosts ((c): the server
application reads the old incarnation's bytes). Besides the verdict, the story is read again from
the pcaps: the replayed segment is byte for byte the one the client sent in the old incarnation,
it arrives at exactly the new connection's next sequence number, and the server answers it as the
timestamps in force say.
"""

from __future__ import annotations

import pytest

from lab.core import parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios.wandering_duplicates import MARK, OLD_BYTES, PORT, PORT_A, PORT_B, TAIL

pytestmark = pytest.mark.integration

TS_OFF = ["client:net.ipv4.tcp_timestamps=0", "server:net.ipv4.tcp_timestamps=0"]
M32 = 1 << 32


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if not c["passed"]]


def twice(segs: list[Segment], sport: int, length: int) -> tuple[Segment, Segment]:
    """The data segment of *length* bytes from *sport* that the server received twice."""
    found = [s for s in segs if s.sport == sport and s.dport == PORT and s.length == length]
    assert len(found) == 2, [(s.seq, s.length) for s in found]
    first, again = found
    assert (first.seq, first.ack, first.tsval, first.payload) == (again.seq, again.ack, again.tsval, again.payload)
    assert again.t - first.t > 0.1
    return first, again


def reread(report: dict, artifacts, timestamps: bool) -> None:
    at_server, at_client = read_pcap(artifacts / "server.pcap"), read_pcap(artifacts / "client.pcap")
    copies = read_pcap(artifacts / "faults.pcap")

    # (a): the 600-byte segment came back after both FINs; the server's answer is a pure ACK
    first, again = twice(at_server, PORT_A, 600)
    fins = [s for s in at_server if PORT_A in (s.sport, s.dport) and s.has("FIN")]
    # one FIN each way; the client's may come again: in one CI run (docker) its ACK and its FIN
    # reached the server in the same 0.1 ms, the FIN went unanswered (as lossy-link's first FINs
    # met in the orphan's hand-over from FIN_WAIT1 to its FIN-WAIT-2 mini-socket, it seems), and
    # the client sent it again 212 ms later, which the server's TIME-WAIT ACKed
    assert sorted(port for port, _ in {(f.sport, f.seq) for f in fins}) == sorted((PORT, PORT_A)), fins
    assert all(f.t < again.t for f in fins)
    answer = next(s for s in at_server if s.sport == PORT and s.dport == PORT_A and s.t >= again.t)
    client_fin = next(f for f in fins if f.sport == PORT_A)
    assert answer.flags == "ACK" and answer.length == 0 and answer.ack == (client_fin.seq + 1) % M32
    assert report["facts"]["a"]["tw_after"]["state"] == "TIME_WAIT"

    # (b)/(c): the 1000-byte segment of the old incarnation, copied by the router, came back
    first, again = twice(at_server, PORT_B, MARK)
    assert first.payload == b"OLD-" * (MARK // 4)
    assert any(c.prefix == "old-b" and c.seq == first.seq and c.payload == first.payload for c in copies)
    syns = [s for s in at_client if s.sport == PORT_B and s.flags == "SYN"]
    assert len(syns) == 2
    assert (first.seq - syns[0].seq - 1) % M32 == OLD_BYTES          # byte OLD_BYTES of the old stream
    rst = [s for s in at_client if s.sport == PORT_B and s.has("RST") and syns[0].t < s.t < syns[1].t]
    assert rst, "the old incarnation was not aborted with RST"
    # it arrives exactly at the new RCV.NXT: the client's new bytes before it end at its seq
    # (the capture may miss some bulk segments under load - tcpdump drops, the kernel does not -
    # so the captured ones must end at or before it, and the client's own count must meet it)
    new_data = [s for s in at_server if s.sport == PORT_B and s.length and syns[1].t < s.t < again.t]
    assert new_data
    assert all((again.seq - (s.seq + s.length)) % M32 < 1 << 31 for s in new_data)
    assert (again.seq - syns[1].seq - 1) % M32 == report["facts"]["b"]["client_sent_before"]
    reply = next(s for s in at_server if s.sport == PORT and s.dport == PORT_B and s.t >= again.t)
    counters = report["counters"]["server"]
    if timestamps:
        assert again.tsval is not None and reply.ack == again.seq                 # PAWS: dup ACK
        assert counters.get("TcpExtPAWSEstab", 0) >= 1
        assert report["facts"]["b"]["server_read_tail_text"] == "NEW-" * (TAIL // 4)
    else:
        assert again.tsval is None and reply.ack == (again.seq + MARK) % M32        # accepted
        assert counters.get("TcpExtPAWSEstab", 0) == 0
        text = report["facts"]["b"]["server_read_tail_text"]
        assert text.encode() == again.payload + b"NEW-" * ((TAIL - MARK) // 4)
        checks = {c["name"]: c for c in report["checks"]}
        assert "OLD-OLD-" in checks["application-reads-old-bytes"]["observed"]


def test_wandering_duplicates_default(backend, tmp_path):
    report = run_scenario("wandering-duplicates", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["server"]["sysctls"]["net.ipv4.tcp_rfc1337"] == "1"   # the scenario's own
    names = {c["name"] for c in report["checks"]}
    assert {"paws-rejects-old-segment", "application-reads-only-new-bytes"} <= names
    reread(report, tmp_path, timestamps=True)


def test_wandering_duplicates_without_timestamps(backend, tmp_path):
    report = run_scenario("wandering-duplicates", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl(s) for s in TS_OFF])
    assert report["verdict"] == "pass", failed(report)
    assert {h: report["hosts"][h]["sysctls"]["net.ipv4.tcp_timestamps"] for h in ("client", "server")} == \
        {"client": "0", "server": "0"}
    names = {c["name"] for c in report["checks"]}
    assert {"old-segment-accepted", "application-reads-old-bytes"} <= names
    reread(report, tmp_path, timestamps=False)
