"""scenarios.who_closes_first.SCENARIO.judge on the evidence of a real netns run (tests/data/scenarios,
made from report.json: packets, sock_diag timeline, counters, sysctls, facts), then with one
observation or one sysctl changed: exactly the checks about it must fail."""

from __future__ import annotations

from dataclasses import replace

from lab.evidence import Evidence
from lab.records import TimerSample
from lab.timeline import Event
from scenarios import who_closes_first as sc

from . import records


def evidence(name: str = "who-closes-first") -> Evidence:
    return records.evidence(name)


def failed(ev: Evidence) -> set[str]:
    return {c.name for c in sc.SCENARIO.judge(ev) if not c.passed}


def test_real_run_passes():
    checks = sc.SCENARIO.judge(evidence())
    assert len(checks) == 5 and all(c.passed for c in checks), [c.observed for c in checks if not c.passed]


def test_passive_closer_in_time_wait_fails_its_case():
    ev = evidence()
    port = ev.facts["cases"]["client-first"]["client_port"]
    last = max(e.t for e in ev.timeline)
    sock = {"state": "TIME_WAIT", "src": ev.addresses["server"], "sport": sc.PORT, "dst": ev.addresses["client"],
            "dport": port, "timer": "timewait", "expires_ms": 59000, "retrans": 0, "inode": 0}
    ev.timeline.append(Event(last + 0.01, "server", "state", "TIME_WAIT", {"socket": sock, "previous": None}))
    assert failed(ev) == {"client-first-only-client-holds-time-wait"}


def test_closing_not_sampled_fails():
    ev = evidence()
    ev.timeline = [e for e in ev.timeline if not (e.kind == "state" and e.data["socket"]["state"] == "CLOSING")]
    assert failed(ev) == {"simultaneous-both-closing"}


def test_fin_that_covers_our_fin_is_no_closing_proof():
    """If the server's FIN had acknowledged the client's FIN, the client would have gone to
    TIME-WAIT straight from FIN-WAIT-1: no CLOSING, whatever sock_diag said."""
    ev = evidence()
    port = ev.facts["cases"]["simultaneous"]["client_port"]
    srv = ev.addresses["server"]
    fixed = []
    for s in ev.packets["client"]:
        if s.src == srv and s.dport == port and s.has("FIN"):
            s = replace(s, ack=(s.ack + 1) & 0xFFFFFFFF)
        fixed.append(s)
    ev.packets["client"] = fixed
    assert failed(ev) == {"simultaneous-both-closing"}


def test_expectation_follows_tw_buckets():
    """The same observations judged as if the client had no TIME-WAIT room: the client's
    TIME_WAIT sockets now contradict the expectation."""
    ev = evidence()
    ev.sysctls["client"]["net.ipv4.tcp_max_tw_buckets"] = "0"
    assert failed(ev) == {"client-first-only-client-holds-time-wait", "simultaneous-both-hold-time-wait"}


def outcomes(ev: Evidence) -> dict:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def _without_closing(ev: Evidence) -> Evidence:
    ev.timeline = [e for e in ev.timeline if not (e.kind == "state" and e.data["socket"]["state"] == "CLOSING")]
    return ev


def test_closing_no_sample_saw_is_inconclusive_not_a_failure():
    """The captures prove CLOSING on both ends; sock_diag has no sample of either socket in those
    milliseconds (the sampler fell behind): it could not have seen CLOSING - not the kernel's fault."""
    ev = _without_closing(evidence())
    port = ev.facts["cases"]["simultaneous"]["client_port"]
    fin = next(s for s in ev.packets["client"] if s.dport == port and s.has("FIN") and s.src == ev.addresses["server"])
    ev.sampler["gaps"] = [[fin.t - 0.01, fin.t + 0.3]]
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["simultaneous-both-closing"]
    assert c.outcome == "inconclusive", c.observed
    assert "no sock_diag sample of the client's socket" in c.observed and "longest gap there: 310.0 ms" in c.observed


def test_closing_contradicted_by_a_sample_fails():
    """A sample of the client's socket taken while its capture says CLOSING, showing another state."""
    ev = _without_closing(evidence())
    port = ev.facts["cases"]["simultaneous"]["client_port"]
    cli, srv = ev.addresses["client"], ev.addresses["server"]
    conn = [s for s in ev.packets["client"] if port in (s.sport, s.dport) and sc.PORT in (s.sport, s.dport)]
    peer_fin = next(s for s in conn if s.src == srv and s.has("FIN"))
    my_fin = next(s for s in conn if s.src == cli and s.has("FIN"))
    acked = next(s for s in conn if s.src == srv and s.t > peer_fin.t and s.ack == (my_fin.seq + 1) & 0xFFFFFFFF)
    mid = (peer_fin.t + acked.t) / 2
    ev.timer_samples["client"] = [TimerSample(mid, f"{cli}:{port}-{srv}:{sc.PORT}", "FIN_WAIT1", "on", 200, 0,
                                              mid + 0.0001)]
    assert outcomes(ev)["simultaneous-both-closing"] == "fail"


def test_a_fin_missing_from_the_captures():
    """The client's FIN never in server.pcap: the order of the FINs is unknown. A failure when the
    capture is complete; inconclusive when tcpdump dropped packets there."""
    ev = evidence()
    port = ev.facts["cases"]["client-first"]["client_port"]
    cli = ev.addresses["client"]
    ev.packets["server"] = [s for s in ev.packets["server"] if not (s.src == cli and s.sport == port and s.has("FIN"))]
    assert outcomes(ev)["client-first-only-client-holds-time-wait"] == "fail"
    ev.captures["server"] = {"captured": 50, "received": 51, "dropped": 1}
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["client-first-only-client-holds-time-wait"]
    assert c.outcome == "inconclusive" and "tcpdump in server dropped 1 packets" in c.observed
    # a TIME_WAIT where there must be none still fails, whatever the capture missed
    ev.sysctls["client"]["net.ipv4.tcp_max_tw_buckets"] = "0"
    assert outcomes(ev)["client-first-only-client-holds-time-wait"] == "fail"


def test_crossing_fins_missing_from_a_dropping_capture_are_inconclusive():
    ev = evidence()
    port = ev.facts["cases"]["simultaneous"]["client_port"]
    srv = ev.addresses["server"]
    ev.packets["client"] = [s for s in ev.packets["client"] if not (s.src == srv and s.dport == port and s.has("FIN"))]
    got = outcomes(ev)
    assert got["simultaneous-fins-cross"] == "fail" and got["simultaneous-both-closing"] == "fail"
    ev.captures["client"] = {"captured": 50, "received": 52, "dropped": 2}
    got = outcomes(ev)
    assert got["simultaneous-fins-cross"] == "inconclusive" and got["simultaneous-both-closing"] == "inconclusive"


def test_a_time_wait_killed_before_any_sample_counts_and_is_named():
    """A CI run in Debian 12's VM (TCG): the server's pure ACK, sent 4 ms before its FIN, reached
    the client 1.4 ms after it; the client's TIME-WAIT ACKed that old segment, the closed server
    answered with a RST at the client's RCV.NXT, and the TIME-WAIT was gone 3.4 ms after the final
    ACK, before the sampler's next dump (the client's states: FIN_WAIT1 -> gone). With
    tcp_rfc1337=0 that is RFC 1337's assassination, unprovoked: the client held TIME-WAIT."""
    ev = evidence("who-closes-first-unprovoked-twa")
    check = next(c for c in sc.SCENARIO.judge(ev) if c.name == "client-first-only-client-holds-time-wait")
    assert check.outcome == "pass", check.observed
    assert "TIME_WAIT" not in check.values["client_states"]
    assert check.values["client_time_wait_killed"]["after_ms"] == 3.4
    assert "R-UNPROVOKED-TWA" in check.observed and "R-UNPROVOKED-TWA" in check.citation
    assert failed(ev) == set()


def test_with_rfc1337_on_a_time_wait_never_seen_still_fails():
    ev = evidence("who-closes-first-unprovoked-twa")
    ev.sysctls["client"]["net.ipv4.tcp_rfc1337"] = "1"      # then the RST cannot have killed it
    assert failed(ev) == {"client-first-only-client-holds-time-wait"}


def test_without_time_waits_answer_before_the_rst_it_still_fails():
    ev = evidence("who-closes-first-unprovoked-twa")
    port = ev.facts["cases"]["client-first"]["client_port"]
    acks = [s for s in ev.packets["client"] if s.sport == port and s.has("ACK") and not s.has("FIN")
            and not s.has("RST")]
    ev.packets["client"].remove(acks[-1])                   # the ACK TIME-WAIT sent to the late segment
    assert failed(ev) == {"client-first-only-client-holds-time-wait"}
