"""five-tuple on both backends, by default (tcp_tw_reuse=2: the ephemeral reconnect fails) and with
client tcp_tw_reuse=1 (it succeeds after the delay, TWRecycled counts it, the new SYN lies 65537
above the old snd_nxt); the numbers are read again from client.pcap."""

from __future__ import annotations

import errno

import pytest

from lab.core import parse_sysctl
from lab.packets import Segment, read_pcap
from lab.runner import run_scenario
from scenarios.five_tuple import BOUND, EPHEMERAL, PORT

pytestmark = pytest.mark.integration


def tuple_segs(segs: list[Segment], lport: int) -> list[Segment]:
    return [s for s in segs if (s.sport, s.dport) in ((lport, PORT), (PORT, lport))]


def syn_step(segs: list[Segment], lport: int) -> list[int]:
    """For each reopening of client:lport -> server:PORT: new SYN seq - (old client FIN seq + 1)."""
    mine = [s for s in tuple_segs(segs, lport) if s.sport == lport]
    out, last_fin = [], None
    for s in mine:
        if s.has("FIN"):
            last_fin = s if last_fin is None or s.t > last_fin.t else last_fin
        elif s.flags == "SYN" and last_fin is not None:
            out.append((s.seq - (last_fin.seq + 1)) & 0xFFFFFFFF)
            last_fin = None
    return out


def attempts(report: dict) -> dict:
    return {a["label"]: a for a in report["facts"]["attempts"]}


def test_five_tuple_default(backend, tmp_path):
    report = run_scenario("five-tuple", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_tw_reuse"] == "2"
    a = attempts(report)
    assert report["facts"]["ephemeral_port"] == EPHEMERAL
    assert a["b-bind"]["errno"] == errno.EADDRINUSE
    assert a["a-now"]["errno"] == errno.EADDRNOTAVAIL
    assert a["a-later"]["errno"] == errno.EADDRNOTAVAIL          # tcp_tw_reuse=2: not loopback
    assert a["b-other"]["ok"] and a["b-same"]["ok"]              # bind()+SO_REUSEADDR bypass
    at_client = read_pcap(tmp_path / "client.pcap")
    # no SYN ever left for the refused ephemeral reconnects: one incarnation of :40000 only
    assert len([s for s in tuple_segs(at_client, EPHEMERAL) if s.flags == "SYN"]) == 1
    assert syn_step(at_client, BOUND) == [65537]
    assert report["counters"]["client"].get("TcpExtTWRecycled", 0) == 1


def test_five_tuple_tw_reuse_on(backend, tmp_path):
    report = run_scenario("five-tuple", backend=backend, artifacts=tmp_path,
                          sysctls=[parse_sysctl("client:net.ipv4.tcp_tw_reuse=1")])
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    a = attempts(report)
    assert a["a-now"]["errno"] == errno.EADDRNOTAVAIL           # within tcp_tw_reuse_delay
    assert a["a-later"]["ok"], a["a-later"]                      # the opposite of the default run
    delay_s = int(report["hosts"]["client"]["sysctls"].get("net.ipv4.tcp_tw_reuse_delay", "1000")) / 1000
    assert a["a-later"]["since_time_wait_s"] > delay_s
    at_client = read_pcap(tmp_path / "client.pcap")
    assert syn_step(at_client, EPHEMERAL) == [65537]
    assert syn_step(at_client, BOUND) == [65537]
    assert report["counters"]["client"].get("TcpExtTWRecycled", 0) == 2
