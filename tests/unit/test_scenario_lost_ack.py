"""lost-ack's intent follows the sysctls in force, as its checks do: with the client's
tcp_max_tw_buckets=0 the run announces (and report.json records) the RST lesson, not TIME-WAIT's
re-ACKs. The runner asks Scenario.intent_in() once the hosts' sysctls have been read back."""

from __future__ import annotations

import pytest

import scenarios
from lab.evidence import Evidence

LOST_ACK, TWA = scenarios.get("lost-ack"), scenarios.get("tw-assassination")

NO_ROOM = {"client": {"net.ipv4.tcp_max_tw_buckets": "0"}, "server": {"net.ipv4.tcp_max_tw_buckets": "4096"}}


def test_intent_without_time_wait_is_the_rst_lesson():
    said = LOST_ACK.intent_in(NO_ROOM)
    assert said != LOST_ACK.intent
    assert "RST" in said and "tcp_max_tw_buckets=0" in said
    assert "re-ACKs" not in said


@pytest.mark.parametrize("sysctls", [{}, {"client": {"net.ipv4.tcp_max_tw_buckets": "262144"}},
                                     {"client": {}, "server": {"net.ipv4.tcp_max_tw_buckets": "0"}}])
def test_intent_with_time_wait_is_the_catalog_line(sysctls):
    assert LOST_ACK.intent_in(sysctls) == LOST_ACK.intent      # only the client's value counts


def test_intent_and_checks_follow_the_same_sysctl():
    ev = Evidence(packets={"client": [], "server": [], "router": []}, timeline=[], counters={},
                  sysctls=NO_ROOM, addresses={"client": "10.77.1.10", "server": "10.77.2.10"},
                  faults={}, facts={})
    assert {c.name for c in LOST_ACK.judge(ev)} == {"no-time-wait-state", "fin-answered-with-rst",
                                                    "rst-aborts-server", "rst-flow-label"}
    assert "RST" in LOST_ACK.intent_in(ev.sysctls)


def test_a_scenario_without_intent_function_keeps_its_intent():
    assert TWA.intent_in(NO_ROOM) == TWA.intent
