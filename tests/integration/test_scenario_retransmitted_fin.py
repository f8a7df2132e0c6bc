"""retransmitted-fin on both backends (tcp_orphan_retries=3, the scenario's own default) and once
with tcp_orphan_retries=1: the verdict, and the retransmissions counted again from the pcaps.

The kernel's rule, re-derived here without the scenario's code: an orphan gives up at the first
retransmission timeout at which now - T1 >= ((2 << b) - 1) x 200 ms, T1 being its first RTO
retransmission (the tail-loss probe before it does not count). With an RTO of 200 ms and a few ms
doubling after T1, the RTO retransmissions come at T1, T1 + 2 rto, T1 + 6 rto, T1 + 14 rto, ... so
b=3 (3000 ms) allows 4 of them (T1 + 14 rto = 2.9 s < 3 s) and b=1 (600 ms) allows 2. With b=4
(6200 ms) the 5th timeout, at T1 + 30 rto plus the timer wheel's rounding, comes after the budget:
the count is whatever the scenario's model predicted, read again from the pcap.
"""

from __future__ import annotations

import pytest

from lab.core import parse_sysctl
from lab.packets import read_pcap
from lab.runner import run_scenario
from scenarios.retransmitted_fin import PORT

pytestmark = pytest.mark.integration


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if not c["passed"]]


def reread(report: dict, artifacts, budget_s: float, rto_retransmissions: int) -> None:
    at_server, at_client = read_pcap(artifacts / "server.pcap"), read_pcap(artifacts / "client.pcap")
    fins = [s for s in at_server if s.sport == PORT and s.has("FIN")]
    # the original FIN, one tail-loss probe, then the RTO retransmissions: one sequence number
    assert len({f.seq for f in fins}) == 1
    assert len(fins) == 1 + 1 + rto_retransmissions, [round(f.t - fins[0].t, 3) for f in fins]
    t1 = fins[2].t
    gaps = [b.t - a.t for a, b in zip(fins[2:], fins[3:])]
    for a, b in zip(gaps, gaps[1:]):                     # the RTO doubles (timer-wheel slack)
        assert 1.8 < b / a < 2.3, gaps
    assert all(f.t - t1 < budget_s for f in fins[2:]), "retransmitted after the budget was spent"
    # the socket went later than the budget, and silently: no RST, nothing after the last FIN
    gone = [e for e in report["timeline"] if e["host"] == "server" and e["kind"] == "state"
            and e["data"]["socket"]["state"] == "GONE" and e["data"]["socket"]["dport"] != 0]
    assert gone and gone[0]["t"] - t1 >= budget_s
    assert not [s for s in at_server if s.sport == PORT and (s.has("RST") or s.t > fins[-1].t)]
    assert report["counters"]["server"].get("TcpExtTCPAbortOnTimeout") == 1
    # every FIN reached the client and was answered by an ACK the server never saw
    acks = [s for s in at_client if s.dport == PORT and s.pure_ack and s.t >= fins[0].t]
    assert len(acks) == len(fins)
    assert not [a for a in acks if any(s.same_wire(a) for s in at_server)]
    assert not [s for s in at_client if s.dport == PORT and s.has("RST")]
    assert [s["state"] for s in report["facts"]["client_sockets_at_end"]] == ["TIME_WAIT"]


def test_retransmitted_fin_default(backend, tmp_path):
    report = run_scenario("retransmitted-fin", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", failed(report)
    assert report["error"] is None
    assert report["hosts"]["server"]["sysctls"]["net.ipv4.tcp_orphan_retries"] == "3"
    reread(report, tmp_path, budget_s=3.0, rto_retransmissions=4)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["orphan-retries-count"]["values"]["observed_rto_retransmissions"] == 4
    for c in report["checks"]:
        assert c["citation"] and c["values"], c["name"]


def test_retransmitted_fin_one_orphan_retry(tmp_path):
    report = run_scenario("retransmitted-fin", backend="netns", artifacts=tmp_path,
                          sysctls=[parse_sysctl("server:net.ipv4.tcp_orphan_retries=1")])
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["server"]["sysctls"]["net.ipv4.tcp_orphan_retries"] == "1"
    reread(report, tmp_path, budget_s=0.6, rto_retransmissions=2)


def test_retransmitted_fin_four_orphan_retries(tmp_path):
    report = run_scenario("retransmitted-fin", backend="netns", artifacts=tmp_path,
                          sysctls=[parse_sysctl("server:net.ipv4.tcp_orphan_retries=4")])
    assert report["verdict"] == "pass", failed(report)
    count = {c["name"]: c for c in report["checks"]}["orphan-retries-count"]["values"]
    predicted = count["predicted_rto_retransmissions"]
    assert count["observed_rto_retransmissions"] in predicted and count["budget_ms"] == 6200
    n = count["observed_rto_retransmissions"]
    reread(report, tmp_path, budget_s=6.2, rto_retransmissions=n)
