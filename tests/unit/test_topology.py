"""compose.yaml -> Topology: the real file, its interpolation, and malformed files refused.

The malformed cases live in tests/data/topology/<case>/: a compose.yaml and an expected-error
file listing (one per line) what the TopologyError's message must contain.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from lab import compose_file, topology
from lab.errors import TopologyError, UsageError
from lab.topology import DEFAULT_COMPOSE, Route, load

DATA = Path(__file__).resolve().parent.parent / "data" / "topology"
CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir())

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
IP6 = ipaddress.IPv6Address
NET6 = ipaddress.IPv6Network


def test_default_compose_is_the_repo_file():
    assert DEFAULT_COMPOSE == Path(__file__).resolve().parents[2] / "compose.yaml"
    assert DEFAULT_COMPOSE.is_file()


def test_compose_hosts_addresses_and_networks():
    topo = load()
    assert topo.name == "twlab"
    assert list(topo.hosts) == ["client", "router", "server"]
    assert {n: h.addresses for n, h in topo.hosts.items()} == {
        "client": {"left": IP("10.77.1.10")},
        "router": {"left": IP("10.77.1.2"), "right": IP("10.77.2.2")},
        "server": {"right": IP("10.77.2.10")},
    }
    assert {n: net.subnet for n, net in topo.networks.items()} == {
        "left": NET("10.77.1.0/24"), "right": NET("10.77.2.0/24")}
    assert [h.name for h in topo.members("left")] == ["client", "router"]
    assert [h.name for h in topo.members("right")] == ["router", "server"]
    assert topo.address("server") == IP("10.77.2.10")
    assert topo.address("router") == IP("10.77.1.2")       # its first network's


def test_compose_networks_lead_nowhere():
    for net in load().networks.values():
        assert not net.internal, f"{net.name}: compose.yaml explains why it is not internal"
        assert net.driver_opts["com.docker.network.bridge.enable_ip_masquerade"] == "false"
        # a by-hand lab's bridge carries no IPv4 address of this machine
        assert net.driver_opts["com.docker.network.bridge.inhibit_ipv4"] == "true"
        assert net.leads_nowhere
        assert net.labels == {"org.twlab.lab": "manual"}


def test_compose_host_settings():
    topo = load()
    for host in topo.hosts.values():
        assert host.image == "twlab/host:latest"
        assert host.cap_add == ("NET_ADMIN", "NET_RAW")
        assert host.labels == {"org.twlab.lab": "manual"}
        assert host.init is True
        assert host.command is not None and host.command[:2] == ("sh", "-c")
        assert "ip route del default" in host.command[2]
        assert "ip -6 route del default" in host.command[2]
    assert topo.hosts["router"].sysctls == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    # only the router forwards, also in a by-hand `docker compose up` (a new namespace inherits 1)
    assert topo.hosts["client"].sysctls == topo.hosts["server"].sysctls == {
        "net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}


def test_routes_parsed_from_commands():
    topo = load()
    assert set(topo.hosts["client"].routes) == {Route(NET("10.77.2.0/24"), IP("10.77.1.2")),
                                                Route(NET6("fd74:776c:6162:2::/64"), IP6("fd74:776c:6162:1::2"))}
    assert set(topo.hosts["server"].routes) == {Route(NET("10.77.1.0/24"), IP("10.77.2.2")),
                                                Route(NET6("fd74:776c:6162:1::/64"), IP6("fd74:776c:6162:2::2"))}
    assert topo.hosts["router"].routes == ()     # "ip [-6] route del default" is not a route
    assert sorted(r.family for r in topo.hosts["client"].routes) == [4, 6]


def test_router_is_the_forwarding_host():
    topo = load()
    assert topo.router is not None and topo.router.name == "router"
    assert [h.name for h in topo.hosts.values() if h.forwards] == ["router"]


def test_interpolation_from_env():
    topo = load(env={"TWLAB_LEFT": "10.77.9", "TWLAB_RIGHT": "10.77.10"})
    assert {n: net.subnet for n, net in topo.networks.items()} == {
        "left": NET("10.77.9.0/24"), "right": NET("10.77.10.0/24")}
    assert {n: dict(h.addresses) for n, h in topo.hosts.items()} == {
        "client": {"left": IP("10.77.9.10")},
        "router": {"left": IP("10.77.9.2"), "right": IP("10.77.10.2")},
        "server": {"right": IP("10.77.10.10")},
    }
    assert Route(NET("10.77.10.0/24"), IP("10.77.9.2")) in topo.hosts["client"].routes
    assert Route(NET("10.77.9.0/24"), IP("10.77.10.2")) in topo.hosts["server"].routes
    # the command the container runs is interpolated too, not only what the lab parses from it
    assert "10.77.10.0/24 via 10.77.9.2" in topo.hosts["client"].command[2]
    assert "${" not in " ".join(topo.hosts["client"].command)
    # variables not given keep their defaults
    assert topo.hosts["client"].image == "twlab/host:latest"
    assert topo.hosts["client"].labels == {"org.twlab.lab": "manual"}


def test_interpolation_image_and_label():
    topo = load(env={"TWLAB_IMAGE": "twlab/host:0123456789ab", "TWLAB_LAB": "a1b2c3"})
    assert {h.image for h in topo.hosts.values()} == {"twlab/host:0123456789ab"}
    assert {h.labels["org.twlab.lab"] for h in topo.hosts.values()} == {"a1b2c3"}
    assert {n.labels["org.twlab.lab"] for n in topo.networks.values()} == {"a1b2c3"}


def test_empty_variable_takes_the_default_like_compose():
    # ${VAR:-default}: set-but-empty counts as unset
    topo = load(env={"TWLAB_LEFT": ""})
    assert topo.networks["left"].subnet == NET("10.77.1.0/24")


def test_unknown_host_is_a_usage_error_naming_the_hosts():
    with pytest.raises(UsageError, match=r"unknown host 'clinet'.*client, router, server"):
        load().host("clinet")


@pytest.mark.parametrize("case", CASES)
def test_malformed_compose_refused(case):
    expected = (DATA / case / "expected-error").read_text().splitlines()
    assert expected, f"{case}: expected-error lists nothing"
    with pytest.raises(TopologyError) as info:
        load(DATA / case / "compose.yaml")
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    for part in expected:
        assert part in message, f"{case}: {part!r} not in {message!r}"


def test_every_malformed_case_is_there():
    assert set(CASES) == {"bad-yaml", "address-outside-subnet", "unknown-network", "privileged",
                          "network-would-nat", "missing-variable", "cap-add-sys-admin",
                          "network-mode-host", "pid-host", "devices", "docker-sock", "dev-mount"}


# The cases fail for the reason they are about: fixing exactly that one thing makes them load.

def _fixed(tmp_path: Path, case: str, old: str, new: str) -> Path:
    text = (DATA / case / "compose.yaml").read_text()
    assert old in text
    out = tmp_path / "compose.yaml"
    out.write_text(text.replace(old, new))
    return out


def test_bad_yaml_fixed_loads(tmp_path):
    topo = load(_fixed(tmp_path, "bad-yaml", "twlab/host: latest", "twlab/host:latest"))
    assert topo.router is not None and topo.router.name == "router"


def test_privileged_false_is_accepted(tmp_path):
    topo = load(_fixed(tmp_path, "privileged", "privileged: true", "privileged: false"))
    assert "router" in topo.hosts


def test_internal_network_does_not_nat(tmp_path):
    path = _fixed(tmp_path, "network-would-nat", "  right:\n    ipam:",
                  "  right:\n    internal: true\n    ipam:")
    assert load(path).networks["right"].internal


def test_missing_variable_given_loads():
    topo = load(DATA / "missing-variable" / "compose.yaml", env={"TWLAB_SUBNET": "10.77.1.0/24"})
    assert topo.networks["left"].subnet == NET("10.77.1.0/24")


def test_unreadable_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_route_via_a_foreign_network_refused(tmp_path):
    path = _fixed(tmp_path, "address-outside-subnet", "10.77.3.10", "10.77.2.10")
    load(path)                                                   # fixed: loads
    bad = path.read_text().replace("via 10.77.1.2", "via 10.77.2.2")
    path.write_text(bad)
    with pytest.raises(TopologyError, match=r"client: route via 10.77.2.2 is on none of its networks"):
        load(path)


def test_the_lab_capabilities_are_accepted_however_spelled(tmp_path):
    path = _fixed(tmp_path, "cap-add-sys-admin", "[NET_ADMIN, NET_RAW, SYS_ADMIN]", "[CAP_NET_ADMIN, net_raw]")
    assert load(path).hosts["router"].cap_add == ("CAP_NET_ADMIN", "net_raw")


@pytest.mark.parametrize("cap", ["SYS_MODULE", "SYS_PTRACE", "ALL", "CAP_DAC_OVERRIDE"])
def test_any_other_capability_refused(tmp_path, cap):
    path = _fixed(tmp_path, "cap-add-sys-admin", "SYS_ADMIN", cap)
    with pytest.raises(TopologyError, match=f"{cap.removeprefix('CAP_')} is not allowed"):
        load(path)


@pytest.mark.parametrize("line, words", [
    ("ipc: host", "'ipc: host'"), ("uts: host", "'uts: host'"), ("userns_mode: host", "'userns_mode: host'"),
    ("cgroup: host", "'cgroup: host'"), ("network_mode: container:other", "other's namespace"),
    ("network_mode: service:client", "client's namespace"), ("pid: container:other", "other's namespace"),
])
def test_other_shared_namespaces_refused(tmp_path, line, words):
    path = _fixed(tmp_path, "pid-host", "pid: host", line)
    with pytest.raises(TopologyError, match=words):
        load(path)


@pytest.mark.parametrize("volume", ["/run:/hostrun", "/var/run:/x:ro", "/:/host", "/var/run/docker.sock:/d.sock"])
def test_a_mount_that_holds_the_docker_socket_refused(tmp_path, volume):
    path = _fixed(tmp_path, "docker-sock", "/var/run/docker.sock:/var/run/docker.sock", volume)
    with pytest.raises(TopologyError, match="Docker daemon's socket"):
        load(path)


@pytest.mark.parametrize("volume", ["data:/data", "./shared:/shared", "/tmp:/tmp"])
def test_other_mounts_are_left_to_the_author(tmp_path, volume):
    path = _fixed(tmp_path, "docker-sock", "/var/run/docker.sock:/var/run/docker.sock", volume)
    assert "router" in load(path).hosts


def test_device_cgroup_rules_refused(tmp_path):
    path = _fixed(tmp_path, "devices", "devices: [/dev/net/tun]", "device_cgroup_rules: ['c 10:200 rwm']")
    with pytest.raises(TopologyError, match="no device of this machine"):
        load(path)


def test_a_compose_without_a_router_is_refused(tmp_path):
    """client and server only: no host forwards, so there is nowhere for faults, shaping or the
    router's capture (once an AttributeError in the middle of a run)."""
    text = (DEFAULT_COMPOSE).read_text()
    path = tmp_path / "compose.yaml"
    path.write_text(text.replace("net.ipv4.ip_forward: 1", "net.ipv4.ip_forward: 0"))
    with pytest.raises(TopologyError, match="no router") as info:
        load(path)
    assert "net.ipv4.ip_forward: 1" in str(info.value) and "\n" not in str(info.value)


# compose.yaml's parse kept as JSON (the guest of a VM column then needs no PyYAML)

@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A copy of the default compose file standing in for it, and where its parse is kept."""
    compose = tmp_path / "compose.yaml"
    compose.write_text(topology.DEFAULT_COMPOSE.read_text())
    monkeypatch.setattr(topology, "DEFAULT_COMPOSE", compose)
    monkeypatch.setattr(compose_file, "_kept_file", lambda: tmp_path / "cache" / "compose-parsed.json")
    return compose


def test_the_default_composes_parse_is_kept_and_read_back_the_same(kept, monkeypatch):
    first = topology.load(kept)
    assert (kept.parent / "cache" / "compose-parsed.json").is_file()
    monkeypatch.setattr(compose_file, "_parse_yaml", lambda *a: pytest.fail("parsed again"))
    again = topology.load(kept)
    assert again == first and set(again.hosts) == {"client", "router", "server"}


def test_an_edited_compose_is_parsed_again(kept):
    topology.load(kept)
    kept.write_text(kept.read_text().replace("name: twlab", "name: twlab-edited", 1))
    assert topology.load(kept).name == "twlab-edited"


def test_a_parse_json_would_change_is_not_kept(kept):
    compose_file._keep_parsed("x", {"services": {1: "an integer key"}})
    assert not (kept.parent / "cache").exists()


def test_another_compose_file_is_never_kept(kept, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(kept.read_text())
    topology.load(other)
    assert not (tmp_path / "cache").exists()


def test_a_kept_parse_is_read_without_importing_pyyaml():
    topology.load()                                          # keeps it (the checkout's cache)
    code = ("import sys; from lab import topology; topology.load(); "
            "print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=DEFAULT_COMPOSE.parent)
    assert out.stdout.strip() == "False"
