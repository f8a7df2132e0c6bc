"""The lab is dual-stack on both backends: every host has its IPv4 and IPv6 addresses on the right
interfaces, routes of both families (and no default route of either), IPv6 forwarding only in the
router, nothing a lesson would not expect (no router advertisement or solicitation, no
autoconfigured address, no address tentative in duplicate address detection - usable at once: a
connection over IPv6 right after bring-up needs one SYN), the neighbours of a shaped link pinned
for both families, and a run over IPv6 (`Lab(family=6)`) whose peers, addresses and report are
IPv6."""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import time

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from lab.core import Lab
from lab.nsops import iproute, read_counters, read_sysctl

pytestmark = pytest.mark.integration

IFA_F_DADFAILED, IFA_F_TENTATIVE, IFA_F_NODAD = 0x08, 0x40, 0x02
RTPROT_RA = 9
QUIET = {"accept_ra": "0", "autoconf": "0", "accept_dad": "0", "disable_ipv6": "0"}


@pytest.fixture
def lab6(backend, tmp_path):
    lab = Lab(backend=backend, artifacts=tmp_path / "a", family=6)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


def ipv6_syns(path) -> list[tuple[str, str]]:
    """(source, destination) of each IPv6 SYN without ACK in a pcap (Ethernet frames), decoded here
    with dpkt: the lab's own decoder is not what this test checks."""
    import dpkt

    out = []
    with open(path, "rb") as f:
        for _t, frame in dpkt.pcap.Reader(f):
            ip6 = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip6, dpkt.ip6.IP6) and isinstance(ip6.data, dpkt.tcp.TCP):
                flags = ip6.data.flags
                if flags & dpkt.tcp.TH_SYN and not flags & dpkt.tcp.TH_ACK:
                    out.append((socket.inet_ntop(socket.AF_INET6, ip6.src), socket.inet_ntop(socket.AF_INET6, ip6.dst)))
    return out


def addresses(host) -> list[dict]:
    with iproute(host.nspath) as ipr:
        out = []
        for m in ipr.get_addr():
            out.append({"family": m["family"], "addr": m.get("IFA_ADDRESS"), "prefixlen": m["prefixlen"],
                        "flags": m.get("IFA_FLAGS", m["flags"]), "scope": m["scope"],
                        "ifname": ipr.get_links(m["index"])[0].get("IFLA_IFNAME")})
        return out


def routes6(host) -> list[dict]:
    with iproute(host.nspath) as ipr:
        return [{"dst": r.get("RTA_DST"), "dst_len": r["dst_len"], "gateway": r.get("RTA_GATEWAY"),
                 "proto": r["proto"], "table": r.get("RTA_TABLE")} for r in ipr.get_routes(family=socket.AF_INET6)]


def test_every_host_has_both_families_on_each_interface_and_nothing_else(lab6):
    topo = lab6.topology
    for name, host in lab6.hosts.items():
        have = addresses(host)
        for net in host.spec.addresses:
            ifname = host.ifname(net)
            on = {(a["family"], a["addr"], a["prefixlen"]) for a in have if a["ifname"] == ifname}
            assert (socket.AF_INET, str(host.addresses[net]), 24) in on, (name, net, on)
            assert (socket.AF_INET6, str(host.addresses6[net]), topo.networks[net].subnet6.prefixlen) in on
            assert host.ifname(net) == ifname           # found by either family's address
        globals6 = {a["addr"] for a in have if a["family"] == socket.AF_INET6 and a["scope"] == 0}
        assert globals6 == {str(a) for a in host.addresses6.values()}, (name, globals6)   # no SLAAC extras
        for a in have:
            if a["family"] == socket.AF_INET6:
                assert not a["flags"] & (IFA_F_TENTATIVE | IFA_F_DADFAILED), (name, a)
        links = {a["ifname"] for a in have if a["family"] == socket.AF_INET6 and a["addr"].startswith("fe80:")}
        assert links == {host.ifname(n) for n in host.addresses}, (name, links)   # NDP needs them


def test_routes_of_both_families_and_no_default(lab6):
    for name, host in lab6.hosts.items():
        rs = [r for r in routes6(host) if r["table"] == 254]
        assert not [r for r in rs if r["dst_len"] == 0], (name, rs)            # no IPv6 default route
        assert not [r for r in rs if r["proto"] == RTPROT_RA], (name, rs)      # none learnt from an RA
        for route in host.spec.routes:
            if route.family == 6:
                assert {"dst": str(route.dest.network_address), "dst_len": route.dest.prefixlen,
                        "gateway": str(route.via)} in [{k: r[k] for k in ("dst", "dst_len", "gateway")} for r in rs]
        with iproute(host.nspath) as ipr:
            with pytest.raises(NetlinkError) as info:                          # nothing outside the lab
                ipr.route("get", dst="2001:db8::1", family=socket.AF_INET6)
            assert info.value.code in (errno.ENETUNREACH, errno.EHOSTUNREACH), (name, info.value)


def test_ipv6_is_quiet_and_forwarded_by_the_router_only(lab6):
    for name, host in lab6.hosts.items():
        ifnames = [host.ifname(n) for n in host.addresses]
        for scope in ["all", "default", *ifnames]:
            for key, value in QUIET.items():
                assert read_sysctl(host.nspath, f"net.ipv6.conf.{scope}.{key}") == value, (name, scope, key)
            want = "1" if name == "router" else "0"
            assert read_sysctl(host.nspath, f"net.ipv6.conf.{scope}.forwarding") == want, (name, scope)
        assert lab6.sysctls[name]["net.ipv6.conf.all.forwarding"] == ("1" if name == "router" else "0")
        assert lab6.sysctls[name]["net.ipv6.conf.all.accept_ra"] == "0"


def test_usable_at_once_one_syn_forwarded_no_ra_no_dad(lab6):
    """Right after bring-up a connection over IPv6 goes through the router with its first SYN; no
    router solicitation or advertisement and no duplicate address detection probe in any host."""
    router_before = read_counters(lab6.hosts["router"].nspath)["Ip6OutForwDatagrams"]
    t = time.monotonic()
    server, client = lab6.peer("server"), lab6.peer("client")
    assert server.listen("L", 5000).ok
    conn = client.connect("c", lab6.host("server").address, 5000)
    took = time.monotonic() - t
    assert conn.ok and conn["remote"] == [str(lab6.host("server").addresses6["right"]), 5000], conn
    assert server.accept("L", as_="s").ok
    client.close("c")
    print(f"\nfirst IPv6 connection {took * 1000:.1f} ms after the lab was up (peers started included)")
    assert read_counters(lab6.hosts["router"].nspath)["Ip6OutForwDatagrams"] - router_before >= 3
    lab6.close()
    syns = ipv6_syns(lab6.artifacts / "client.pcap")
    assert syns == [(str(lab6.host("client").addresses6["left"]), str(lab6.host("server").addresses6["right"]))]
    for name, counters in lab6.counters_after.items():
        for key in ("Icmp6OutRouterSolicits", "Icmp6InRouterAdvertisements", "Icmp6OutRouterAdvertisements",
                    "Icmp6InRouterSolicits"):
            assert counters.get(key, 0) == 0, (name, key, counters.get(key))
        # DAD probes are neighbour solicitations from :: (the unspecified address): none may arrive
        assert counters.get("Ip6InAddrErrors", 0) == 0, name


def test_the_run_is_ipv6_in_its_report_and_hosts(lab6):
    assert lab6.family == 6 and all(h.family == 6 for h in lab6.hosts.values())
    d = lab6.describe()
    assert d["family"] == 6
    for name, host in lab6.hosts.items():
        assert d["hosts"][name]["addresses"] == {k: str(v) for k, v in host.addresses6.items()}
        assert d["hosts"][name]["addresses4"] == {k: str(v) for k, v in host.addresses.items()}
        assert isinstance(host.address, ipaddress.IPv6Address) and isinstance(host.addr(4), ipaddress.IPv4Address)
    json.dumps(d)


def test_a_shaped_links_neighbours_are_pinned_for_both_families(lab6):
    from lab.netem import pin_neighbours

    router, server = lab6.hosts["router"], lab6.hosts["server"]
    pin_neighbours(router, server, "right")
    for host, peer in ((router, server), (server, router)):
        with iproute(host.nspath) as ipr:
            permanent = {n.get("NDA_DST") for n in ipr.get_neighbours() if n["state"] == 0x80}
        assert {str(peer.addresses["right"]), str(peer.addresses6["right"])} <= permanent, (host.name, permanent)


def test_an_ipv4_run_of_the_same_lab_still_has_ipv6_idle(backend, tmp_path):
    with Lab(backend=backend, artifacts=tmp_path / "a") as lab:
        assert lab.family == 4 and isinstance(lab.host("server").address, ipaddress.IPv4Address)
        assert lab.describe()["hosts"]["client"]["addresses6"] == {"left": str(lab.hosts["client"].addresses6["left"])}
        assert lab.peer("server").listen("L", 5000)["local"][0] == "0.0.0.0"
