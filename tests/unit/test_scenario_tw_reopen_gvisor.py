"""tw-reopen with a gVisor server: a real netns run (runsc 0.0~20221219, `invoke run tw-reopen
--backend netns --stack server=gvisor`; tests/data/scenarios/tw-reopen-gvisor-server.json.gz) judged
again, then with one observation changed: exactly the checks about it move. gVisor's TIME-WAIT hands
a SYN above rcv_nxt to the listener, drops one below it unanswered (no RFC 6191 timestamp rule), and
keeps nothing after an old duplicate (RFC 1122 condition (2) not implemented)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios import tw_reopen as sc

from . import records


@pytest.fixture
def ev():
    e = records.evidence("tw-reopen-gvisor-server")
    assert e.options["stacks"] == {"server": "gvisor"}
    return e


def judged(ev) -> dict:
    return {c.name: c for c in sc.SCENARIO.judge(ev)}


def moved(ev) -> dict[str, str]:
    return {n: c.outcome for n, c in judged(ev).items() if c.outcome != "pass"}


def test_gvisors_time_wait_is_judged_from_the_wire(ev):
    checks = judged(ev)
    assert {c.outcome for c in checks.values()} == {"pass"} and len(checks) == 8
    behind = checks["seq-behind-syn-judged-by-time-wait"].values
    assert behind["seq_after_rcv_nxt"] is False and behind["ts_newer"] is True     # Linux would accept it
    assert behind["expected_accept"] is False and behind["answer"] is None
    assert checks["seq-behind-refused-syn-recovery"].values["answered"] == 0
    assert checks["seq-ahead-syn-judged-by-time-wait"].values["accepted"] is True
    assert "gVisor's generator" in checks["seq-ahead-new-isn-above-old"].observed
    assert checks["rfc1122-condition-2-not-implemented"].values["time_wait_restored"] is False


def test_a_syn_ack_to_the_syn_below_rcv_nxt_fails_both_its_checks(ev):
    port = ev.facts["cases"]["seq-behind"]["client_port"]
    syns = [s for s in ev.packets["server"] if s.sport == port and s.flags == "SYN"]
    late = syns[-len(syns) + 1]                              # the first reopening SYN (the old one is first)
    answer = replace(late, t=late.t + 0.0001, src=late.dst, dst=late.src, sport=late.dport, dport=late.sport,
                     flags="SYN,ACK", seq=1, ack=late.seq + 1)
    ev.packets["server"] = sorted(ev.packets["server"] + [answer], key=lambda s: s.t)
    assert moved(ev) == {"seq-behind-syn-judged-by-time-wait": "fail", "seq-behind-refused-syn-recovery": "fail"}


def test_time_wait_back_after_the_old_duplicate_fails_unless_strict(ev):
    ev.facts["cases"]["old-duplicate"]["server_probe_after"]["answer"] = "ack"
    assert moved(ev) == {"rfc1122-condition-2-not-implemented": "fail"}
    ev.options["strict_rfc"] = True
    assert moved(ev) == {}


def test_an_unanswered_probe_cannot_tell(ev):
    ev.facts["cases"]["seq-ahead"]["server_probe_before"]["answer"] = "none"
    ev.facts["cases"]["old-duplicate"]["server_probe_after"]["answer"] = "none"
    assert moved(ev) == {"seq-ahead-server-holds-time-wait": "inconclusive",
                         "rfc1122-condition-2-not-implemented": "n/a"}
