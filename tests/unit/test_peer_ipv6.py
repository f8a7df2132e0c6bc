"""The peer agent's address family: AF_INET6 sockets when its host's family is 6 (listening on
"::", connecting to an IPv6 address), [address, port] results in either family, IPV6_V6ONLY left
to the kernel unless a step sets it, and a v4-mapped client (mapped=True). Run over this
machine's loopback (::1 and 127.0.0.1), as tests/unit/test_peer.py is; no root needed."""

from __future__ import annotations

import socket
import sys

import pytest

from lab.backends.base import Host
from lab.peer import Peer
from lab.timeline import Timeline

pytestmark = pytest.mark.skipif(not socket.has_ipv6, reason="this Python has no IPv6")


def host(family: int) -> Host:
    return Host(name=f"v{family}", spec=None, nspath="/proc/self/ns/net", exec_prefix=[],
                python=[sys.executable, "-u"], family=family)


@pytest.fixture
def peer():
    made: list[Peer] = []

    def make(family: int) -> Peer:
        p = Peer(host(family), Timeline())
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def bindv6only() -> int:
    with open("/proc/sys/net/ipv6/bindv6only") as f:
        return int(f.read())


def test_a_family_6_peer_listens_on_the_ipv6_wildcard_and_connects_over_ipv6(peer):
    server, client = peer(6), peer(6)
    lis = server.listen("L", 0)
    assert lis.ok and lis["local"][0] == "::"                 # the wildcard of AF_INET6
    port = lis["local"][1]
    conn = client.connect("c", "::1", port)
    assert conn.ok and conn["state"] == "ESTABLISHED"
    assert conn["remote"] == ["::1", port]                     # [address, port], no flowinfo/scope
    assert len(conn["local"]) == 2 and conn["local"][0] == "::1"
    acc = server.accept("L", as_="s")
    assert acc.ok and acc["remote"] == conn["local"] and acc["local"] == ["::1", port]


def test_a_family_4_peer_is_unchanged(peer):
    server = peer(4)
    assert server.listen("L", 0)["local"][0] == "0.0.0.0"
    refused = peer(4).connect("c", "::1", server.info("L")["local"][1])
    assert not refused.ok                                      # an AF_INET socket cannot reach ::1


def test_v6only_is_the_kernels_unless_a_step_sets_it(peer):
    # the kernel's default (bindv6only, 0 unless changed): a "::" listener takes IPv4 clients too
    server, v4client = peer(6), peer(4)
    port = server.listen("L", 0)["local"][1]
    got = v4client.connect("c", "127.0.0.1", port)
    assert got.ok == (bindv6only() == 0)
    strict = peer(6)
    sport = strict.listen("S", 0, v6only=True)["local"][1]
    refused = v4client.connect("d", "127.0.0.1", sport)
    assert not refused.ok and refused.error == "ECONNREFUSED"


def test_a_mapped_client_reaches_an_ipv4_server_as_ffff(peer):
    server, client = peer(4), peer(4)
    port = server.listen("L", 0, addr="127.0.0.1")["local"][1]
    conn = client.connect("c", "127.0.0.1", port, mapped=True)
    assert conn.ok and conn["remote"] == ["::ffff:127.0.0.1", port]
    acc = server.accept("L", as_="s")
    assert acc.ok and acc["remote"][0] == "127.0.0.1"          # the server sees plain IPv4


def test_a_step_may_give_its_own_family(peer):
    p = peer(4)
    lis = p.listen("L", 0, family=6)
    assert lis.ok and lis["local"][0] == "::"
    many = peer(4).connect_many("c", 2, "::1", lis["local"][1], family=6)
    assert many.ok and many["failed"] == []
    got = p.accept_many("L", "s", 2)
    assert [c["remote"][0] for c in got["connections"]] == ["::1", "::1"]
