"""time-wait-duration's reading of tcp_fin_time() and the FIN-WAIT-2 paths (tcp_rcv_state_process(),
tcp_keepalive_timer()), and tw-buckets' connection plan."""

from __future__ import annotations

import pytest

from scenarios.time_wait_duration import fin_wait2_plan
from scenarios.tw_buckets import plan


@pytest.mark.parametrize("fin_timeout, lifetime, armed, timer", [
    (5, 5, 5, "timewait"),
    (3, 3, 3, "timewait"),
    (60, 60, 60, "timewait"),
    (0, 0.7, 0.7, "timewait"),          # the 3.5 x RTO floor (TCP_RTO_MIN)
    (70, 20, 10, "keepalive"),          # keepalive 10 s on the full socket, then a 10 s mini-socket
    (120, 120, 60, "keepalive"),
])
def test_fin_wait2_plan(fin_timeout, lifetime, armed, timer):
    p = fin_wait2_plan(fin_timeout)
    assert p["lifetime_s"] == pytest.approx(lifetime)
    assert p["mini_armed_s"] == pytest.approx(armed)
    assert p["first_timer"] == timer


def test_tw_buckets_plan():
    assert plan(3) == (5, 2)
    assert plan(0) == (2, 2)
    assert plan(30) == (32, 2)
    assert plan(262144) == (8, 0)        # the default limit is never reached: no overflow expected
