"""lab.packets.read_pcap on small hand-made pcaps of the three link types the lab writes:
Ethernet (one interface), LINUX_SLL2 (``tcpdump -i any -y LINUX_SLL2``, the router) and NFLOG
(``tcpdump -i nflog:1``, the fault layer's drops). SLL2 and NFLOG headers are built byte by byte
from their specifications (pcap-linktype(7), include/uapi/linux/netfilter/nfnetlink_log.h)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from lab.packets import Segment, flag_names, read_pcap
from lab.pcap import DLT_EN10MB, DLT_LINUX_SLL2, DLT_NFLOG

CLIENT, SERVER = "10.77.1.10", "10.77.2.10"
T0 = 1795614094.124490          # a pcap record time, as in a real run


def tcp_bytes(src=SERVER, dst=CLIENT, sport=5000, dport=40082, flags=dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK,
              seq=2286647500, ack=3503583887, tsval=941650663, tsecr=1518308876,
              payload=b"") -> bytes:
    """An IPv4 packet carrying one TCP segment (with a timestamp option unless tsval is None)."""
    opts = b""
    if tsval is not None:
        opts = b"\x01\x01" + struct.pack(">BBII", dpkt.tcp.TCP_OPT_TIMESTAMP, 10, tsval, tsecr)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=502,
                       off=(20 + len(opts)) // 4, opts=opts, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP,
                    ttl=64, data=tcp)
    ip.len = len(ip)
    return bytes(ip)


def ethernet(ip: bytes, ethertype=dpkt.ethernet.ETH_TYPE_IP) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(dst=b"\x02\x42\x0a\x4d\x01\x0a", src=b"\x02\x42\x0a\x4d\x01\x02",
                                        type=ethertype, data=ip))


def sll2(ip: bytes, ifindex: int, outgoing: bool, proto: int = 0x0800) -> bytes:
    """LINUX_SLL2: protocol (BE16), reserved (16), interface index (BE32), ARPHRD type (BE16),
    packet type (8: 0 to us, 4 outgoing), address length (8), address (8 bytes, padded)."""
    mac = b"\x02\x42\x0a\x4d\x01\x0a"
    return struct.pack(">HHIHBB8s", proto, 0, ifindex, 1, 4 if outgoing else 0, len(mac),
                       mac.ljust(8, b"\0")) + ip


def tlv(typ: int, value: bytes) -> bytes:
    """One NFLOG TLV: length (incl. this 4-byte header) and type in host byte order (little
    endian here, as libpcap writes them on x86), value padded to 4 bytes."""
    length = 4 + len(value)
    return struct.pack("<HH", length, typ) + value + b"\0" * (-length % 4)


def nflog(ip: bytes | None, prefix: str | None = "lost-ack ", stamp: tuple[int, int] | None = None,
          group: int = 1) -> bytes:
    """DLT_NFLOG: family, version, resource id (BE16, the group), then TLVs in the order the
    kernel's __build_packet_message writes them: PACKET_HDR (1), PREFIX (10), IFINDEX_INDEV (4),
    TIMESTAMP (3: BE64 seconds, BE64 microseconds), PAYLOAD (9)."""
    out = struct.pack(">BBH", socket.AF_INET, 0, group)
    out += tlv(1, struct.pack(">HBB", 0x0800, 2, 0))          # hw_protocol, hook FORWARD, pad
    if prefix is not None:
        out += tlv(10, prefix.encode() + b"\0")                 # 10 bytes: not 4-aligned
    out += tlv(4, struct.pack(">I", 2))
    if stamp is not None:
        out += tlv(3, struct.pack(">QQ", *stamp))
    if ip is not None:
        out += tlv(9, ip)
    return out


def write_pcap(path: Path, linktype: int, records: list[tuple[float, bytes]]) -> Path:
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype, snaplen=262144)
        for ts, buf in records:
            w.writepkt(buf, ts=ts)
    return path


# -- Ethernet ----------------------------------------------------------------------------------

def test_ethernet_segments(tmp_path):
    pcap = write_pcap(tmp_path / "client.pcap", DLT_EN10MB, [
        (T0, ethernet(tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000,
                                flags=dpkt.tcp.TH_SYN, seq=3503583880, ack=0, tsval=1518308875,
                                tsecr=0))),
        (T0 + 0.001, ethernet(tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000,
                                        flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, seq=3503583881,
                                        ack=2286647500, tsval=1518308876, tsecr=941650572,
                                        payload=b"hello"))),
        (T0 + 0.002, ethernet(tcp_bytes())),
        (T0 + 0.003, ethernet(tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000,
                                        flags=dpkt.tcp.TH_ACK, seq=3503583887, ack=2286647501,
                                        tsval=None))),
    ])
    segs = read_pcap(pcap)
    assert [s.flags for s in segs] == ["SYN", "PSH,ACK", "FIN,ACK", "ACK"]
    syn, data, fin, ack = segs
    assert (syn.src, syn.sport, syn.dst, syn.dport) == (CLIENT, 40082, SERVER, 5000)
    assert (syn.seq, syn.ack, syn.tsval, syn.tsecr) == (3503583880, 0, 1518308875, 0)
    assert data.length == 5 and data.payload == b"hello"
    assert (fin.src, fin.sport, fin.seq, fin.ack) == (SERVER, 5000, 2286647500, 3503583887)
    assert (fin.tsval, fin.tsecr) == (941650663, 1518308876)
    assert fin.has("FIN") and fin.has("ACK") and not fin.has("SYN") and not fin.pure_ack
    assert ack.pure_ack and ack.tsval is None and ack.tsecr is None
    assert [s.t for s in segs] == pytest.approx([T0, T0 + 0.001, T0 + 0.002, T0 + 0.003], abs=1e-6)
    # Ethernet records carry no interface or direction, and only NFLOG has a prefix
    assert {(s.ifindex, s.outgoing, s.prefix) for s in segs} == {(None, None, None)}


def test_all_flag_bits_and_their_order():
    bits = (dpkt.tcp.TH_FIN | dpkt.tcp.TH_SYN | dpkt.tcp.TH_RST | dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
            | dpkt.tcp.TH_URG)
    assert flag_names(bits) == "SYN,FIN,RST,PSH,ACK,URG"
    assert flag_names(dpkt.tcp.TH_RST) == "RST"
    assert flag_names(0) == ""


def test_ethernet_skips_what_is_not_ipv4_tcp(tmp_path):
    udp = dpkt.ip.IP(src=socket.inet_aton(CLIENT), dst=socket.inet_aton(SERVER), p=dpkt.ip.IP_PROTO_UDP,
                     data=dpkt.udp.UDP(sport=1, dport=2, data=b"x"))
    udp.len = len(udp)
    arp = bytes(dpkt.arp.ARP())
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB, [
        (T0, ethernet(bytes(udp))),
        (T0, ethernet(arp, ethertype=dpkt.ethernet.ETH_TYPE_ARP)),
        (T0 + 1, ethernet(tcp_bytes(flags=dpkt.tcp.TH_RST, seq=965903133, ack=0, tsval=None))),
    ])
    segs = read_pcap(pcap)
    assert [(s.flags, s.seq) for s in segs] == [("RST", 965903133)]


def test_sequence_numbers_near_wraparound(tmp_path):
    pcap = write_pcap(tmp_path / "x.pcap", DLT_EN10MB,
                      [(T0, ethernet(tcp_bytes(seq=0xFFFFFFFF, ack=0xFFFFFFFE, tsval=0xFFFFFFFF)))])
    (seg,) = read_pcap(pcap)
    assert (seg.seq, seg.ack, seg.tsval) == (0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)


# -- LINUX_SLL2 --------------------------------------------------------------------------------

def test_sll2_interface_and_direction(tmp_path):
    pcap = write_pcap(tmp_path / "router.pcap", DLT_LINUX_SLL2, [
        (T0, sll2(tcp_bytes(), ifindex=3, outgoing=False)),            # in from the server side
        (T0 + 0.00005, sll2(tcp_bytes(), ifindex=2, outgoing=True)),    # forwarded to the client
        (T0 + 0.0001, sll2(b"\x60" + b"\0" * 39, ifindex=2, outgoing=False, proto=0x86DD)),  # IPv6
        (T0 + 0.0002, sll2(tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000,
                                     flags=dpkt.tcp.TH_ACK, seq=3503583887, ack=2286647501,
                                     tsval=1518308966, tsecr=941650663), ifindex=2, outgoing=False)),
    ])
    segs = read_pcap(pcap)
    assert [(s.flags, s.ifindex, s.outgoing) for s in segs] == [
        ("FIN,ACK", 3, False), ("FIN,ACK", 2, True), ("ACK", 2, False)]
    assert segs[0].same_wire(segs[1])            # one segment seen on both interfaces
    assert not segs[0].same_wire(segs[2])
    assert (segs[2].ack, segs[2].tsval, segs[2].tsecr) == (2286647501, 1518308966, 941650663)
    assert {s.prefix for s in segs} == {None}


# -- NFLOG -------------------------------------------------------------------------------------

def test_nflog_prefix_and_kernel_timestamp(tmp_path):
    stamp = (1795614094, 124585)                     # when the kernel logged (dropped) it
    ack = tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000, flags=dpkt.tcp.TH_ACK,
                    seq=3503583887, ack=2286647501, tsval=1518308966, tsecr=941650663)
    # tcpdump's record time is later (when it read the packet): the TLV wins
    pcap = write_pcap(tmp_path / "faults.pcap", DLT_NFLOG, [(T0 + 0.5, nflog(ack, stamp=stamp))])
    (seg,) = read_pcap(pcap)
    assert seg.prefix == "lost-ack"                  # nft's "lost-ack " without NUL and space
    assert seg.t == pytest.approx(1795614094.124585, abs=1e-6)
    assert (seg.src, seg.dst, seg.flags, seg.seq, seg.ack) == (CLIENT, SERVER, "ACK", 3503583887,
                                                               2286647501)
    assert seg.tsval == 1518308966 and seg.pure_ack
    assert seg.ifindex is None and seg.outgoing is None


def test_nflog_without_timestamp_keeps_record_time(tmp_path):
    pcap = write_pcap(tmp_path / "faults.pcap", DLT_NFLOG,
                      [(T0, nflog(tcp_bytes(), prefix="drop-fin ", stamp=None))])
    (seg,) = read_pcap(pcap)
    assert seg.t == pytest.approx(T0, abs=1e-6)
    assert seg.prefix == "drop-fin" and seg.flags == "FIN,ACK"


def test_nflog_several_records_and_prefixless(tmp_path):
    pcap = write_pcap(tmp_path / "faults.pcap", DLT_NFLOG, [
        (T0, nflog(tcp_bytes(seq=1), stamp=(1795614094, 1))),
        (T0, nflog(None, stamp=(1795614094, 2))),            # no payload TLV: nothing to read
        (T0, nflog(tcp_bytes(seq=3), prefix=None, stamp=(1795614094, 999999))),
    ])
    segs = read_pcap(pcap)
    assert [(s.seq, s.prefix) for s in segs] == [(1, "lost-ack"), (3, None)]
    assert [s.t for s in segs] == pytest.approx([1795614094.000001, 1795614094.999999], abs=1e-7)


# -- files -------------------------------------------------------------------------------------

def test_missing_empty_and_garbage_files_read_as_no_segments(tmp_path):
    assert read_pcap(tmp_path / "absent.pcap") == []
    (tmp_path / "empty.pcap").write_bytes(b"")
    assert read_pcap(tmp_path / "empty.pcap") == []
    (tmp_path / "garbage.pcap").write_bytes(b"this is not a pcap file at all")
    assert read_pcap(tmp_path / "garbage.pcap") == []
    # a capture stopped before any packet: a header only
    assert read_pcap(write_pcap(tmp_path / "header.pcap", DLT_EN10MB, [])) == []


def test_unsupported_link_type_is_an_error(tmp_path):
    pcap = write_pcap(tmp_path / "raw.pcap", 101, [(T0, tcp_bytes())])      # DLT_RAW
    with pytest.raises(ValueError, match="unsupported link type 101"):
        read_pcap(pcap)


def test_segment_json_has_no_payload():
    seg = Segment(t=T0, src=CLIENT, sport=1, dst=SERVER, dport=2, flags="PSH,ACK", seq=1, ack=2,
                  length=5, tsval=None, tsecr=None, payload=b"hello")
    d = seg.to_json()
    assert "payload" not in d and d["length"] == 5 and d["flags"] == "PSH,ACK"


# -- the hand-made bytes are what tcpdump itself reads ------------------------------------------

@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/setup installs it)")
@pytest.mark.parametrize("linktype", [DLT_EN10MB, DLT_LINUX_SLL2, DLT_NFLOG])
def test_tcpdump_reads_the_same_segment(tmp_path, linktype):
    ip = tcp_bytes()
    frame = {DLT_EN10MB: ethernet(ip), DLT_LINUX_SLL2: sll2(ip, ifindex=3, outgoing=True),
             DLT_NFLOG: nflog(ip, stamp=(1795614094, 124585))}[linktype]
    pcap = write_pcap(tmp_path / "x.pcap", linktype, [(T0, frame)])
    out = subprocess.run(["tcpdump", "-n", "-r", str(pcap), "-S", "-tt"], capture_output=True,
                         text=True, check=True).stdout
    (seg,) = read_pcap(pcap)
    assert f"{seg.src}.{seg.sport} > {seg.dst}.{seg.dport}" in out
    assert f"seq {seg.seq}" in out and f"ack {seg.ack}" in out and "Flags [F.]" in out
    assert f"TS val {seg.tsval} ecr {seg.tsecr}" in out


def test_match_arrivals_tells_identical_segments_apart_by_time():
    from lab.packets import Segment, match_arrivals

    def seg(t, flags="RST", tsval=None):
        return Segment(t=t, src="10.0.0.1", sport=1000, dst="10.0.0.2", dport=80, flags=flags,
                       seq=7, ack=0, length=0, tsval=tsval, tsecr=None)
    # two identical RSTs (no timestamps); the first was lost, the second arrived 10 ms later
    first, second = seg(1.0), seg(1.5)
    got = match_arrivals([first, second], [seg(1.51)])
    assert got == {id(first): None, id(second): 1.51}
    # both arrived
    got = match_arrivals([first, second], [seg(1.01), seg(1.51)])
    assert got == {id(first): 1.01, id(second): 1.51}
    # a copy is never matched to a segment sent after it arrived, nor across a TSval difference
    late = seg(2.0)
    assert match_arrivals([late], [seg(1.01)]) == {id(late): None}
    a = seg(3.0, flags="ACK", tsval=5)
    assert match_arrivals([a], [seg(3.01, flags="ACK", tsval=6)]) == {id(a): None}


def test_match_arrivals_pairs_a_burst_of_identical_segments_in_order():
    """Four identical ACKs within 0.2 ms (one TSval tick) and four copies, each a few us after its
    send: the second send precedes the first copy, and none was lost (seen in wandering-duplicates'
    bulk transfer, where the page had drawn two of them lost)."""
    from lab.packets import Segment, match_arrivals

    def seg(t):
        return Segment(t=t, src="10.0.0.1", sport=1000, dst="10.0.0.2", dport=80, flags="ACK",
                       seq=7, ack=9, length=0, tsval=42, tsecr=41)
    sends = [seg(t) for t in (1.000209, 1.000212, 1.000365, 1.000369)]
    got = match_arrivals(sends, [seg(t) for t in (1.000215, 1.000219, 1.000371, 1.000496)])
    assert list(got.values()) == [1.000215, 1.000219, 1.000371, 1.000496]
    # three sent, two arrived: order kept, and the lost one is the one whose absence costs least
    got = match_arrivals(sends[:3], [seg(1.000215), seg(1.000371)])
    assert [got[id(s)] for s in sends[:3]] == [None, 1.000215, 1.000371]
    # a router's later replay of an arrived segment is not its arrival
    (one,) = sends[:1]
    assert match_arrivals([one], [seg(1.000215), seg(1.4)]) == {id(one): 1.000215}


def test_a_truncated_capture_keeps_the_segments_length(tmp_path):
    """The lab's captures keep the first 2 KiB of a packet: a GSO super-packet of 6000 bytes is
    cut; its length comes from the IP header, the payload is the prefix that was kept."""
    data = (b"OLD-" * 1500)
    ip = tcp_bytes(src=CLIENT, dst=SERVER, sport=40082, dport=5000, flags=dpkt.tcp.TH_ACK, payload=data)
    frame = ethernet(ip)
    pcap = write_pcap(tmp_path / "cut.pcap", DLT_EN10MB, [(T0, frame[:2048]), (T0 + 1, frame)])
    cut, whole = read_pcap(pcap)
    assert cut.length == whole.length == 6000
    assert whole.payload == data and cut.payload == data[:len(cut.payload)] and len(cut.payload) < 2048
    assert cut.same_wire(whole)
