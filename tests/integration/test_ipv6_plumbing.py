"""The fault layer, the captures and the pinned neighbours of an IPv6 lab, on both backends, read
from what the kernels did (the pcaps, the counters, the neighbour tables), not from the report:

* a rule of the ``inet`` table matching ``ip6`` addresses holds the client's SYN; the logged copy
  decodes as IPv6 (flow label, the hop limit the router lowered); sent again from the router's raw
  IPv6 socket, the server answers it - its partial checksum (veth offload) was completed over the
  IPv6 pseudo-header, or the server would have dropped it (TcpInCsumErrors);
* a segment behind extension headers is captured at the far end and decoded;
* the neighbours across a link are pinned for IPv6 (unique local and link-local) as for IPv4.
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from lab import netem
from lab.checksum import tcp_checksummed
from lab.core import Lab
from lab.nsops import inside, iproute, read_counters
from lab.packets import read_pcap
from tests.unit.test_packets_ipv6 import DEST_OPTS, HOP_BY_HOP, tcp6

pytestmark = pytest.mark.integration

PORT = 5000


def poll(what, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


@pytest.fixture
def lab6(backend, tmp_path):
    with Lab(backend=backend, artifacts=tmp_path / "artifacts", family=6, port=PORT) as lab:
        yield lab


def test_a_held_ipv6_syn_is_logged_and_sent_again_with_a_checksum_the_server_takes(lab6):
    lab = lab6
    client, server = lab.host("client"), lab.host("server")
    assert (client.address.version, server.address.version) == (6, 6)
    lab.peer("server").listen("L", PORT)
    before = read_counters(server.nspath)
    fault = lab.faults.hold("held-syn", client, server, flags="syn")
    assert fault.rule.startswith(f"ip6 saddr {{ {client.address} }} ip6 daddr {{ {server.address} }} ")
    # the client gives up while its SYNs are held, so only the copy sent again can reach the server
    gave_up = lab.peer("client").connect("c", server.address, PORT, timeout_s=1)
    assert not gave_up.ok
    lab.peer("client").close("c")
    held = poll(lambda: lab.faults.logged("held-syn"))
    assert held, "nothing logged"
    syn = held[0]
    assert (syn.src, syn.dst, syn.flags) == (str(client.address), str(server.address), "SYN")
    assert syn.flow_label is not None and syn.hop_limit == 63 and syn.ttl is None
    assert tcp_checksummed(syn.ip) != syn.ip, "the logged SYN already had a whole checksum: nothing to show"
    sent = lab.faults.inject([syn], server)
    lab.faults.lift("held-syn")

    def answered():
        return [s for s in read_pcap(lab.artifacts / "server.pcap")
                if s.t >= sent and s.flags == "SYN,ACK" and s.ack == (syn.seq + 1) % 2**32]
    assert poll(answered), "the server never answered the SYN sent again"
    after = read_counters(server.nspath)
    assert "TcpInCsumErrors" in after                     # the kernel counts them (shared by both families)
    assert after["TcpInCsumErrors"] - before.get("TcpInCsumErrors", 0) == 0


def test_a_segment_behind_extension_headers_is_captured_and_decoded(lab6):
    lab = lab6
    client, router, server = lab.host("client"), lab.host("router"), lab.host("server")
    ip = tcp_checksummed(tcp6(src=str(client.address), dst=str(server.address), sport=40999, dport=PORT + 1,
                              flags=2, seq=12345, tsval=None, flow=0x5A5A5, hlim=64, exts=[HOP_BY_HOP, DEST_OPTS]))
    with inside(router.nspath):
        raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        raw.sendto(ip, (str(server.address), 0))
    finally:
        raw.close()

    def seen():
        return [s for s in read_pcap(lab.artifacts / "server.pcap") if s.sport == 40999]
    got = poll(seen)
    assert got, "the segment with extension headers never showed in the server's capture"
    assert (got[0].flags, got[0].seq, got[0].flow_label, got[0].dst) == ("SYN", 12345, 0x5A5A5, str(server.address))


def neighbours(nspath: str, ifname: str) -> dict[str, tuple[str, int]]:
    """address -> (lladdr, NUD state) of the interface's neighbour table, both families."""
    with iproute(nspath) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        return {m.get("NDA_DST"): (m.get("NDA_LLADDR"), m["state"]) for m in ipr.get_neighbours(ifindex=index)}


def link(host, network: str) -> tuple[str, str, list[str]]:
    """(interface, MAC, IPv6 addresses) of *host* on *network*."""
    ifname = host.ifname(network)
    with iproute(host.nspath) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        mac = ipr.get_links(index)[0].get("IFLA_ADDRESS")
        v6 = [m.get("IFA_ADDRESS") for m in ipr.get_addr(family=socket.AF_INET6, index=index)]
    return ifname, mac, v6


def test_neighbours_are_pinned_for_both_families(lab6):
    from pyroute2.netlink.rtnl.ndmsg import states

    lab = lab6
    router, server = lab.host("router"), lab.host("server")
    network = next(n for n in server.addresses6 if n in router.addresses6)
    netem.pin_neighbours(router, server, network)
    r_if, r_mac, r_v6 = link(router, network)
    s_if, s_mac, s_v6 = link(server, network)
    assert any(ipaddress.ip_address(a).is_link_local for a in s_v6) and str(server.addresses6[network]) in s_v6
    for (me, ifname), peer_v6, peer_v4, peer_mac in (
            ((router, r_if), s_v6, str(server.addresses[network]), s_mac),
            ((server, s_if), r_v6, str(router.addresses[network]), r_mac)):
        table = neighbours(me.nspath, ifname)
        for addr in [peer_v4, *peer_v6]:
            assert table.get(addr) == (peer_mac, states["permanent"]), (me.name, addr, table.get(addr))
