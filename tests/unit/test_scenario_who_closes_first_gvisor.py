"""who-closes-first with a gVisor end, judged from the wire (scenarios/_who_closes_first_wire.py):
two real netns runs (tests/data/scenarios, a gVisor client and a gVisor server) judged again, then
with one probe's answer, one capture or one sysctl changed: exactly the checks about it move."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios import who_closes_first as sc

from . import records

RUNS = ("who-closes-first-gvisor-client", "who-closes-first-gvisor-server")


def outcomes(ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def answer(ev, case: str, host: str, value: str) -> None:
    ev.facts["cases"][case]["probes"][host]["answer"] = value


@pytest.mark.parametrize("name", RUNS)
def test_real_runs_pass_from_the_wire(name):
    ev = records.evidence(name)
    checks = sc.SCENARIO.judge(ev)
    assert [c.outcome for c in checks] == ["pass"] * 5, [c.observed for c in checks if c.outcome != "pass"]
    assert "gVisor" in next(c for c in checks if c.name == "simultaneous-both-closing").citation
    assert all("probe" in c.observed for c in checks if c.name.endswith("holds-time-wait"))


@pytest.mark.parametrize("name", RUNS)
def test_the_passive_closer_holding_time_wait_fails_its_case(name):
    ev = records.evidence(name)
    answer(ev, "client-first", "server", "ack")
    got = outcomes(ev)
    assert {n for n, o in got.items() if o != "pass"} == {"client-first-only-client-holds-time-wait"}
    assert got["client-first-only-client-holds-time-wait"] == "fail"


@pytest.mark.parametrize("name", RUNS)
def test_a_closer_that_answers_with_a_rst_fails(name):
    ev = records.evidence(name)
    answer(ev, "server-first", "server", "rst")
    assert outcomes(ev)["server-first-only-server-holds-time-wait"] == "fail"
    ev = records.evidence(name)
    answer(ev, "simultaneous", "client", "rst")
    assert outcomes(ev)["simultaneous-both-hold-time-wait"] == "fail"


def test_an_unanswered_probe_cannot_judge():
    ev = records.evidence(RUNS[0])
    answer(ev, "client-first", "client", "none")
    answer(ev, "simultaneous", "server", "none")
    got = outcomes(ev)
    assert got["client-first-only-client-holds-time-wait"] == "inconclusive"
    assert got["simultaneous-both-hold-time-wait"] == "inconclusive"
    assert got["server-first-only-server-holds-time-wait"] == "pass"


def test_a_linux_end_without_time_wait_room_is_expected_to_answer_with_a_rst():
    """The gVisor client's run, its Linux server told tcp_max_tw_buckets=0: the recorded server,
    which did hold TIME-WAIT, now fails the cases where it closed; the gVisor end is unaffected."""
    ev = records.evidence(RUNS[0])
    ev.sysctls["server"]["net.ipv4.tcp_max_tw_buckets"] = "0"
    got = outcomes(ev)
    assert {n for n, o in got.items() if o != "pass"} == {"server-first-only-server-holds-time-wait",
                                                          "simultaneous-both-hold-time-wait"}


def test_a_fin_that_covers_the_gvisor_ends_own_fin_is_no_closing_proof():
    ev = records.evidence(RUNS[0])
    port = ev.facts["cases"]["simultaneous"]["client_port"]
    srv = ev.addresses["server"]
    ev.packets["client"] = [replace(s, ack=(s.ack + 1) & 0xFFFFFFFF)
                            if s.src == srv and s.dport == port and s.has("FIN") else s
                            for s in ev.packets["client"]]
    assert outcomes(ev)["simultaneous-both-closing"] == "fail"


@pytest.mark.parametrize("name", RUNS)
def test_sock_diag_checks_are_not_used_for_a_gvisor_run(name):
    checks = sc.SCENARIO.judge(records.evidence(name))
    assert len(checks) == 5 and not any("sock_diag" in c.observed for c in checks), [c.observed for c in checks]
    assert all("probes:" in c.observed for c in checks if c.name.endswith("holds-time-wait"))
