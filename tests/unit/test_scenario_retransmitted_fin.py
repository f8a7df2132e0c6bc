"""retransmitted-fin's model of the kernel's give-up rule (tcp_model_timeout(), tcp_orphan_retries(),
the RTO retransmissions a budget allows), against numbers worked out by hand from the source."""

from __future__ import annotations

import pytest

from scenarios.retransmitted_fin import effective_retries, model_timeout_ms, predicted_rto_count


@pytest.mark.parametrize("boundary, ms", [
    (0, 200), (1, 600), (2, 1400), (3, 3000), (8, 102_200), (9, 204_600),
    (10, 204_600 + 120_000), (15, 924_600),        # tcp_retries2=15: the classic 924.6 s
])
def test_model_timeout(boundary, ms):
    assert model_timeout_ms(boundary) == ms


def test_orphan_retries_zero_means_eight():
    assert effective_retries(0) == 8
    assert [effective_retries(b) for b in (1, 3, 15)] == [1, 3, 15]


@pytest.mark.parametrize("rto0, boundary, count", [
    # after T1 the timeouts come at 2, 6, 14, 30 x rto0: retransmit while that is < the budget
    (204, 1, 2),       # 408 < 600 <= 1224
    (204, 2, 3),       # 1224 < 1400 <= 2856
    (204, 3, 4),       # 2856 < 3000 <= 6120: one more than tcp_orphan_retries
    (200, 3, 4),       # even at TCP_RTO_MIN exactly
    (220, 3, 3),       # a slower path: 14 x 220 = 3080 >= 3000
    (204, 8, 8),       # 204 x 510 = 104040 >= 102200 > 204 x 254
])
def test_predicted_count(rto0, boundary, count):
    assert predicted_rto_count(rto0, model_timeout_ms(boundary)) == count


def test_late_timers_can_only_shorten_the_count():
    budget = model_timeout_ms(4)                              # 6200 ms; on time: 30 x 204 = 6120
    assert predicted_rto_count(204, budget) == 5
    assert predicted_rto_count(204, budget, [36, 36, 36, 260]) == 4
