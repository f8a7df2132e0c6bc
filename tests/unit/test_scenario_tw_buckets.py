"""scenarios.tw_buckets.SCENARIO.judge on the evidence of a real netns run (tests/data/scenarios/tw-buckets.json:
tcp_max_tw_buckets=3, 5 closes), then with one observation changed."""

from __future__ import annotations

from dataclasses import replace

from lab.evidence import Evidence
from scenarios import tw_buckets as sc

from . import records


def evidence() -> Evidence:
    return records.evidence("tw-buckets")


def outcomes(ev: Evidence) -> dict:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def test_real_run_passes():
    assert outcomes(evidence()) == {n: "pass" for n in ("buckets-fill-in-close-order", "exactly-n-time-wait",
                                                         "late-fin-ack-or-rst", "overflow-counters")}


def test_a_late_fin_missing_from_the_capture():
    """The server's FIN to an overflowed connection is not in client.pcap: a failure when the
    capture is complete, inconclusive when tcpdump dropped packets there."""
    ev = evidence()
    port = ev.facts["client_ports"][-1]
    srv = ev.addresses["server"]
    ev.packets["client"] = [s for s in ev.packets["client"] if not (s.src == srv and s.dport == port and s.has("FIN"))]
    assert outcomes(ev)["late-fin-ack-or-rst"] == "fail"
    ev.captures["client"] = {"captured": 40, "received": 42, "dropped": 2}
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["late-fin-ack-or-rst"]
    assert c.outcome == "inconclusive" and "tcpdump in client dropped 2 packets" in c.observed


def test_a_wrong_answer_fails_whatever_the_capture_missed():
    ev = evidence()
    port = ev.facts["client_ports"][0]          # kept: TIME-WAIT answers its late FIN with an ACK
    cli = ev.addresses["client"]
    fin_t = next(s.t for s in ev.packets["client"] if s.dport == port and s.has("FIN") and s.src != cli)
    ev.packets["client"] = [replace(s, flags="RST") if s.src == cli and s.sport == port and s.t >= fin_t else s
                            for s in ev.packets["client"]]
    ev.captures["client"] = {"captured": 40, "received": 42, "dropped": 2}
    assert outcomes(ev)["late-fin-ack-or-rst"] == "fail"
