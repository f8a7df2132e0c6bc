"""Unit tests (no root) for what wandering-duplicates rests on: the peer's blast/drain ops over
loopback (patterns phased by stream offset, markers counted across reads), and its checks on
empty evidence under each expectation: nothing observed must never pass."""

from __future__ import annotations

import sys
import threading

import pytest

from lab.backends.base import Host
from lab.evidence import Evidence
from lab.peers import Peer
from lab.timeline import Timeline
from scenarios import wandering_duplicates

LOOPBACK = "127.0.0.1"


@pytest.fixture
def pair():
    timeline = Timeline()
    host = Host(name="local", spec=None, nspath="/proc/self/ns/net", exec_prefix=[],
                python=[sys.executable, "-u"])
    server, client = Peer(host, timeline), Peer(host, timeline)
    port = server.listen("L", 0, addr=LOOPBACK)["local"][1]
    client.connect("c", LOOPBACK, port)
    server.accept("L", as_="s")
    yield server, client
    server.stop()
    client.stop()


def test_blast_and_drain_count_markers_across_reads(pair):
    server, client = pair
    n = 3_000_001                                     # several 1 MB chunks and reads, odd length
    got = {}
    th = threading.Thread(target=lambda: got.setdefault(
        "r", server.drain("s", n, keep=10, markers=("OLD-", "D-OL", "NEW-"))))
    th.start()
    sent = client.blast("c", n, "OLD-")
    th.join()
    res = got["r"]
    assert sent.ok and sent["sent"] == n
    assert res.ok and res["len"] == n and not res["timeout"] and not res["eof"]
    assert res.data == b"OLD-OLD-OL"
    assert res["markers"] == {"OLD-": n // 4, "D-OL": n // 4 - 1, "NEW-": 0}


def test_blast_offset_continues_the_pattern(pair):
    server, client = pair
    client.blast("c", 6, "NEW-", offset=0)
    client.blast("c", 7, "NEW-", offset=6)             # the second send goes on where the first stopped
    res = server.drain("s", 13, keep=13)
    assert res.data == b"NEW-NEW-NEW-N"


def test_drain_stops_at_eof_and_timeout(pair):
    server, client = pair
    client.blast("c", 100, "x")
    res = server.drain("s", 1000, timeout_s=0.2)
    assert res.ok and res["len"] == 100 and res["timeout"] and not res["eof"]
    client.close("c")
    res = server.drain("s", 1000, timeout_s=2)
    assert res.ok and res["len"] == 0 and res["eof"] and not res["timeout"]


def empty_evidence(sysctls: dict) -> Evidence:
    return Evidence(packets={"client": [], "server": [], "router": []}, timeline=[],
                    counters={}, sysctls=sysctls,
                    addresses={"client": "10.77.1.10", "router": "10.77.1.2", "server": "10.77.2.10"},
                    faults={}, facts={}, hz=250)


@pytest.mark.parametrize("sysctls", [
    {},
    {"client": {"net.ipv4.tcp_timestamps": "0"}, "server": {"net.ipv4.tcp_timestamps": "0",
                                                             "net.ipv4.tcp_rfc1337": "0"}},
    {"server": {"net.ipv4.tcp_rfc1337": "1"}},
])
def test_wandering_duplicates_nothing_observed_fails(sysctls):
    checks = wandering_duplicates.check(empty_evidence(sysctls))
    assert len(checks) >= 9
    assert not [c.name for c in checks if c.passed]
    assert all(c.citation and c.expected and c.observed for c in checks)
