"""compose.yaml dual-stack: IPv6 prefixes per network, an ipv6_address per service, routes of both
families parsed from the commands; a compose file without IPv6 still loads (IPv4 only); and the
IPv6 half of a compose file refused where it is malformed, with one line saying what to fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.topology import DEFAULT_COMPOSE, Route, load

IP6 = ipaddress.IPv6Address
NET6 = ipaddress.IPv6Network


def test_every_network_has_a_unique_local_64():
    topo = load()
    assert {n: net.subnet6 for n, net in topo.networks.items()} == {
        "left": NET6("fd74:776c:6162:1::/64"), "right": NET6("fd74:776c:6162:2::/64")}
    for net in topo.networks.values():
        assert net.subnet6.subnet_of(NET6("fd00::/8"))        # RFC 4193, locally assigned
    assert topo.has_ipv6 and topo.without_ipv6() == ""


def test_every_host_has_an_ipv6_address_on_each_network():
    topo = load()
    assert {n: dict(h.addresses6) for n, h in topo.hosts.items()} == {
        "client": {"left": IP6("fd74:776c:6162:1::10")},
        "router": {"left": IP6("fd74:776c:6162:1::2"), "right": IP6("fd74:776c:6162:2::2")},
        "server": {"right": IP6("fd74:776c:6162:2::10")},
    }
    assert topo.address("server", 6) == IP6("fd74:776c:6162:2::10")
    assert topo.address("server") == ipaddress.IPv4Address("10.77.2.10")      # family 4 by default
    assert topo.hosts["router"].addrs(6) == topo.hosts["router"].addresses6


def test_ipv6_prefixes_interpolated_per_instance():
    topo = load(env={"TWLAB_LEFT6": "fd3c:9a1e:44b0:1", "TWLAB_RIGHT6": "fd3c:9a1e:44b0:2"})
    assert topo.networks["left"].subnet6 == NET6("fd3c:9a1e:44b0:1::/64")
    assert topo.hosts["client"].addresses6 == {"left": IP6("fd3c:9a1e:44b0:1::10")}
    assert Route(NET6("fd3c:9a1e:44b0:2::/64"), IP6("fd3c:9a1e:44b0:1::2")) in topo.hosts["client"].routes
    assert Route(NET6("fd3c:9a1e:44b0:1::/64"), IP6("fd3c:9a1e:44b0:2::2")) in topo.hosts["server"].routes
    assert "fd3c:9a1e:44b0:2::/64 via fd3c:9a1e:44b0:1::2" in topo.hosts["client"].command[2]


def _v4_only(text: str) -> str:
    """compose.yaml with every IPv6 line taken out."""
    keep = [ln for ln in text.splitlines() if "6" not in ln.split(":")[0] and "enable_ipv6" not in ln
            and ("TWLAB_LEFT6" not in ln and "TWLAB_RIGHT6" not in ln or ln.lstrip().startswith("command:"))]
    return "\n".join(keep) + "\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return path


def _commands_v4(text: str) -> str:
    """The commands without their IPv6 routes."""
    import re

    return re.sub(r"ip -6 route (del default|replace \S+ via \S+) 2>/dev/null; ", "", text)


def test_a_compose_file_without_ipv6_still_loads(tmp_path):
    topo = load(_write(tmp_path, _v4_only(_commands_v4(DEFAULT_COMPOSE.read_text()))))
    assert all(net.subnet6 is None for net in topo.networks.values())
    assert all(not h.addresses6 for h in topo.hosts.values())
    assert [r.family for h in topo.hosts.values() for r in h.routes] == [4, 4]
    assert not topo.has_ipv6
    assert "has no IPv6 subnet" in topo.without_ipv6() and "'left', 'right'" in topo.without_ipv6()
    assert topo.router is not None and topo.router.name == "router"


def _edited(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = DEFAULT_COMPOSE.read_text()
    assert text.count(old) >= count, old
    return _write(tmp_path, text.replace(old, new, count))


@pytest.mark.parametrize("old, new, words", [
    ("        - subnet: ${TWLAB_LEFT6:-fd74:776c:6162:1}::/64\n",
     "        - subnet: ${TWLAB_LEFT6:-fd74:776c:6162:1}::/64\n        - subnet: fd00:1::/64\n",
     ["'left'", "at most one IPv6 subnet", "1 and 2"]),
    ("        - subnet: ${TWLAB_LEFT6:-fd74:776c:6162:1}::/64", "        - subnet: fd74::1/64",
     ["'left'", "host bits set"]),
    ("        ipv6_address: ${TWLAB_LEFT6:-fd74:776c:6162:1}::10\n", "",
     ["services.client.networks.left", "needs a fixed ipv6_address", "fd74:776c:6162:1::/64"]),
    ("        ipv6_address: ${TWLAB_LEFT6:-fd74:776c:6162:1}::10", "        ipv6_address: fd74:776c:6162:9::10",
     ["client", "fd74:776c:6162:9::10 is outside left"]),
    ("        ipv6_address: ${TWLAB_LEFT6:-fd74:776c:6162:1}::10", "        ipv6_address: 10.77.1.10",
     ["needs a fixed ipv6_address"]),
    ("via ${TWLAB_LEFT6:-fd74:776c:6162:1}::2", "via ${TWLAB_RIGHT6:-fd74:776c:6162:2}::2",
     ["client: route via fd74:776c:6162:2::2 is on none of its networks"]),
    ("ip -6 route replace ${TWLAB_RIGHT6:-fd74:776c:6162:2}::/64 via ${TWLAB_LEFT6:-fd74:776c:6162:1}::2",
     "ip -6 route replace ${TWLAB_RIGHT6:-fd74:776c:6162:2}::/64 via ${TWLAB_LEFT:-10.77.1}.2",
     ["client", "mixes IPv4 and IPv6"]),
    ("ip -6 route replace ${TWLAB_RIGHT6:-fd74:776c:6162:2}::/64",
     "ip -4 route replace ${TWLAB_RIGHT6:-fd74:776c:6162:2}::/64", ["client", "`ip -4 route`", "ip -6 route"]),
])
def test_malformed_ipv6_refused_in_one_line(tmp_path, old, new, words):
    with pytest.raises(TopologyError) as info:
        load(_edited(tmp_path, old, new))
    message = str(info.value)
    assert "\n" not in message
    for w in words:
        assert w in message, (w, message)


def test_docker_ipv6_without_a_subnet_refused_and_the_by_hand_lab_is_ipv4_only(tmp_path):
    # compose.yaml keeps Docker's IPv6 off: a Docker IPv6 network turns IPv6 forwarding on in this
    # machine's own namespace (libnetwork's setupBridgeIPv6); the lab reads the subnet all the same
    assert DEFAULT_COMPOSE.read_text().count("    enable_ipv6: false") == 2
    text = DEFAULT_COMPOSE.read_text().replace("    enable_ipv6: false", "    enable_ipv6: true", 1)
    text = text.replace("        - subnet: ${TWLAB_LEFT6:-fd74:776c:6162:1}::/64\n", "")
    with pytest.raises(TopologyError, match=r"network 'left' sets enable_ipv6 but has no IPv6 subnet"):
        load(_write(tmp_path, text))


def test_an_ipv6_address_on_a_network_without_ipv6_refused(tmp_path):
    text = _v4_only(_commands_v4(DEFAULT_COMPOSE.read_text()))
    text = text.replace("        ipv4_address: ${TWLAB_LEFT:-10.77.1}.10\n",
                        "        ipv4_address: ${TWLAB_LEFT:-10.77.1}.10\n        ipv6_address: fd00::10\n")
    with pytest.raises(TopologyError, match=r"client.networks.left: ipv6_address fd00::10 on a network "
                                            r"without an IPv6 prefix"):
        load(_write(tmp_path, text))


@pytest.mark.parametrize("command, routes", [
    ("ip -6 route add fd00:2::/64 via fd00:1::2", [("fd00:2::/64", "fd00:1::2")]),
    ("ip route replace fd00:2::/64 via fd00:1::2; ip -4 route add 10.0.2.0/24 via 10.0.1.2",
     [("fd00:2::/64", "fd00:1::2"), ("10.0.2.0/24", "10.0.1.2")]),
    ("ip -6 route del default; ip -6 route replace fd00:2::/64 via fd00:1::2&&", [("fd00:2::/64", "fd00:1::2")]),
    ("ip -6 route show", []),
])
def test_routes_of_both_families_from_a_command(command, routes):
    from lab.topology import _routes_from_command

    got = _routes_from_command(("sh", "-c", command), "x")
    assert [(str(r.dest), str(r.via)) for r in got] == routes
