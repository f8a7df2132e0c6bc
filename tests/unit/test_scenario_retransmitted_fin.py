"""retransmitted-fin's model of the kernel's give-up rule (tcp_model_timeout(), tcp_orphan_retries(),
and the prediction of how many RTO retransmissions fit the budget, from the first RTO and the timer
wheel), against numbers worked out by hand from the source; then its checks on a real netns run
(tcp_orphan_retries=4: 4 RTO retransmissions, the socket gone at T1 + 6207..6212 ms), which the
give-up check used to fail by comparing the budget with the last timer's due time instead of with
when the kernel really gave up."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios import _orphan_budget as model
from scenarios import retransmitted_fin as sc
from scenarios._orphan_budget import effective_retries, model_timeout_ms

from . import records

RUN = "retransmitted-fin-orphan-retries-4"


def failed(ev) -> set[str]:
    return {c.name for c in sc.SCENARIO.judge(ev) if not c.passed}


@pytest.mark.parametrize("boundary, ms", [
    (0, 200), (1, 600), (2, 1400), (3, 3000), (8, 102_200), (9, 204_600),
    (10, 204_600 + 120_000), (15, 924_600),        # tcp_retries2=15: the classic 924.6 s
])
def test_model_timeout(boundary, ms):
    assert model_timeout_ms(boundary) == ms


def test_orphan_retries_zero_means_eight():
    assert effective_retries(0) == 8
    assert [effective_retries(b) for b in (1, 3, 15)] == [1, 3, 15]


def test_prediction_for_orphan_retries_1_to_6_at_hz_250():
    """rto0 = 51 jiffies (204 ms, this machine): the timeouts after T1 come at 2, 6, 14, 30, 62 x rto0
    plus the wheel's rounding (8 jiffies at level 1, 64 at level 2, 512 at level 3), so the counts
    are 2, 3, 4, 4, 5, 6 - N + 1 up to N = 3, then N: at N=4 the 5th timeout comes at 6204 ms at
    the earliest (6120 + rounding), past the 6200 ms budget."""
    got = {n: model.predict({250: (51,)}, model_timeout_ms(n)) for n in range(1, 7)}
    assert {n: p.counts for n, p in got.items()} == {1: (2,), 2: (3,), 3: (4,), 4: (4,), 5: (5,), 6: (6,)}
    # the 4th timeout 2908..2940 ms (a wakeup a jiffy late adds 4 ms), the 5th 6204..6460 ms
    assert got[4].timeout_ms[5] == (6204.0, 6460.0) and got[4].timeout_ms[4] == (2908.0, 2940.0)
    assert got[3].timeout_ms[4] == (2908.0, 2940.0)                  # 60 ms inside 3000
    assert "at least 4 ms past the budget" in got[4].text()


@pytest.mark.parametrize("rto0, n, counts", [
    (52, 3, (3, 4)),     # the 4th timeout at 2980..3008 ms: the 3000 ms budget inside that range
    (50, 4, (4, 5)),     # the 5th at 6100..6352 ms against 6200 ms
    (52, 4, (4,)),
])
def test_prediction_accepts_either_count_where_the_budget_falls_among_the_timeouts(rto0, n, counts):
    p = model.predict({250: (rto0,)}, model_timeout_ms(n))
    assert p.counts == counts
    if len(counts) > 1:
        assert " or ".join(map(str, counts)) in p.text() and "either count is right" in p.text()


def test_decision_compares_whole_milliseconds():
    assert model.decide(6204, 6200) == model.GIVE_UP
    assert model.decide(6200, 6200) == model.EITHER            # the kernel's own sub-ms cliff
    assert model.decide(6198.5, 6200) == model.EITHER          # floor(now) - floor(T1) may reach 6200
    assert model.decide(6196, 6200) == model.RETRANSMIT


def test_first_rto_from_sock_diag_and_the_wire():
    # the timer armed at T1 is 2 x rto0 exactly: it decides, whatever the TLP -> T1 gap (52 or 53
    # ticks for rto0 = 51: the level-0 tick, and a late wakeup) or the timer armed after the TLP
    # (rto0 less the time since the probe left, rounded up: 50 or 51 jiffies) read
    assert model.rto0_candidates(250, 409.9, 206.2, 208.0) == (51,)
    assert model.rto0_candidates(250, 409.9, 205.7, 212.0) == (51,)
    assert model.rto0_candidates(250, 410.1, 202.2, 204.0) == (51,)
    # without sock_diag the wire alone leaves a tick open
    assert model.rto0_candidates(250, gap_ms=212.0) == (51, 52)
    assert model.rto0_candidates(250, gap_ms=208.0) == (50, 51)
    assert model.rto0_candidates(250) == ()


def test_a_late_wakeup_is_within_the_model():
    """Measured here: the 2nd timeout 444 ms after T1 (102 + 9 jiffies: the level-1 granule and one
    late jiffy) - inside the model's range, and the count unchanged."""
    p = model.predict({250: (51,)}, model_timeout_ms(1))
    assert p.timeout_ms[2] == (412.0, 444.0) and p.counts == (2,)


def test_recorded_run_passes():
    checks = {c.name: c for c in sc.SCENARIO.judge(records.evidence(RUN))}
    assert all(c.passed for c in checks.values()), [c.observed for c in checks.values() if not c.passed]
    count = checks["orphan-retries-count"]
    assert count.values["predicted_rto_retransmissions"] == [4] == [count.values["observed_rto_retransmissions"]]
    assert count.values["rto0_ticks"] == {"250": [51]} and count.values["armed_at_t1_ms"] == 409.6
    assert "prediction: 4 - " in count.expected
    assert checks["give-up-when-budget-spent"].values["give_up_window_after_t1_ms"][0] > 6200


@pytest.mark.parametrize("shift_ms", [-0.9, -0.4, 0.4, 0.9])
def test_no_sub_millisecond_cliff(shift_ms):
    """The same wire shape with T1 - the reference of every elapsed time - captured up to 0.9 ms
    earlier or later (no sock_diag sample falls in between): the verdict must not change."""
    ev = records.evidence(RUN)
    fins = [s for s in ev.packets["server"] if s.sport == sc.PORT and s.has("FIN")]
    t1 = fins[2]
    ev.packets["server"] = [replace(s, t=s.t + shift_ms / 1000) if s is t1 else s for s in ev.packets["server"]]
    assert not [x for x in ev.timer_samples["server"] if min(t1.t, t1.t + shift_ms / 1000) <= x[0]
                and x[0] <= max(t1.t, t1.t + shift_ms / 1000)]
    assert failed(ev) == set()


def test_expectation_follows_orphan_retries():
    """The same run judged as if tcp_orphan_retries were 5 (12600 ms): 5 retransmissions predicted,
    4 seen, and the socket went long before the budget was spent."""
    ev = records.evidence(RUN)
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "5"
    assert failed(ev) == {"orphan-retries-count", "give-up-when-budget-spent"}


def test_a_retransmission_past_the_budget_fails():
    """Judged against N=3 (3000 ms), the 4th RTO retransmission at T1 + 2916 ms still fits, but the
    socket going at T1 + 6207 ms is a timeout late; against a budget the 4th exceeded, it fails."""
    ev = records.evidence(RUN)
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "3"
    assert failed(ev) == set()
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "2"        # 1400 ms: the 3rd and 4th came after
    assert {"orphan-retries-count", "give-up-when-budget-spent"} <= failed(ev)


# -- what the captures or the sampler missed is not judged; what they show still is --------------

def outcomes(ev) -> dict[str, str]:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def _fins(ev, at="server"):
    return [s for s in ev.packets[at] if s.sport == sc.PORT and s.has("FIN")]


def _drops(ev, *hosts, n=1):
    for h in hosts:
        ev.captures[h] = {"captured": 20, "received": 20 + n, "dropped": n}


def test_an_ack_missing_from_a_dropping_client_pcap_is_inconclusive():
    """One of the client's ACKs absent from client.pcap: a failure when the capture is complete,
    inconclusive when its tcpdump dropped packets. One in server.pcap (it was not lost) still fails."""
    ev = records.evidence(RUN)
    ack = next(s for s in ev.packets["client"] if s.dport == sc.PORT and s.flags == "ACK" and s.t > _fins(ev)[2].t)
    ev.packets["client"] = [s for s in ev.packets["client"] if s is not ack]
    assert outcomes(ev)["every-fin-acked-every-ack-lost"] == "fail"
    _drops(ev, "client")
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["every-fin-acked-every-ack-lost"]
    assert c.outcome == "inconclusive" and "tcpdump in client dropped 1 packets" in c.observed
    ev = records.evidence(RUN)
    _drops(ev, "client", "server")
    ev.packets["server"] = sorted(ev.packets["server"] + [replace(ack, t=ack.t + 0.0001)], key=lambda s: s.t)
    assert outcomes(ev)["every-fin-acked-every-ack-lost"] == "fail"


def _no_samples(ev, t0: float, t1: float) -> None:
    """The sampler stalled between *t0* and *t1*: no sample, and the cadence says so."""
    ev.timer_samples["server"] = [x for x in ev.timer_samples["server"] if not t0 < x[0] < t1]
    ev.sampler = {"gaps": [[t0, t1]], "gap_threshold_ms": 10.0}


def test_a_retransmission_no_sample_followed_is_inconclusive():
    """No sock_diag sample between the tail-loss probe and T1 (the sampler stalled): whether that
    FIN was the probe, and so which were RTOs, is unseen - the backoff, the count and the give-up
    cannot be judged. Without the stall in the cadence, the same hole still fails."""
    ev = records.evidence(RUN)
    fins = _fins(ev)
    ev.timer_samples["server"] = [x for x in ev.timer_samples["server"] if not fins[1].t < x[0] < fins[2].t]
    got = outcomes(ev)
    assert got["tlp-then-rto-doubling"] == "fail"
    _no_samples(ev, fins[1].t - 0.001, fins[2].t + 0.001)
    checks = {c.name: c for c in sc.SCENARIO.judge(ev)}
    for name in ("tlp-then-rto-doubling", "orphan-retries-count", "give-up-when-budget-spent"):
        assert checks[name].outcome == "inconclusive", (name, checks[name].observed)
    assert "the sampler's longest gap there: 210.1 ms" in checks["tlp-then-rto-doubling"].observed
    assert checks["tlp-then-rto-doubling"].values["kinds"][:2] == [None, None]


def test_a_wrong_kind_seen_still_fails_in_a_stall():
    """A sample after the probe showing idiag_retrans 2 (neither a probe's 0 nor an RTO's 1)."""
    ev = records.evidence(RUN)
    fins = _fins(ev)
    ev.sampler = {"gaps": [[fins[3].t - 0.001, fins[4].t + 0.001]], "gap_threshold_ms": 10.0}
    ev.timer_samples["server"] = [(x[0], x[1], x[2], x[3], x[4], 2, *x[6:]) if fins[1].t < x[0] < fins[2].t else x
                                  for x in ev.timer_samples["server"]]
    assert outcomes(ev)["tlp-then-rto-doubling"] == "fail"


def _gone_event(ev):
    return next(e for e in ev.timeline if e.kind == "state" and e.host == "server"
                and e.data["socket"]["state"] == "GONE" and e.data["socket"]["dport"] != 0)


def _gone_at(ev, t: float) -> None:
    g = _gone_event(ev)
    ev.timeline = [replace(e, t=t) if e is g else e for e in ev.timeline]


def test_the_orphans_end_unseen_in_a_stall_is_inconclusive():
    """The sampler stalled from the last sample that saw the orphan until 400 ms after the latest
    its timer could run: whether the socket went at its timeout is unseen (main passed this on the
    model's window alone). A sample that saw it alive past that still fails."""
    ev = records.evidence(RUN)
    g = _gone_event(ev)
    last = max(x[0] for x in ev.timer_samples["server"] if x[2] == "LAST_ACK")
    _gone_at(ev, g.t + 0.4)
    ev.sampler = {"gaps": [[last, g.t + 0.4]], "gap_threshold_ms": 10.0}
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["give-up-when-budget-spent"]
    assert c.outcome == "inconclusive", c.observed
    assert "whether it went at its timeout is unseen" in c.observed
    key = next(x[1] for x in ev.timer_samples["server"] if x[2] == "LAST_ACK")
    ev.timer_samples["server"].append((g.t + 0.35, key, "LAST_ACK", "on", 0, 4, g.t + 0.35001))
    ev.sampler = {"gaps": [[last, g.t + 0.34], [g.t + 0.36, g.t + 0.4]], "gap_threshold_ms": 10.0}
    assert outcomes(ev)["give-up-when-budget-spent"] == "fail"


def test_the_orphan_unseen_alive_at_the_budget_is_inconclusive():
    """No sample from 1.5 s before the budget until the socket was seen gone: whether it lived past
    the budget is unseen (main passed it on the model's due time)."""
    ev = records.evidence(RUN)
    t1 = _fins(ev)[2].t
    g = _gone_event(ev)
    _no_samples(ev, t1 + 4.7, g.t)
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["give-up-when-budget-spent"]
    assert c.outcome == "inconclusive", c.observed
    assert "whether it lived until its timeout is unseen" in c.observed


def test_give_up_silence_needs_one_complete_capture():
    """No RST in server.pcap proves silence only if tcpdump dropped nothing there; client.pcap
    (the router forwards what the server sends) can prove it instead. Both dropping: not judged;
    a RST in client.pcap: fails."""
    ev = records.evidence(RUN)
    _drops(ev, "server")
    assert outcomes(ev)["give-up-is-silent"] == "pass"
    _drops(ev, "client")
    assert outcomes(ev)["give-up-is-silent"] == "inconclusive"
    ev = records.evidence(RUN)
    _drops(ev, "server")
    fin = _fins(ev, "client")[-1]
    ev.packets["client"].append(replace(fin, t=_gone_event(ev).t + 0.01, flags="RST", ack=0))
    assert outcomes(ev)["give-up-is-silent"] == "fail"


def test_silence_after_a_going_sock_diag_never_saw_is_not_judged():
    """"No FIN after the socket went" needs the moment it went: without it the silence is unseen."""
    ev = records.evidence(RUN)
    g = _gone_event(ev)
    ev.timeline = [e for e in ev.timeline if e is not g]
    c = {c.name: c for c in sc.SCENARIO.judge(ev)}["give-up-is-silent"]
    assert c.outcome == "inconclusive" and "never saw the server's connection go" in c.observed, c.observed


def test_last_ack_never_sampled_in_a_stall_is_inconclusive():
    """The sampler never polled while the orphan was in LAST_ACK (seconds): it could not see it."""
    ev = records.evidence(RUN)
    fins = _fins(ev)
    ev.timeline = [e for e in ev.timeline if not (e.kind == "state" and e.data["socket"]["state"] == "LAST_ACK")]
    g = _gone_event(ev)
    ev.timeline = [replace(e, data={**e.data, "previous": "CLOSE_WAIT", "socket": {**e.data["socket"], "inode": 46791}})
                   if e is g else e for e in ev.timeline]
    assert outcomes(ev)["server-orphaned-in-last-ack"] == "fail"
    ev.sampler = {"gaps": [[fins[0].t - 0.01, g.t]], "gap_threshold_ms": 10.0}
    assert outcomes(ev)["server-orphaned-in-last-ack"] == "inconclusive"
