"""retransmitted-fin with a gVisor client: a real netns run (tests/data/scenarios) judged again. The
Linux server's orphan is judged as always; the client's TIME-WAIT, which sock_diag cannot see in
gVisor, comes from its ACK of every FIN and from the router's probe at the end."""

from __future__ import annotations

from scenarios import retransmitted_fin as sc

from . import records


def evidence():
    return records.evidence("retransmitted-fin-gvisor-client")


def outcomes(ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def test_real_run_passes_with_the_clients_time_wait_from_the_wire():
    ev = evidence()
    assert set(outcomes(ev).values()) == {"pass"}
    assert ev.facts["client_sockets_at_end"] == [] and ev.facts["client_probe_at_end"]["answer"] == "ack"


def test_a_client_gone_by_the_end_fails_the_silent_give_up():
    ev = evidence()
    ev.facts["client_probe_at_end"]["answer"] = "rst"
    got = outcomes(ev)
    assert {n for n, o in got.items() if o != "pass"} == {"give-up-is-silent", "every-fin-acked-every-ack-lost"}


def test_without_the_probe_a_gvisor_client_is_not_taken_to_hold_time_wait():
    ev = evidence()
    del ev.facts["client_probe_at_end"]
    assert outcomes(ev)["give-up-is-silent"] == "fail"
