"""tw-buckets on both backends (tcp_max_tw_buckets=3, 5 connections) and once with
tcp_max_tw_buckets=5 (7 connections): the verdict, and from client.pcap which connections answered
the server's late FIN with an ACK and which with a RST.
"""

from __future__ import annotations

import pytest

from lab.core import parse_sysctl
from lab.packets import read_pcap
from lab.runner import run_scenario
from scenarios.tw_buckets import PORT

pytestmark = pytest.mark.integration


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if not c["passed"]]


def answers(artifacts) -> dict[int, str]:
    """Per client port: how the client answered the server's FIN (client.pcap)."""
    segs = read_pcap(artifacts / "client.pcap")
    out = {}
    for fin in [s for s in segs if s.sport == PORT and s.has("FIN")]:
        reply = next(s for s in segs if s.dport == PORT and s.sport == fin.dport and s.t >= fin.t)
        if reply.has("RST"):
            assert reply.seq == fin.ack
            out[fin.dport] = "RST"
        else:
            assert reply.has("ACK") and reply.ack == fin.seq + 1
            out[fin.dport] = "ACK"
    return out


def reread(report: dict, artifacts, limit: int) -> None:
    ports = report["facts"]["client_ports"]
    assert len(ports) == limit + 2
    got = answers(artifacts)
    assert [got[p] for p in ports] == ["ACK"] * limit + ["RST"] * 2, got
    counters = report["counters"]["client"]
    assert counters.get("TcpExtTCPTimeWaitOverflow") == 2
    assert counters.get("TcpOutRsts") == 2
    ended = report["facts"]["client_state_at_end"]
    assert sorted(st or "-" for st in ended.values()) == ["-"] * 2 + ["TIME_WAIT"] * limit
    # the server's connections that met a RST were reset, not closed by an ACK
    at_server = read_pcap(artifacts / "server.pcap")
    assert sorted({s.sport for s in at_server if s.dport == PORT and s.has("RST")}) == sorted(ports[limit:])


def test_tw_buckets_default(backend, tmp_path):
    report = run_scenario("tw-buckets", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_max_tw_buckets"] == "3"
    reread(report, tmp_path, limit=3)


def test_tw_buckets_five(tmp_path):
    report = run_scenario("tw-buckets", backend="netns", artifacts=tmp_path,
                          sysctls=[parse_sysctl("client:net.ipv4.tcp_max_tw_buckets=5")])
    assert report["verdict"] == "pass", failed(report)
    reread(report, tmp_path, limit=5)
