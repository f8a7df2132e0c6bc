"""Unit tests (no root) for tw-assassination's checks: on empty evidence, under either tcp_rfc1337,
nothing observed must never pass, and the expectation follows the sysctl in force. On two real
netns runs (tcp_rfc1337=0: assassinated; =1: survives) every check passes, and the TIME-WAIT's fate
is decided by the wire too: the old segment replayed once more after the RST is answered by a RST
from the client (no socket) or by TIME-WAIT's ACK; flip that answer and the fate check fails,
whatever sock_diag says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.evidence import Evidence
from scenarios import tw_assassination as sc

from . import records

KILLED, SURVIVED = "tw-assassination", "tw-assassination-rfc1337"


def empty_evidence(sysctls: dict) -> Evidence:
    return Evidence(packets={"client": [], "server": [], "router": []}, timeline=[],
                    counters={}, sysctls=sysctls,
                    addresses={"client": "10.77.1.10", "router": "10.77.1.2", "server": "10.77.2.10"},
                    faults={}, facts={}, hz=250)


@pytest.mark.parametrize("rfc1337", ["0", "1"])
def test_tw_assassination_nothing_observed_fails(rfc1337):
    checks = sc.check(empty_evidence({"client": {"net.ipv4.tcp_rfc1337": rfc1337}}))
    assert len(checks) == 5
    assert not [c.name for c in checks if c.passed]
    names = {c.name for c in checks}
    assert ("time-wait-survives-rst" if rfc1337 == "1" else "time-wait-assassinated") in names


@pytest.mark.parametrize("name, fate, answer", [(KILLED, "time-wait-assassinated", "RST"),
                                                (SURVIVED, "time-wait-survives-rst", "ACK")])
def test_real_runs_pass_and_the_wire_agrees(name, fate, answer):
    checks = {c.name: c for c in sc.check(records.evidence(name))}
    assert all(c.passed for c in checks.values()), [c.observed for c in checks.values() if not c.passed]
    v = checks[fate].values
    assert v["decided_by_sock_diag"] and v["decided_by_wire"] and v["probe_answer"] == answer
    assert "wire: the old segment replayed again" in checks[fate].observed


def _answer(ev: Evidence):
    probe, answer = sc._probe_answer(ev, ev.facts["copied"][0])
    assert probe is not None and answer is not None
    return probe, answer


def _swap(ev: Evidence, old, new) -> None:
    ev.packets["client"] = [new if s is old else s for s in ev.packets["client"]]


def test_killed_but_the_probe_meets_a_time_wait_ack_fails():
    """sock_diag says gone; if the wire showed TIME-WAIT's ACK to the probe, it was not killed."""
    ev = records.evidence(KILLED)
    probe, rst = _answer(ev)
    tw = next(s for s in ev.packets["client"] if s.sport == sc.CLIENT_PORT and s.flags == "ACK"
              and s.t > ev.facts["injected_at"])              # TIME-WAIT's ACK to the first replay (5.2)
    _swap(ev, rst, replace(rst, flags="ACK", seq=tw.seq, ack=tw.ack))
    ev.facts["probe_counters"]["client"].pop("TcpOutRsts", None)
    assert records.failed(sc, ev) == {"time-wait-assassinated"}


def test_survived_but_the_probe_meets_a_rst_fails():
    """sock_diag says TIME_WAIT; a RST answering the probe means no socket held the 4-tuple."""
    ev = records.evidence(SURVIVED)
    probe, ack = _answer(ev)
    _swap(ev, ack, replace(ack, flags="RST", seq=probe.ack, ack=0))
    ev.facts["probe_counters"]["client"]["TcpOutRsts"] = 1
    assert records.failed(sc, ev) == {"time-wait-survives-rst"}


@pytest.mark.parametrize("name, fate", [(KILLED, "time-wait-assassinated"), (SURVIVED, "time-wait-survives-rst")])
def test_no_answer_or_no_probe_is_not_a_verdict(name, fate):
    ev = records.evidence(name)
    _, answer = _answer(ev)
    ev.packets["client"] = [s for s in ev.packets["client"] if s is not answer]
    assert records.failed(sc, ev) == {fate}
    assert {c.name: c.outcome for c in sc.check(ev)}[fate] == "fail"        # the kernel said nothing
    ev = records.evidence(name)
    del ev.facts["probe_at"]
    assert records.failed(sc, ev) == {fate}
    assert {c.name: c.outcome for c in sc.check(ev)}[fate] == "inconclusive"  # the wire was not seen
