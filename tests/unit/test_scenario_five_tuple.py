"""scenarios.five_tuple.check on the evidence of two real netns runs (tests/data/scenarios: the
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
    return records.failed(sc, ev)


def test_real_runs_pass():
    for name in ("five-tuple", "five-tuple-tw-reuse-1"):
        checks = sc.check(evidence(name))
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
