"""The nft rules lab.faults writes, for either address family: the hosts' addresses of the lab's
family (``ip`` or ``ip6`` saddr/daddr in the ``inet`` table), the TCP flags alike. libnftables is
not run here (tests/integration/test_ipv6_plumbing.py runs the rules in a router)."""

from __future__ import annotations

import ipaddress

import pytest

from lab import faults as faults_mod
from lab.backends.base import Host
from lab.errors import UsageError
from lab.faults import Faults
from lab.timeline import Timeline


def host(name: str, v4: dict[str, str], v6: dict[str, str], family: int) -> Host:
    return Host(name=name, spec=None, nspath=f"/run/netns/{name}", exec_prefix=[], python=[],
                addresses={k: ipaddress.IPv4Address(a) for k, a in v4.items()},
                addresses6={k: ipaddress.IPv6Address(a) for k, a in v6.items()}, family=family)


def lab_hosts(family: int) -> dict[str, Host]:
    return {"client": host("client", {"a": "10.77.1.10"}, {"a": "fd77:1a2b:1::10"}, family),
            "router": host("router", {"a": "10.77.1.2", "b": "10.77.2.2"},
                           {"a": "fd77:1a2b:1::2", "b": "fd77:1a2b:2::2"}, family),
            "server": host("server", {"b": "10.77.2.10"}, {"b": "fd77:1a2b:2::10"}, family)}


@pytest.fixture
def nft(monkeypatch):
    """What the fault layer hands nft, in order; nft's echo of an added rule is faked."""
    scripts: list[str] = []

    class FakeNft:
        def __init__(self, nspath):
            self.nspath = nspath

        def run(self, script, echo=False, json=False):
            scripts.append(script)
            return "add rule inet twlab forward ... # handle 7\n" if echo else ""

    monkeypatch.setattr(faults_mod, "Nft", FakeNft)
    return scripts


@pytest.mark.parametrize("family, proto, src, dst", [
    (4, "ip", "10.77.1.10", "10.77.2.10"),
    (6, "ip6", "fd77:1a2b:1::10", "fd77:1a2b:2::10"),
])
def test_a_rule_matches_the_lab_family_addresses(tmp_path, nft, family, proto, src, dst):
    hosts = lab_hosts(family)
    layer = Faults(hosts["router"], Timeline(), tmp_path / "faults.pcap")
    fault = layer.drop("lost-ack", hosts["client"], hosts["server"], flags="ack")
    assert fault.rule.startswith(f"{proto} saddr {{ {src} }} {proto} daddr {{ {dst} }} "
                                 "tcp flags & (fin|syn|rst|psh|ack|urg) == (ack) ")
    assert fault.handle == 7
    assert f"add rule inet twlab forward {fault.rule}" in nft[-1]
    other = "ip6" if proto == "ip" else "ip"
    assert f"{other} saddr" not in fault.rule


def test_a_host_on_two_networks_is_matched_by_both_of_its_addresses(tmp_path, nft):
    hosts = lab_hosts(6)
    layer = Faults(hosts["server"], Timeline(), tmp_path / "faults.pcap")
    fault = layer.copy("from-router", hosts["router"], hosts["client"], has="fin")
    assert fault.rule.startswith("ip6 saddr { fd77:1a2b:1::2, fd77:1a2b:2::2 } ip6 daddr { fd77:1a2b:1::10 } "
                                 "tcp flags & (fin) == (fin) ")
    assert fault.rule.endswith("queue-threshold 1")          # copy: no verdict


def test_flags_are_checked_whatever_the_family(tmp_path, nft):
    hosts = lab_hosts(6)
    layer = Faults(hosts["router"], Timeline(), tmp_path / "faults.pcap")
    with pytest.raises(UsageError, match="unknown TCP flag 'ece'"):
        layer.drop("x", hosts["client"], hosts["server"], flags="ece")
