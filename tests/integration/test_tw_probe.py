"""The router's TIME-WAIT prober (lab.twprobe), on the netns backend: on Linux its wire measurement
agrees with sock_diag within the timer wheel's slack, and its probe leaves the timer alone; on
gVisor its probe is answered while TIME-WAIT holds, and the TIME-WAIT ends while being probed (a
probe that restarted the timer would keep it forever)."""

from __future__ import annotations

import time

import pytest

from lab import gvisor, twprobe
from lab.core import Lab
from lab.runner import kernel_hz
from lab.timerwheel import max_late_s

pytestmark = pytest.mark.integration

PORT = 5000
INTERVAL_S = 1.0
CLOCKS_S = 0.05          # the sampler's and the capture's clocks, and the sample's own duration


def client_time_wait(lab: Lab) -> int:
    """Client closes first; the client's port (its socket now in TIME-WAIT)."""
    srv, cli = lab.peer("server"), lab.peer("client")
    srv.listen("L", PORT)
    port = cli.connect("c", str(lab.host("server").address), PORT)["local"][1]
    srv.accept("L", "conn")
    srv.close("L")
    cli.close("c")
    time.sleep(0.2)
    srv.close("conn")
    time.sleep(0.3)
    return port


def test_linux_wire_agrees_with_sock_diag(tmp_path):
    with Lab(backend="netns", artifacts=tmp_path) as lab:
        port = client_time_wait(lab)
        before = [s for s in lab.sockets("client") if s.state == "TIME_WAIT"]
        asked = time.time()
        assert before, "the client holds no TIME-WAIT to probe"
        due = asked + before[0].expires_ms / 1000           # sock_diag: when the timer is due
        got = twprobe.measure(lab, "client", "server", port, PORT, interval_s=INTERVAL_S, timeout_s=90)
        after = [s for s in lab.sockets("client") if s.state == "TIME_WAIT"]
    assert got["probe"] == "syn" and got["gone"], got
    answers = got["answers"]
    assert answers[0]["answer"] == "ack", answers[:3]
    # a probe that restarted the timer would hold the 4-tuple past due + late (or for ever)
    held_until = got["tw_start"] + got["held_until_s"]
    gone_by = got["tw_start"] + got["gone_by_s"]
    late = max_late_s(60.0, kernel_hz())
    # the timer fired at or after its due time, and at most one wheel granule (plus a tick) late
    assert gone_by >= due - CLOCKS_S, (gone_by - due, got)
    assert held_until <= due + late + CLOCKS_S, (held_until - due, late, got)
    assert not after, after


@pytest.mark.skipif(gvisor.runsc_missing() is not None, reason="runsc is not installed")
def test_gvisor_answers_the_ack_probe_and_times_out(tmp_path):
    with Lab(backend="netns", artifacts=tmp_path, stacks={"client": "gvisor"}) as lab:
        port = client_time_wait(lab)
        got = twprobe.measure(lab, "client", "server", port, PORT, interval_s=INTERVAL_S, timeout_s=120,
                              first=("syn",))
    assert got["probe"] == "ack" and got["stack"] == "gvisor"
    assert got["first"] == [{"probe": "syn", "answer": "none"}], got["first"]  # gVisor drops an ACK-less SYN
    kinds = [a["answer"] for a in got["answers"]]
    assert kinds[0] == "ack", kinds
    assert got["gone"], "gVisor's TIME-WAIT never ended while probed: the probe restarts its timer"
    assert kinds[-1] == "rst" and set(kinds[:-1]) == {"ack"}, kinds
    assert got["held_until_s"] is not None and got["gone_by_s"] - got["held_until_s"] <= 2 * INTERVAL_S
