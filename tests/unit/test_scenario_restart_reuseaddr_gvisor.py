"""restart-reuseaddr with a gVisor server: a real netns run (tests/data/scenarios) judged again from
its probes and bind() results, then with one of them changed: exactly the checks about it move."""

from __future__ import annotations

from scenarios import restart_reuseaddr as sc

from . import records


def evidence():
    return records.evidence("restart-reuseaddr-gvisor-server")


def outcomes(ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def test_real_run_passes_every_case_as_linux_does():
    got = outcomes(evidence())
    assert len(got) == 10 and set(got.values()) == {"pass"}, got
    both = next(c for c in sc.SCENARIO.judge(evidence()) if c.name == "both-bind")
    assert "ports.go" in both.citation and both.values["server_stack"] == "gvisor"


def test_a_bind_that_succeeds_without_reuseaddr_fails():
    ev = evidence()
    ev.facts["cases"]["neither"].update(bind_ok=True, bind_errno=None, bind_error=None, listen_ok=True,
                                        reconnect_ok=True)
    got = outcomes(ev)
    assert {n for n, o in got.items() if o != "pass"} == {"neither-bind"}


def test_no_time_wait_at_bind_fails_the_setup_and_leaves_bind_unjudged():
    ev = evidence()
    ev.facts["cases"]["both"]["server_probe"]["answer"] = "rst"
    got = outcomes(ev)
    assert got["both-time-wait-holds-port"] == "fail" and got["both-bind"] == "n/a"
    assert {n for n, o in got.items() if o != "pass"} == {"both-time-wait-holds-port", "both-bind"}


def test_an_unanswered_probe_cannot_judge_the_setup():
    ev = evidence()
    ev.facts["cases"]["neither"]["server_probe"]["answer"] = "none"
    assert outcomes(ev)["neither-time-wait-holds-port"] == "inconclusive"


def test_a_live_listener_is_a_conflict_whatever_the_probe_says():
    ev = evidence()
    ev.facts["cases"]["live-listener"]["server_probe"]["answer"] = "rst"
    got = outcomes(ev)
    assert got["live-listener-bind"] == "pass" and got["live-listener-time-wait-holds-port"] == "fail"
