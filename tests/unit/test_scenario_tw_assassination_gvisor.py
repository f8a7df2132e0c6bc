"""tw-assassination with a gVisor end: two real netns runs (tests/data/scenarios: a gVisor client,
whose TIME-WAIT ignored the RST, and a gVisor server, whose closed port sent it) judged again, then
with one segment changed: exactly the checks about it move."""

from __future__ import annotations

from dataclasses import replace

from scenarios import tw_assassination as sc

from . import records


def outcomes(ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def client_run():
    return records.evidence("tw-assassination-gvisor-client")


def _edit(ev, host: str, pick, change) -> int:
    """Apply *change* to the segments of *host*'s capture that *pick* selects; how many."""
    n, out = 0, []
    for s in ev.packets[host]:
        if pick(s):
            s, n = change(s), n + 1
        if s is not None:
            out.append(s)
    ev.packets[host] = out
    return n


def test_gvisor_client_ignores_the_rst_and_says_why_paws_is_not_judged():
    got = outcomes(client_run())
    assert got == {"old-duplicate-reaches-time-wait": "pass", "time-wait-acks-it": "pass",
                   "closed-server-answers-rst": "pass", "paws-does-not-prevent-it": "n/a",
                   "time-wait-survives-rst": "pass"}
    check = next(c for c in sc.SCENARIO.judge(client_run()) if c.name == "time-wait-survives-rst")
    assert "handleTimeWaitSegment" in check.citation and check.values["state_after"] == "TIME_WAIT"


def test_a_rst_answer_to_the_probe_means_the_rst_killed_it():
    ev = client_run()
    probe_at = ev.facts["probe_at"]
    assert _edit(ev, "client", lambda s: s.sport == sc.CLIENT_PORT and s.t > probe_at and s.flags == "ACK",
                 lambda s: replace(s, flags="RST", ack=0)) == 1
    got = outcomes(ev)
    assert {n for n, o in got.items() if o not in ("pass", "n/a")} == {"time-wait-survives-rst"}
    assert got["time-wait-survives-rst"] == "fail"


def test_no_rst_at_all_leaves_nothing_to_survive():
    ev = client_run()
    for host in ("client", "server"):
        _edit(ev, host, lambda s: s.has("RST"), lambda s: None)
    got = outcomes(ev)
    assert got["time-wait-survives-rst"] == "inconclusive"
    assert got["closed-server-answers-rst"] != "pass"


def test_a_replay_before_the_close_was_done_is_not_in_time_wait():
    ev = client_run()
    want_ack = next(s for s in ev.packets["client"] if s.sport == sc.PORT and s.has("FIN"))
    last = (want_ack.seq + want_ack.length + 1) & 0xFFFFFFFF
    assert _edit(ev, "client", lambda s: s.sport == sc.CLIENT_PORT and s.flags == "ACK" and s.ack == last,
                 lambda s: None) >= 1
    assert outcomes(ev)["old-duplicate-reaches-time-wait"] == "fail"


def test_gvisor_server_reflects_the_rst_and_linux_is_judged_as_always():
    ev = records.evidence("tw-assassination-gvisor-server")
    got = outcomes(ev)
    assert got == {"old-duplicate-reaches-time-wait": "pass", "time-wait-acks-it": "pass",
                   "closed-server-answers-rst": "pass", "paws-does-not-prevent-it": "pass",
                   "time-wait-assassinated": "pass"}
    rst = next(c for c in sc.SCENARIO.judge(ev) if c.name == "closed-server-answers-rst")
    assert rst.values["TcpOutRsts"] is None and "gVisor" in rst.observed      # no Linux counter to read


def test_the_gvisor_servers_rst_must_still_be_right_on_the_wire():
    ev = records.evidence("tw-assassination-gvisor-server")
    assert _edit(ev, "server", lambda s: s.has("RST"), lambda s: replace(s, seq=(s.seq + 1) & 0xFFFFFFFF)) >= 1
    assert outcomes(ev)["closed-server-answers-rst"] == "fail"
