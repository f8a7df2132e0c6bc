"""scenarios.five_tuple.SCENARIO.judge on the evidence of two real netns runs (tests/data/scenarios: the
default tcp_tw_reuse=2 and the flip tcp_tw_reuse=1), then with one observation or sysctl
changed: exactly the checks about it must fail."""

from __future__ import annotations

from dataclasses import replace

from lab.evidence import Evidence
from scenarios import five_tuple as sc

from . import records


def evidence(name: str = "five-tuple") -> Evidence:
    return records.evidence(name)


def failed(ev: Evidence) -> set[str]:
    return {c.name for c in sc.SCENARIO.judge(ev) if not c.passed}


def test_real_runs_pass():
    for name in ("five-tuple", "five-tuple-tw-reuse-1"):
        checks = sc.SCENARIO.judge(evidence(name))
        assert len(checks) == 8 and all(c.passed for c in checks), (name, [c.observed for c in checks if not c.passed])


def test_expectation_follows_tw_reuse():
    """The default run's observations judged as if tcp_tw_reuse were 1: the late connect() should
    have recycled TIME-WAIT, and it did not."""
    ev = evidence()
    ev.sysctls["client"]["net.ipv4.tcp_tw_reuse"] = "1"
    assert failed(ev) == {"connect-same-4-tuple-a-later"}
    ev = evidence("five-tuple-tw-reuse-1")
    ev.sysctls["client"]["net.ipv4.tcp_tw_reuse"] = "2"
    assert failed(ev) == {"connect-same-4-tuple-a-later"}


def test_wrong_isn_fails():
    ev = evidence("five-tuple-tw-reuse-1")
    cli = ev.addresses["client"]
    ev.packets["client"] = [replace(s, seq=(s.seq + 1) & 0xFFFFFFFF)
                            if s.src == cli and s.flags == "SYN" and s.sport == sc.EPHEMERAL else s
                            for s in ev.packets["client"]]
    assert failed(ev) == {"recycled-isn-above-old-snd-nxt"}


def test_counter_must_match_the_recycles():
    ev = evidence("five-tuple-tw-reuse-1")
    ev.counters["client"]["TcpExtTWRecycled"] = 1
    assert failed(ev) == {"tw-recycled-counter"}


def test_bind_without_flag_succeeding_fails():
    ev = evidence()
    b = next(a for a in ev.facts["attempts"] if a["label"] == "b-bind")
    b.update(ok=True, errno=None, error=None)
    assert failed(ev) == {"same-port-bind-without-reuseaddr"}


def test_without_timestamps_nothing_is_recycled_and_the_isn_rules_are_not_applicable():
    """A real run with tcp_timestamps=0 on both hosts: no connect() may recycle TIME-WAIT, so the
    ISN of a recycled connection and TWRecycled +0 show nothing: not applicable, not passed."""
    checks = {c.name: c for c in sc.SCENARIO.judge(evidence("five-tuple-no-timestamps"))}
    assert {n: c.outcome for n, c in checks.items() if c.outcome != "pass"} == {
        "recycled-isn-above-old-snd-nxt": "n/a", "tw-recycled-counter": "n/a"}
    assert len(checks) == 8
    assert checks["connect-same-4-tuple-b-same"].values["expected"] == "EADDRNOTAVAIL"
    assert "TcpExtTWRecycled +0 counts nothing" in checks["tw-recycled-counter"].observed
    # a recycle counted where none happened is still a failure
    ev = evidence("five-tuple-no-timestamps")
    ev.counters["client"]["TcpExtTWRecycled"] = 1
    assert failed(ev) >= {"tw-recycled-counter"}
    assert {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}["tw-recycled-counter"] == "fail"


def test_an_old_connection_missing_from_the_capture_is_not_judged_where_it_decides():
    """client.pcap without the bound port's old FIN: whether that connection used timestamps (which
    decides b-same) and its snd_nxt (the ISN check) are unknown - inconclusive, not a crash or a
    failure; a-now and a-later (tcp_tw_reuse=2 forbids them whatever the timestamps) still judged."""
    ev = evidence()
    cli = ev.addresses["client"]
    ev.packets["client"] = [s for s in ev.packets["client"]
                            if not (s.src == cli and s.sport == sc.BOUND and s.has("FIN"))]
    ev.captures["client"] = {"captured": 40, "received": 41, "dropped": 1}
    got = {c.name: c for c in sc.SCENARIO.judge(ev)}
    for name in ("old-4-tuples-in-time-wait", "connect-same-4-tuple-b-same", "recycled-isn-above-old-snd-nxt"):
        assert got[name].outcome == "inconclusive", (name, got[name].observed)
        assert "tcpdump in client dropped 1 packets" in got[name].observed
    assert got["connect-same-4-tuple-a-now"].passed and got["connect-same-4-tuple-a-later"].passed


def test_a_recycled_syn_missing_from_the_capture_is_inconclusive():
    ev = evidence("five-tuple-tw-reuse-1")
    cli = ev.addresses["client"]
    last = max(s.t for s in ev.packets["client"] if s.src == cli and s.flags == "SYN" and s.sport == sc.EPHEMERAL)
    ev.packets["client"] = [s for s in ev.packets["client"] if s.t != last]
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["recycled-isn-above-old-snd-nxt"]
    assert c.outcome == "inconclusive" and "lacks the new SYN" in c.observed
