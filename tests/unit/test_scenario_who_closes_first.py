"""scenarios.who_closes_first.check on the evidence of a real netns run (tests/data/scenarios,
made from report.json: packets, sock_diag timeline, counters, sysctls, facts), then with one
observation or one sysctl changed: exactly the checks about it must fail."""

from __future__ import annotations

from dataclasses import replace

from lab.evidence import Evidence
from lab.timeline import Event
from scenarios import who_closes_first as sc

from . import records

def evidence(name: str = "who-closes-first") -> Evidence:
    return records.evidence(name)


def failed(ev: Evidence) -> set[str]:
    return records.failed(sc, ev)


def test_real_run_passes():
    checks = sc.check(evidence())
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
