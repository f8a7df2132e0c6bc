"""scenarios.restart_reuseaddr.SCENARIO.judge on the evidence of a real netns run (tests/data/scenarios),
then with one observation changed: exactly the checks about it must fail."""

from __future__ import annotations

from lab.evidence import Evidence
from scenarios import restart_reuseaddr as sc

from . import records


def evidence(name: str = "restart-reuseaddr") -> Evidence:
    return records.evidence(name)


def failed(ev: Evidence) -> set[str]:
    return {c.name for c in sc.SCENARIO.judge(ev) if not c.passed}


def test_real_run_passes():
    checks = sc.SCENARIO.judge(evidence())
    assert len(checks) == 10 and all(c.passed for c in checks), [c.observed for c in checks if not c.passed]
    values = {c.name: c.values for c in checks}
    assert values["neither-bind"]["errno"] == 98 and values["both-bind"]["errno"] is None


def test_restart_refused_despite_both_flags_fails():
    ev = evidence()
    ev.facts["cases"]["both"].update(bind_ok=False, bind_errno=98, bind_error="EADDRINUSE")
    assert failed(ev) == {"both-bind"}


def test_new_flag_alone_succeeding_fails():
    """BSD behaviour (only the new socket needs SO_REUSEADDR) is not what Linux does."""
    ev = evidence()
    ev.facts["cases"]["old-without-new-with"].update(bind_ok=True, bind_errno=None, bind_error=None,
                                                    listen_ok=True, reconnect_ok=True)
    assert failed(ev) == {"old-without-new-with-bind"}


def test_no_time_wait_at_bind_fails_the_setup():
    """Without TIME-WAIT on the port the bind result proves nothing about SO_REUSEADDR."""
    ev = evidence()
    case = ev.facts["cases"]["neither"]
    case["server_sockets_before_bind"] = [s for s in case["server_sockets_before_bind"] if s["state"] != "TIME_WAIT"]
    assert "neither-time-wait-holds-port" in failed(ev)


def test_live_listener_judged_from_what_held_the_port():
    """If sock_diag had shown no listener, the rule would have allowed the bind: the check fails."""
    ev = evidence()
    case = ev.facts["cases"]["live-listener"]
    case["server_sockets_before_bind"] = [s for s in case["server_sockets_before_bind"] if s["state"] != "LISTEN"]
    assert failed(ev) == {"live-listener-time-wait-holds-port", "live-listener-bind"}


def test_a_bind_over_an_empty_port_shows_nothing():
    """Had sock_diag seen nothing on the port at bind() (no TIME-WAIT, no listener), a bind() that
    succeeds says nothing about SO_REUSEADDR: not applicable - and the setup check fails."""
    ev = evidence()
    case = ev.facts["cases"]["both"]
    case["server_sockets_before_bind"] = [s for s in case["server_sockets_before_bind"] if s["state"] != "TIME_WAIT"]
    got = {c.name: c for c in sc.SCENARIO.judge(ev)}
    assert got["both-bind"].outcome == "n/a" and "nothing about SO_REUSEADDR" in got["both-bind"].observed
    assert got["both-time-wait-holds-port"].outcome == "fail"
    # refused although nothing was seen on the port: that contradiction stays a failure
    ev = evidence()
    case = ev.facts["cases"]["neither"]
    case["server_sockets_before_bind"] = [s for s in case["server_sockets_before_bind"] if s["state"] != "TIME_WAIT"]
    assert {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}["neither-bind"] == "fail"


def test_a_time_wait_killed_by_the_clients_rst_is_inconclusive_not_failed():
    """One run in 20 over IPv6: the client's ACK and FIN swapped on the way, the server's TIME-WAIT
    ACKed the late ACK, the closed client answered with a RST and TIME-WAIT died before bind():
    the setup raced (R-UNPROVOKED-TWA); without that RST on the wire the same sock_diag is a FAIL."""
    from dataclasses import replace

    from lab.packets import Segment
    from lab.verdict import FAIL, INCONCLUSIVE

    ev = records.evidence("restart-reuseaddr")
    case = ev.facts["cases"]["neither"]
    case["server_sockets_before_bind"] = [s for s in case["server_sockets_before_bind"] if s["state"] != "TIME_WAIT"]
    outcome = {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}
    assert outcome["neither-time-wait-holds-port"] == FAIL
    srv, cli = ev.addresses["server"], ev.addresses["client"]
    template = next(s for s in ev.packets["server"] if s.src == cli)
    rst = replace(template, t=case["bind_t"] - 0.01, sport=41000, dport=case["port"], flags="RST", length=0,
                  payload=b"")
    assert isinstance(rst, Segment) and rst.dst == srv
    ev.packets["server"] = sorted(ev.packets["server"] + [rst], key=lambda s: s.t)
    checks = {c.name: c for c in sc.SCENARIO.judge(ev)}
    assert checks["neither-time-wait-holds-port"].outcome == INCONCLUSIVE
    assert "R-UNPROVOKED-TWA" in checks["neither-time-wait-holds-port"].observed
