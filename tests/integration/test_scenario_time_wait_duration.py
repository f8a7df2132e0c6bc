"""time-wait-duration: one default run per backend (about 62 s each) and one run with
tcp_fin_timeout=3 on netns. The lifetimes are measured again from the captures and the timeline
(not from the checks), and the same evidence is judged again with --strict-rfc, where Linux's 60 s
must fail RFC 1122's 240 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.core import parse_sysctl
from lab.evidence import Evidence
from lab.packets import read_pcap
from lab.runner import run_scenario
from lab.timeline import Event
from scenarios import time_wait_duration as scenario

pytestmark = pytest.mark.integration

HZ_SLACK_S = 4.1 + 0.1          # the coarsest timer-wheel granule of a 60 s timer (HZ=1000) + sampling


def failed(report: dict) -> list:
    return [(c["name"], c["observed"]) for c in report["checks"] if not c["passed"]]


def conclusive_run(tmp_path: Path, tries: int = 2, **kw) -> tuple[dict, Path]:
    """A run, made again (once) when the lab could not observe enough to judge - every check that
    did not pass is inconclusive, none failed: the orphan's 5 s lifetime is judged within a few ms
    of its floor, and a sampler that fell behind by tens of ms on a busy CI machine leaves it
    undecided. A failed check is never retried."""
    for n in range(1, tries + 1):
        artifacts = tmp_path / f"try-{n}"
        report = run_scenario("time-wait-duration", artifacts=artifacts, **kw)
        undecided = [c for c in report["checks"] if c["outcome"] != "pass"]
        if report["verdict"] != "error" or not undecided or any(c["outcome"] == "fail" for c in undecided):
            return report, artifacts
    return report, artifacts


def evidence(report: dict, artifacts: Path, **options) -> Evidence:
    """The run's evidence rebuilt from report.json and the pcaps, with other run options."""
    return Evidence.load(
        artifacts, list(report["hosts"]),
        timeline=[Event(e["t"], e["host"], e["kind"], e["text"], e["data"]) for e in report["timeline"]],
        counters=report["counters"], sysctls={h: v["sysctls"] for h, v in report["hosts"].items()},
        addresses={h: next(iter(v["addresses"].values())) for h, v in report["hosts"].items()},
        faults=report["faults"], facts=report["facts"], hz=report["kernel_hz"],
        options={**report["options"], **options},
        timer_samples={h: [tuple(x) for x in xs] for h, xs in report["timer_samples"].items()})


def gone_at(report: dict, port: int) -> float:
    return next(e["t"] for e in report["timeline"] if e["host"] == "client" and e["kind"] == "state"
                and e["data"]["socket"]["state"] == "GONE" and e["data"]["socket"]["sport"] == port)


def reread(report: dict, artifacts: Path, fin_wait2_s: float) -> None:
    at_client = read_pcap(artifacts / "client.pcap")
    port_a, port_b = report["facts"]["key_a"][1], report["facts"]["key_b"][1]
    # A: from the server's FIN (client.pcap) to sock_diag's first sample without the socket
    fin_a = next(s for s in at_client if s.dport == port_a and s.has("FIN") and s.sport == scenario.PORT)
    lived_a = gone_at(report, port_a) - fin_a.t
    assert 60.0 <= lived_a <= 60.0 + HZ_SLACK_S, lived_a
    # B: from the ACK of its FIN to its disappearance; then the server's late FIN meets a RST
    fin_b = next(s for s in at_client if s.sport == port_b and s.has("FIN"))
    ack_b = next(s for s in at_client if s.dport == port_b and s.ack == fin_b.seq + 1 and s.t > fin_b.t)
    lived_b = gone_at(report, port_b) - ack_b.t
    assert fin_wait2_s - 0.01 <= lived_b <= fin_wait2_s + 0.6, lived_b
    late = next(s for s in at_client if s.dport == port_b and s.has("FIN"))
    rst = [s for s in at_client if s.sport == port_b and s.has("RST") and s.t > late.t]
    assert rst and rst[0].seq == late.ack
    assert late.t > report["facts"]["b_gone_seen_at"]     # the run's own lookup found B gone first
    # B was never in TIME_WAIT; A was, as sock_diag saw it
    states_b = {e["data"]["socket"]["state"] for e in report["timeline"] if e["kind"] == "state"
                and e["host"] == "client" and e["data"]["socket"]["sport"] == port_b}
    assert "TIME_WAIT" not in states_b and "FIN_WAIT2" in states_b


def test_time_wait_duration_default(backend, tmp_path):
    report, tmp_path = conclusive_run(tmp_path, backend=backend)
    assert report["verdict"] == "pass", failed(report)
    assert report["hosts"]["client"]["sysctls"]["net.ipv4.tcp_fin_timeout"] == "5"
    reread(report, tmp_path, fin_wait2_s=5.0)
    assert report["counters"]["client"].get("TcpExtTW") == 2
    assert not report["counters"]["client"].get("TcpExtTWKilled")
    # the same evidence judged with --strict-rfc: 60 s fails RFC 1122's 240 s, nothing else changes
    strict = {c.name: c.passed for c in scenario.SCENARIO.judge(evidence(report, tmp_path, strict_rfc=True))}
    lenient = {c.name: c.passed for c in scenario.SCENARIO.judge(evidence(report, tmp_path))}
    assert lenient == {c["name"]: c["passed"] for c in report["checks"]}
    assert strict == {**lenient, "time-wait-vs-rfc1122-2msl": False}


def test_time_wait_duration_short_fin_timeout(tmp_path):
    report, tmp_path = conclusive_run(tmp_path, backend="netns",
                                      sysctls=[parse_sysctl("client:net.ipv4.tcp_fin_timeout=3")])
    assert report["verdict"] == "pass", failed(report)
    reread(report, tmp_path, fin_wait2_s=3.0)
    # armed for 3 s (<= 4 s): counted as TWKilled, not TW
    assert report["counters"]["client"].get("TcpExtTWKilled") == 2
    assert not report["counters"]["client"].get("TcpExtTW")
