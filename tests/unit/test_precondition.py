"""Scenarios that cannot show their behaviour with the sysctls in force say so (precondition()),
and a run so ruled out ends as skipped - not as a failure after a timeout. The limit that matters
so far is net.ipv4.tcp_max_tw_buckets: below the number of TIME-WAIT sockets (an orphaned
FIN-WAIT-2 is one too) a scenario holds at once in a host, the kernel makes none (TCPTimeWaitOverflow) and the
scenario's waits for them could only time out. Scenarios whose expectations follow the limit (lost-ack, tw-buckets,
lossy-link,
and who-closes-first at 0) keep running."""

from __future__ import annotations

import pytest

import scenarios
from lab.ci import _scenario_entry
from lab.errors import CannotShow, EnvError, NetemMissing, ScenarioSkipped
from lab.junit import junit_xml
from lab.pipeline import Job, run_job

KEY = "net.ipv4.tcp_max_tw_buckets"
DEFAULT = "262144"

# scenario -> {host: TIME-WAIT sockets it holds there at once}
NEEDS = {
    "five-tuple": {"client": 2},
    "restart-reuseaddr": {"server": 5},
    "tw-reopen": {"server": 1},
    "time-wait-duration": {"client": 2},      # B's orphaned FIN-WAIT-2 is a TIME-WAIT socket too
    "wandering-duplicates": {"server": 1},
    "tw-assassination": {"client": 1},
    "retransmitted-fin": {"client": 1},
}
FOLLOW_THE_LIMIT = ("lost-ack", "tw-buckets", "lossy-link")


def sysctls(**limits: str) -> dict[str, dict[str, str]]:
    out = {h: {KEY: DEFAULT, "net.ipv4.tcp_timestamps": "1"} for h in ("client", "router", "server")}
    for host, v in limits.items():
        out[host][KEY] = v
    return out


def why(name: str, **limits: str) -> str | None:
    return scenarios.get(name).cannot_show(sysctls(**limits))


@pytest.mark.parametrize("name, need", [(n, h) for n, need in NEEDS.items() for h in need.items()])
def test_no_time_wait_room_rules_the_scenario_out(name, need):
    host, n = need
    said = why(name, **{host: "0"})
    assert said and said.startswith(f"tcp_max_tw_buckets=0 on the {host}: no TIME-WAIT can be made, "
                                    "and this scenario observes")
    assert "lost-ack, tw-buckets and lossy-link show what happens without TIME-WAIT" in said
    assert why(name, **{host: str(n - 1)}) is not None                    # one short: ruled out
    assert why(name, **{host: str(n)}) is None                            # room enough: runs
    assert why(name) is None                                              # the default
    other = "server" if host == "client" else "client"
    assert why(name, **{other: "0"}) is None                              # the other end's limit is not its


def test_five_tuple_needs_two_at_once():
    said = why("five-tuple", client="1")
    assert said.startswith("tcp_max_tw_buckets=1 on the client: room for one TIME-WAIT socket, and this "
                           "scenario observes two at once there")


@pytest.mark.parametrize("name", FOLLOW_THE_LIMIT)
@pytest.mark.parametrize("limit", ["0", "1", "3"])
def test_scenarios_that_follow_the_limit_keep_running(name, limit):
    assert why(name, client=limit, server=limit) is None


def test_who_closes_first_shows_zero_but_not_one():
    """At 0 its expectations follow the limit (a close without TIME-WAIT); at 1 the simultaneous
    close needs a second TIME-WAIT beside the first case's, which the kernel refuses."""
    assert why("who-closes-first", client="0", server="0") is None
    assert why("who-closes-first", client="0") is None
    said = why("who-closes-first", server="1")
    assert said.startswith("tcp_max_tw_buckets=1 on the server: room for one TIME-WAIT socket")
    assert why("who-closes-first", client="2", server="2") is None


def test_a_limit_not_read_back_rules_nothing_out():
    assert scenarios.get("five-tuple").cannot_show({}) is None
    assert scenarios.get("five-tuple").cannot_show({"client": {KEY: "?"}}) is None


def test_a_scenario_without_a_precondition_has_none():
    from lab.scenario import Scenario

    plain = Scenario(name="plain", intent="x", run=lambda lab: {}, checks=())
    assert plain.cannot_show(sysctls(client="0")) is None


def test_cannot_show_is_a_skip_like_netem_missing():
    exc = CannotShow("five-tuple", "tcp_max_tw_buckets=0 on the client: ...")
    assert isinstance(exc, ScenarioSkipped) and not isinstance(exc, EnvError) and exc.exit_code == 2
    assert str(exc) == ("five-tuple cannot show its behaviour with these settings: tcp_max_tw_buckets=0 on "
                        "the client: ...; run it without that setting")
    assert "\n" not in str(exc)
    netem = NetemMissing("lossy-link", "no netem")
    assert isinstance(netem, ScenarioSkipped) and isinstance(netem, EnvError)


def test_a_ruled_out_scenario_is_skipped_in_run_all_and_check(monkeypatch, tmp_path):
    """lab.pipeline.run_job (`run all`, `--repeat`, `check`) reports a CannotShow as skipped with its
    reason; check's summary and JUnit list it as a skipped testcase."""
    from lab import runner

    said = why("tw-assassination", client="0")

    def ruled_out(name, **kw):
        raise CannotShow(name, said)
    monkeypatch.setattr(runner, "run_scenario", ruled_out)
    job = Job(run=1, scenario="tw-assassination", backend="netns", artifacts=tmp_path)
    res = run_job(job)
    assert res.verdict == "skipped" and res.exit_code == 2
    assert res.skip == {"why": said, "hint": "run it without that setting", "kind": "CannotShow"}
    entry = _scenario_entry(res, None, job)
    assert entry["verdict"] == "skipped" and entry["reason"] == f"{said}; run it without that setting"
    xml = junit_xml({"scenarios": [entry], "requirements": [], "kernel": "k"})
    assert 'skipped="1"' in xml and "tcp_max_tw_buckets=0 on the client" in xml
    summary = runner.catalog_summary([res], 1.0)
    assert summary["skipped"] == 1 and summary["failed"] == 0


def test_repeat_stops_at_the_first_ruled_out_run(monkeypatch, tmp_path):
    """`run --repeat`: a skip says the same for every instance: the batch stops with it (exit 2)."""
    from lab import runner

    def ruled_out(name, **kw):
        raise CannotShow(name, "tcp_max_tw_buckets=0 on the client: no TIME-WAIT can be made")
    monkeypatch.setattr(runner, "run_scenario", ruled_out)
    monkeypatch.setattr(runner, "check_keys", lambda s: None)
    from lab import pool
    monkeypatch.setattr(pool, "run_jobs", lambda fn, jobs, width, collect: [collect(j, fn(j)) for j in jobs])
    with pytest.raises(CannotShow, match="five-tuple cannot show its behaviour"):
        runner.run_many("five-tuple", 3, 1, backend="netns", artifacts=tmp_path / "r")
