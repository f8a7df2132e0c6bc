"""time-wait-duration and five-tuple with a gVisor server: real netns runs (tests/data/scenarios)
judged again. What they judge is the Linux client's (its TIME-WAIT and orphan lifetimes, its
4-tuple); the server's FINs, answers and SYN-ACKs came from gVisor's netstack, whose sockets
sock_diag cannot see, so the runs waited for them on the wire."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios import five_tuple, time_wait_duration

from . import records

CASES = {"time-wait-duration-gvisor-server": time_wait_duration, "five-tuple-gvisor-server": five_tuple}


def outcomes(sc, ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


@pytest.mark.parametrize("record", sorted(CASES))
def test_the_real_run_judges_every_check_of_the_linux_client(record):
    ev = records.evidence(record)
    assert ev.options["stacks"] == {"server": "gvisor"}
    got = outcomes(CASES[record], ev)
    assert set(got.values()) == {"pass"}, got
    assert len(got) == {"time-wait-duration-gvisor-server": 5, "five-tuple-gvisor-server": 8}[record]


def test_time_wait_duration_a_late_fin_the_client_did_not_reset_fails():
    """Without the client's RST to gVisor's late FIN (taken out of every capture), only the check
    about it moves."""
    ev = records.evidence("time-wait-duration-gvisor-server")
    b = ev.facts["key_b"][1]
    for host, segs in ev.packets.items():
        ev.packets[host] = [s for s in segs if not (s.sport == b and s.has("RST"))]
    got = outcomes(time_wait_duration, ev)
    assert {n for n, o in got.items() if o != "pass"} == {"late-fin-after-fin-wait2-gets-rst"}


def test_five_tuple_a_recycled_syn_without_the_isn_step_fails():
    """The recycled SYN toward gVisor with a sequence number not 65537 above the old snd_nxt: only
    the ISN check moves."""
    ev = records.evidence("five-tuple-gvisor-server")
    port = ev.facts["bound_port"]
    syns = [s for s in ev.packets["client"] if s.sport == port and s.dport == five_tuple.PORT and s.flags == "SYN"]
    assert len(syns) == 2                      # the old connection's, then the recycled one
    ev.packets["client"] = [replace(s, seq=(s.seq + 1000) & 0xFFFFFFFF) if s is syns[1] else s
                            for s in ev.packets["client"]]
    got = outcomes(five_tuple, ev)
    assert {n for n, o in got.items() if o != "pass"} == {"recycled-isn-above-old-snd-nxt"}
