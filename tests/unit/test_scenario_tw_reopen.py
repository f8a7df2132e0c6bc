"""scenarios.tw_reopen.check on the evidence of two real netns runs (tests/data/scenarios: with
timestamps, and with client tcp_timestamps=0; the bulk transfer's data segments left out), then
with one observation, sysctl or option changed: exactly the checks about it must fail."""

from __future__ import annotations

from dataclasses import replace

from lab.evidence import Evidence
from scenarios import tw_reopen as sc

from . import records

def evidence(name: str = "tw-reopen") -> Evidence:
    return records.evidence(name)


def failed(ev: Evidence) -> set[str]:
    return records.failed(sc, ev)


def test_real_runs_pass():
    for name in ("tw-reopen", "tw-reopen-no-timestamps"):
        checks = sc.check(evidence(name))
        assert len(checks) == 8 and all(c.passed for c in checks), (name, [c.observed for c in checks if not c.passed])
    names = {c.name for c in sc.check(evidence("tw-reopen-no-timestamps"))}
    assert "seq-behind-refused-syn-recovery" in names and "seq-behind-new-isn-above-old" not in names


def test_strict_rfc_fails_condition_2():
    ev = evidence()
    ev.options["strict_rfc"] = True
    assert failed(ev) == {"rfc1122-condition-2-not-implemented"}


def test_time_wait_restored_contradicts_linux():
    ev = evidence()
    case = ev.facts["cases"]["old-duplicate"]
    case["server_after"] = case["server_before_inject"]
    assert failed(ev) == {"rfc1122-condition-2-not-implemented"}


def test_timestamps_must_match_the_sysctls():
    ev = evidence()
    ev.sysctls["client"]["net.ipv4.tcp_timestamps"] = "0"
    assert failed(ev) == {"timestamps-as-configured"}


def test_refused_syn_accepted_would_fail():
    """Without timestamps a SYN below rcv_nxt is not acceptable; had the server answered it with
    a SYN-ACK, the decision check must fail."""
    ev = evidence("tw-reopen-no-timestamps")
    srv, port = ev.addresses["server"], sc.CASES["seq-behind"]
    segs = ev.packets["server"]
    cfin = next(s for s in segs if s.sport == port and s.has("FIN"))
    syn = next(s for s in segs if s.sport == port and s.flags == "SYN" and s.t > cfin.t)
    i = next(i for i, s in enumerate(segs) if s.src == srv and s.dport == port and s.t >= syn.t)
    assert segs[i].flags == "ACK"                 # TIME-WAIT's answer in the real run
    segs[i] = replace(segs[i], flags="SYN,ACK")
    assert "seq-behind-syn-judged-by-time-wait" in failed(ev)


def test_isn_not_plus_65537_fails():
    ev = evidence()
    srv, port = ev.addresses["server"], sc.CASES["seq-ahead"]
    cfin = next(s for s in ev.packets["server"] if s.sport == port and s.has("FIN"))
    ev.packets["server"] = [replace(s, seq=(s.seq + 5) & 0xFFFFFFFF)
                            if s.src == srv and s.dport == port and s.flags == "SYN,ACK" and s.t > cfin.t else s
                            for s in ev.packets["server"]]
    assert failed(ev) == {"seq-ahead-new-isn-above-old"}
