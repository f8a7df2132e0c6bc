"""retransmitted-fin with a gVisor client: a real netns run (tests/data/scenarios) judged again. The
Linux server's orphan is judged as always; the client's TIME-WAIT, which sock_diag cannot see in
gVisor, comes from its ACK of every FIN and from the router's probe at the end."""

from __future__ import annotations

from dataclasses import replace

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


def test_without_the_probes_answer_a_gvisor_client_is_not_taken_to_hold_time_wait():
    """No answer to the probe (or no probe) says nothing of the client: both checks that need its
    TIME-WAIT are inconclusive - not passed, and not failed for what the lab did not see."""
    ev = evidence()
    ev.facts["client_probe_at_end"]["answer"] = "none"
    got = outcomes(ev)
    assert {n for n, o in got.items() if o != "pass"} == {"give-up-is-silent", "every-fin-acked-every-ack-lost"}
    assert set(got.values()) == {"pass", "inconclusive"}
    del ev.facts["client_probe_at_end"]
    assert outcomes(ev)["give-up-is-silent"] == "inconclusive"


# -- a gVisor server: no orphan limit, its FINs watched on the wire (`invoke run retransmitted-fin
# --backend netns --stack server=gvisor`, runsc 0.0~20221219) ------------------------------------

def server_run():
    ev = records.evidence("retransmitted-fin-gvisor-server")
    assert ev.options["sysctls_not_set"] == ["server:net.ipv4.tcp_orphan_retries=3"]
    return ev


def test_a_gvisor_servers_fins_are_judged_and_its_missing_budget_is_not_applicable():
    got = {c.name: c for c in sc.SCENARIO.judge(server_run())}
    assert {n: c.outcome for n, c in got.items()} == {
        "server-orphaned-in-last-ack": "n/a", "every-fin-acked-every-ack-lost": "pass",
        "tlp-then-rto-doubling": "pass", "orphan-retries-count": "n/a", "give-up-when-budget-spent": "n/a",
        "give-up-is-silent": "n/a"}
    schedule = got["tlp-then-rto-doubling"].values
    assert schedule["stack"] == "gvisor" and schedule["fin_count"] == 6 and len(schedule["fin_seqs"]) == 1
    assert got["give-up-is-silent"].values["server_rsts"] == 0


def test_a_gvisor_fin_schedule_that_does_not_back_off_fails():
    ev = server_run()
    fins = [s for s in ev.packets["server"] if s.has("FIN") and s.sport == 5000]
    t0 = fins[0].t
    even = {id(f): replace(f, t=t0 + 0.2 * i) for i, f in enumerate(fins)}      # a fixed 200 ms: no doubling
    ev.packets["server"] = sorted((even.get(id(s), s) for s in ev.packets["server"]), key=lambda s: s.t)
    got = outcomes(ev)
    assert {n for n, o in got.items() if o not in ("pass", "n/a")} == {"tlp-then-rto-doubling"}


def test_both_ends_on_gvisor_the_clients_time_wait_comes_from_the_probe():
    """`--stack client=gvisor --stack server=gvisor`: the client's TIME-WAIT (no sock_diag either
    side) from the router's probe at the end; a RST there fails the check, no answer (or no probe)
    leaves it unseen: inconclusive, never a pass."""
    ev = records.evidence("retransmitted-fin-gvisor-both")
    assert ev.facts["client_probe_at_end"]["answer"] == "ack"
    assert outcomes(ev)["every-fin-acked-every-ack-lost"] == "pass"
    ev.facts["client_probe_at_end"]["answer"] = "rst"
    assert outcomes(ev)["every-fin-acked-every-ack-lost"] == "fail"
    del ev.facts["client_probe_at_end"]
    assert outcomes(ev)["every-fin-acked-every-ack-lost"] == "inconclusive"
