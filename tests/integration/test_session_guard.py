"""The session guard (tests/conftest.py) sees this machine's IPv6 configuration: every
net.ipv6.* sysctl and the IPv6 routes of every table; it reports a change there in one line, and a
dual-stack lab run over IPv6 on either backend changes none of it."""

from __future__ import annotations

import copy

import pytest

from lab.core import Lab
from tests.conftest import host_snapshot, others_labs, snapshot_diff, wait_until

pytestmark = pytest.mark.integration

V6_SECTIONS = ("/proc/sys/net/ipv6", "ip -6 route show table all")


def test_the_snapshot_holds_ipv6_sysctls_and_routes():
    snap = host_snapshot()
    sysctls = snap["/proc/sys/net/ipv6"]
    assert "/proc/sys/net/ipv6/conf/all/forwarding" in sysctls
    assert "/proc/sys/net/ipv6/conf/default/accept_ra" in sysctls
    assert sysctls["/proc/sys/net/ipv6/conf/lo/disable_ipv6"][0] == "lo"          # owned by its interface
    routes = snap["ip -6 route show table all"]
    assert any(line.startswith("local ::1 ") for line in routes), routes         # the table local too


def test_a_changed_ipv6_sysctl_or_route_is_reported():
    before = host_snapshot()
    after = copy.deepcopy(before)
    key = "/proc/sys/net/ipv6/conf/all/forwarding"
    owner, value = after["/proc/sys/net/ipv6"][key]
    after["/proc/sys/net/ipv6"][key] = (owner, "1\n" if value.strip() == "0" else "0\n")
    after["ip -6 route show table all"]["fd74::/64 via fe80::1 dev eth0 metric 1024 pref medium"] = ("eth0", "")
    diff = snapshot_diff(before, after)
    assert f"/proc/sys/net/ipv6: {key}: {value!r} -> {after['/proc/sys/net/ipv6'][key][1]!r}" in diff
    assert "ip -6 route show table all: new 'fd74::/64 via fe80::1 dev eth0 metric 1024 pref medium'" in diff
    # a lab's own objects that are gone (a Docker bridge's conf) are not a change
    gone = copy.deepcopy(before)
    gone["/proc/sys/net/ipv6"]["/proc/sys/net/ipv6/conf/br-0123456789ab/forwarding"] = ("br-0123456789ab", "0\n")
    assert snapshot_diff(gone, before) == []


def test_an_ipv6_lab_leaves_this_machines_ipv6_as_it_was(backend, tmp_path):
    others = others_labs()
    before = host_snapshot()
    with Lab(backend=backend, artifacts=tmp_path / "a", family=6, capture=False) as lab:
        server, client = lab.peer("server"), lab.peer("client")
        server.listen("L", 5000)
        assert client.connect("c", lab.host("server").address, 5000).ok
    diff: list[str] = []

    def same() -> bool:
        after = host_snapshot()
        diff[:] = [d for d in snapshot_diff(before, after, others | others_labs()) if d.startswith(V6_SECTIONS)]
        return not diff

    assert wait_until(same, timeout_s=30), diff
