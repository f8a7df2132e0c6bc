"""wandering-duplicates with a gVisor server: a real netns run (runsc 0.0~20221219, `invoke run
wandering-duplicates --backend netns --stack server=gvisor`; tests/data/scenarios/
wandering-duplicates-gvisor-server.json.gz) judged again, then with one observation changed.

What it found: gVisor's TIME-WAIT ACKs the old duplicate, delivers nothing and drops the peer's RST
(RFC 1337 fix 1); its ISNs follow the same 15.625 M/s clock as Linux's; but its ESTABLISHED endpoint
has no PAWS: the old segment, its TSval older than TS.Recent, was accepted and its 1000 old bytes
read by the application - the hazard TIME-WAIT exists for, with timestamps on (RFC 7323 §5.3 R1)."""

from __future__ import annotations

import pytest

from scenarios import wandering_duplicates as sc

from . import records


@pytest.fixture
def ev():
    e = records.evidence("wandering-duplicates-gvisor-server")
    assert e.options["stacks"] == {"server": "gvisor"}
    assert e.options["sysctls_not_set"] == ["server:net.ipv4.tcp_rfc1337=1"]
    return e


def judged(ev) -> dict:
    return {c.name: c for c in sc.SCENARIO.judge(ev)}


def test_gvisors_time_wait_absorbs_the_duplicate_but_its_connection_has_no_paws(ev):
    checks = judged(ev)
    assert {n: c.outcome for n, c in checks.items()} == {
        "time-wait-acks-old-duplicate": "pass", "no-application-sees-it": "pass", "paws-in-time-wait": "n/a",
        "time-wait-timer-restarted": "n/a", "time-wait-and-the-peers-rst": "pass", "time-wait-bypassed": "pass",
        "isn-clock": "pass", "old-segment-in-new-window": "pass", "paws-rejects-old-segment": "fail",
        "application-reads-only-new-bytes": "fail"}
    paws = checks["paws-rejects-old-segment"].values
    assert paws["replay_tsval"] < paws["ts_recent"]                           # older: PAWS should drop it
    assert paws["answer_ack"] == (paws["replay_seq"] + paws["replay_len"]) % (1 << 32)      # accepted instead
    assert checks["application-reads-only-new-bytes"].values["old_markers"] == 250        # 1000 B of "OLD-"


def test_a_time_wait_the_rst_killed_fails(ev):
    ev.facts["a"]["tw_after"] = {"state": None, "probe": {"answer": "rst"}}
    got = {n: c.outcome for n, c in judged(ev).items()}
    assert got["time-wait-and-the-peers-rst"] == "fail"


def test_no_time_wait_before_the_replay_fails_the_absorption(ev):
    ev.facts["a"]["tw_before"] = {"state": None, "probe": {"answer": "rst"}}
    got = {n: c.outcome for n, c in judged(ev).items()}
    assert got["time-wait-acks-old-duplicate"] == "fail" and got["no-application-sees-it"] == "pass"


def test_with_a_gvisor_client_the_linux_server_is_judged_as_ever():
    """`--stack client=gvisor`: the replayed segments are gVisor's own, its ISNs on the same clock;
    every check judges the Linux server, all pass (tests/data/scenarios/
    wandering-duplicates-gvisor-client.json.gz) - but the timer's restart, read from sock_diag's
    samples, which the recording leaves out."""
    e = records.evidence("wandering-duplicates-gvisor-client")
    assert e.options["stacks"] == {"client": "gvisor"} and not e.options.get("sysctls_not_set")
    checks = judged(e)
    assert {n for n, c in checks.items() if c.outcome != "pass"} == {"time-wait-timer-restarted"}
    assert "no sock_diag sample" in checks["time-wait-timer-restarted"].observed and len(checks) == 10
    client_isn = checks["isn-clock"].values["isns"][0]
    assert client_isn["who"] == "client" and abs(client_isn["error"]) < 15625      # within 1 ms of the clock


def test_an_unanswered_probe_leaves_the_time_wait_checks_inconclusive(ev):
    from scenarios._wandering_wire import UNSEEN

    ev.facts["a"]["tw_before"] = {"state": UNSEEN, "probe": {"answer": "none"}}
    ev.facts["a"]["tw_after"] = {"state": UNSEEN, "probe": {"answer": "none"}}
    got = {n: c.outcome for n, c in judged(ev).items()}
    assert got["time-wait-acks-old-duplicate"] == got["time-wait-and-the-peers-rst"] == "inconclusive"
