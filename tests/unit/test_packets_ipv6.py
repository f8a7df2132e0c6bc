"""lab.packets.read_pcap on small IPv6 pcaps made here with dpkt: extension headers (hop-by-hop,
routing, fragment, destination options) walked to TCP, the flow label, traffic class and hop
limit kept, on every link type the lab writes (Ethernet, LINUX_SLL2, NFLOG); IPv6 segments matched
across captures like IPv4 ones."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import dpkt
import pytest

from lab.evidence import Evidence
from lab.packets import Segment, match_arrivals, read_pcap
from lab.pcap import DLT_EN10MB, DLT_LINUX_SLL2, DLT_NFLOG
from tests.unit.test_packets import T0, ethernet, nflog, sll2, tcp_bytes, tlv, write_pcap

CLIENT, SERVER = "fd77:1a2b:1::10", "fd77:1a2b:2::10"
ETH_IP6 = dpkt.ethernet.ETH_TYPE_IP6

HOP_BY_HOP = (0, bytes([0, 0, 1, 4, 0, 0, 0, 0]))                     # PadN
DEST_OPTS = (60, bytes([0, 1, 1, 12]) + bytes(12))                      # 16 bytes
ROUTING_DONE = (43, bytes([0, 2, 2, 0]) + bytes(4) + ipaddress.IPv6Address(SERVER).packed)  # type 2, none left


def fragment(offset: int = 0, more: bool = False) -> tuple[int, bytes]:
    return (44, bytes([0, 0]) + struct.pack("!HI", offset << 3 | more, 0x1234))


def tcp6(src=CLIENT, dst=SERVER, sport=40082, dport=5000, flags=dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK,
         seq=3503583887, ack=2286647501, tsval=1518308876, tsecr=941650663, payload=b"",
         flow=0xABCDE, tclass=0x28, hlim=64, exts: list[tuple[int, bytes]] = ()) -> bytes:
    """An IPv6 packet with one TCP segment, after these extension headers ((type, header bytes
    whose next-header byte is filled in here))."""
    opts = b""
    if tsval is not None:
        opts = b"\x01\x01" + struct.pack(">BBII", dpkt.tcp.TCP_OPT_TIMESTAMP, 10, tsval, tsecr)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=502,
                       off=(20 + len(opts)) // 4, opts=opts, data=payload)
    plain = dpkt.ip6.IP6(src=ipaddress.IPv6Address(src).packed, dst=ipaddress.IPv6Address(dst).packed,
                         nxt=6, hlim=hlim, flow=flow, fc=tclass, data=tcp, plen=len(tcp))
    raw = bytes(plain)                       # dpkt computes the TCP checksum here
    types = [t for t, _ in exts] + [6]
    chain = b"".join(bytes([nxt]) + body[1:] for (_, body), nxt in zip(exts, types[1:], strict=True))
    head = bytearray(raw[:40])
    head[6] = types[0]
    struct.pack_into("!H", head, 4, len(chain) + len(raw) - 40)
    return bytes(head) + chain + raw[40:]


def test_ipv6_segment_and_its_header_fields(tmp_path):
    pcap = write_pcap(tmp_path / "client.pcap", DLT_EN10MB, [
        (T0, ethernet(tcp6(flags=dpkt.tcp.TH_SYN, seq=1, ack=0, tsecr=0), ethertype=ETH_IP6)),
        (T0 + 0.001, ethernet(tcp6(flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, payload=b"hello"), ethertype=ETH_IP6)),
        (T0 + 0.002, ethernet(tcp6(src=SERVER, dst=CLIENT, sport=5000, dport=40082, flow=0x12345, tclass=0,
                                   hlim=63, tsval=None), ethertype=ETH_IP6)),
    ])
    syn, data, fin = read_pcap(pcap)
    assert (syn.src, syn.sport, syn.dst, syn.dport, syn.flags) == (CLIENT, 40082, SERVER, 5000, "SYN")
    assert (syn.flow_label, syn.traffic_class, syn.hop_limit) == (0xABCDE, 0x28, 64)
    assert syn.ttl is None and syn.tos is None
    assert data.length == 5 and data.payload == b"hello" and data.tsval == 1518308876
    assert (fin.src, fin.flags, fin.tsval, fin.flow_label, fin.traffic_class, fin.hop_limit) == (
        SERVER, "FIN,ACK", None, 0x12345, 0, 63)
    assert fin.ip == tcp6(src=SERVER, dst=CLIENT, sport=5000, dport=40082, flow=0x12345, tclass=0, hlim=63,
                          tsval=None)


def test_addresses_are_written_as_the_lab_writes_them(tmp_path):
    """str(ipaddress.ip_address(...)): compressed, lower case (RFC 5952), as the Lab's
    Evidence.addresses and sock_diag's parsing write them."""
    long_form = "FD77:1A2B:0000:0001:0000:0000:0000:0010"
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [(T0, ethernet(tcp6(src=long_form), ethertype=ETH_IP6))])
    (seg,) = read_pcap(pcap)
    assert seg.src == str(ipaddress.ip_address(long_form)) == "fd77:1a2b:0:1::10"


@pytest.mark.parametrize("exts", [
    [HOP_BY_HOP], [DEST_OPTS], [ROUTING_DONE], [fragment()],
    [HOP_BY_HOP, DEST_OPTS, ROUTING_DONE, fragment(), DEST_OPTS],
], ids=["hop-by-hop", "destination-options", "routing", "atomic-fragment", "all-of-them"])
def test_extension_headers_are_walked_to_tcp(tmp_path, exts):
    ip = tcp6(payload=b"x" * 100, exts=exts)
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [(T0, ethernet(ip, ethertype=ETH_IP6))])
    (seg,) = read_pcap(pcap)
    assert (seg.sport, seg.dport, seg.seq, seg.flags, seg.tsval) == (40082, 5000, 3503583887, "FIN,ACK", 1518308876)
    assert seg.length == 100 and seg.payload == b"x" * 100
    assert seg.flow_label == 0xABCDE and seg.ip == ip


def test_a_fragment_after_the_first_has_no_tcp_header(tmp_path):
    """Skipped wherever its fragment header sits (dpkt itself checks only a fragment header
    right after the IPv6 header); the first fragment is read."""
    later = tcp6(exts=[HOP_BY_HOP, fragment(offset=185)])
    first = tcp6(seq=7, payload=b"y" * 40, exts=[HOP_BY_HOP, fragment(offset=0, more=True)])
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [(T0, ethernet(later, ethertype=ETH_IP6)),
                                                        (T0 + 1, ethernet(first, ethertype=ETH_IP6))])
    assert [(s.seq, s.length) for s in read_pcap(pcap)] == [(7, 40)]


def test_not_tcp_and_unreadable_ipv6_is_skipped(tmp_path):
    udp = dpkt.ip6.IP6(src=ipaddress.IPv6Address(CLIENT).packed, dst=ipaddress.IPv6Address(SERVER).packed,
                       nxt=17, hlim=64, data=dpkt.udp.UDP(sport=1, dport=2, data=b"x"))
    udp.plen = len(udp.data)
    icmp6_ns = bytes(udp)[:6] + bytes([58]) + bytes(udp)[7:]
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [
        (T0, ethernet(bytes(udp), ethertype=ETH_IP6)),
        (T0, ethernet(icmp6_ns, ethertype=ETH_IP6)),
        (T0, ethernet(tcp6(exts=[HOP_BY_HOP])[:44], ethertype=ETH_IP6)),      # cut inside the options
        (T0, ethernet(b"\x60" + bytes(39), ethertype=ETH_IP6)),                 # hop-by-hop with no bytes
        (T0 + 1, ethernet(tcp6(flags=dpkt.tcp.TH_RST, tsval=None), ethertype=ETH_IP6)),
    ])
    assert [s.flags for s in read_pcap(pcap)] == ["RST"]


def test_a_truncated_ipv6_capture_keeps_the_segments_length(tmp_path):
    data = b"OLD-" * 1500
    ip = tcp6(flags=dpkt.tcp.TH_ACK, payload=data, exts=[DEST_OPTS])
    frame = ethernet(ip, ethertype=ETH_IP6)
    cut, whole = read_pcap(write_pcap(tmp_path / "cut.pcap", DLT_EN10MB, [(T0, frame[:256]), (T0 + 1, frame)]))
    assert cut.length == whole.length == 6000
    assert cut.payload == data[:len(cut.payload)] and cut.same_wire(whole)


def test_sll2_and_nflog_carry_ipv6(tmp_path):
    ip = tcp6(exts=[HOP_BY_HOP])
    router = write_pcap(tmp_path / "router.pcap", DLT_LINUX_SLL2, [
        (T0, sll2(ip, ifindex=3, outgoing=False, proto=0x86DD)),
        (T0 + 0.00005, sll2(ip[:7] + bytes([ip[7] - 1]) + ip[8:], ifindex=2, outgoing=True, proto=0x86DD)),
        (T0 + 0.0001, sll2(tcp_bytes(), ifindex=2, outgoing=False)),
    ])
    got, sent, v4 = read_pcap(router)
    assert (got.ifindex, got.outgoing, got.hop_limit, sent.ifindex, sent.outgoing, sent.hop_limit) == (
        3, False, 64, 2, True, 63)
    assert got.same_wire(sent)                   # a router lowers the hop limit: the same segment
    assert (v4.ttl, v4.tos, v4.flow_label, v4.hop_limit) == (64, 0, None, None)
    # NFLOG of an inet table: the family byte says AF_INET6 (10)
    record = struct.pack(">BBH", 10, 0, 1) + tlv(10, b"held-syn \0") + tlv(3, struct.pack(">QQ", 1795614094, 5)) \
        + tlv(9, ip)
    (seg,) = read_pcap(write_pcap(tmp_path / "faults.pcap", DLT_NFLOG, [(T0 + 1, record)]))
    assert (seg.prefix, seg.src, seg.flow_label) == ("held-syn", CLIENT, 0xABCDE)
    assert seg.t == pytest.approx(1795614094.000005)
    assert read_pcap(write_pcap(tmp_path / "v4.pcap", DLT_NFLOG, [(T0, nflog(tcp_bytes()))]))[0].tos == 0


def test_json_and_recorded_evidence_keep_the_header_fields(tmp_path):
    (seg,) = read_pcap(write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [(T0, ethernet(tcp6(), ethertype=ETH_IP6))]))
    d = seg.to_json()
    assert (d["flow_label"], d["traffic_class"], d["hop_limit"], d["ttl"], d["tos"]) == (0xABCDE, 0x28, 64, None, None)
    ev = Evidence.from_record({"packets": {"client": [d]}, "timeline": [], "counters": {}, "sysctls": {},
                               "addresses": {"client": CLIENT}, "faults": {}, "facts": {}})
    back = ev.packets["client"][0]
    assert back == seg and back.flow_label == 0xABCDE and back.hop_limit == 64
    # a recording from before IPv6 has none of them: they read as None
    old = {k: v for k, v in d.items() if k not in ("flow_label", "traffic_class", "hop_limit", "ttl", "tos")}
    assert Segment(**old).flow_label is None


def seg6(t, flags="RST", tsval=None, flow=0x11111, hop=64):
    return Segment(t=t, src=CLIENT, sport=1000, dst=SERVER, dport=80, flags=flags, seq=7, ack=0, length=0,
                   tsval=tsval, tsecr=None, flow_label=flow, hop_limit=hop)


def test_same_wire_and_arrivals_for_ipv6():
    sent = seg6(1.0)
    assert sent.same_wire(seg6(1.001, hop=63))              # one router on the way
    assert not sent.same_wire(seg6(1.001, flow=0x22222))     # another flow label: another packet
    first, second = seg6(1.0), seg6(1.5, flow=0x22222)       # a retransmission with a new label
    assert match_arrivals([first, second], [seg6(1.51, flow=0x22222, hop=63)]) == {id(first): None, id(second): 1.51}
    assert match_arrivals([first, second], [seg6(1.01, hop=63), seg6(1.51, flow=0x22222)]) == {
        id(first): 1.01, id(second): 1.51}


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/setup installs it)")
def test_tcpdump_reads_the_same_ipv6_segment(tmp_path):
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB,
                      [(T0, ethernet(tcp6(exts=[HOP_BY_HOP, DEST_OPTS]), ethertype=ETH_IP6))])
    out = subprocess.run(["tcpdump", "-vv", "-n", "-r", str(pcap), "-S"], capture_output=True, text=True,
                         check=True).stdout
    (seg,) = read_pcap(pcap)
    # with extension headers tcpdump writes the addresses, the headers, then the ports
    assert f"{seg.src} > {seg.dst}: HBH (padn) DSTOPT (padn) {seg.sport} > {seg.dport}:" in out
    assert f"flowlabel 0x{seg.flow_label:05x}" in out and f"hlim {seg.hop_limit}" in out
    assert f"class 0x{seg.traffic_class:x}" in out
    assert f"seq {seg.seq}" in out and "Flags [F.]" in out and "cksum 0x" in out and "(correct)" in out
