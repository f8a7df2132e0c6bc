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
from scenarios.retransmitted_fin import effective_retries, model_timeout_ms

from . import records

RUN = "retransmitted-fin-orphan-retries-4"


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
    checks = {c.name: c for c in sc.check(records.evidence(RUN))}
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
    assert records.failed(sc, ev) == set()


def test_expectation_follows_orphan_retries():
    """The same run judged as if tcp_orphan_retries were 5 (12600 ms): 5 retransmissions predicted,
    4 seen, and the socket went long before the budget was spent."""
    ev = records.evidence(RUN)
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "5"
    assert records.failed(sc, ev) == {"orphan-retries-count", "give-up-when-budget-spent"}


def test_a_retransmission_past_the_budget_fails():
    """Judged against N=3 (3000 ms), the 4th RTO retransmission at T1 + 2916 ms still fits, but the
    socket going at T1 + 6207 ms is a timeout late; against a budget the 4th exceeded, it fails."""
    ev = records.evidence(RUN)
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "3"
    assert records.failed(sc, ev) == set()
    ev.sysctls["server"]["net.ipv4.tcp_orphan_retries"] = "2"        # 1400 ms: the 3rd and 4th came after
    assert {"orphan-retries-count", "give-up-when-budget-spent"} <= records.failed(sc, ev)
