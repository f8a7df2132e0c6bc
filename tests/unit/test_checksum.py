"""lab.checksum.tcp_checksummed: the TCP checksum of a packet sent again from a raw socket.

The fixtures are real: two SYNs the router's forward path logged to NFLOG (lab.faults, a hold on a
veth pair), carrying the partial checksum the sender's offload left (the pseudo-header's sum
only); tcpdump -vv calls them "incorrect -> 0x927c" (IPv6) and "incorrect -> 0xcd6b" (IPv4). The
extension-header cases are checked against dpkt's own checksum of the same segment without them
(the pseudo-header does not count extension headers, RFC 8200 8.1), and against tcpdump."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import dpkt
import pytest

from lab.checksum import tcp_checksummed

# logged in the router's forward path, partial checksum 0xfb33 at bytes 56-57
V6_SYN = bytes.fromhex(
    "600e545c0028063ffd66000b000000000000000000000010fd66000b0000000200000000000000109088138afdeb"
    "170300000000a002fd20fb330000020405a00402080aae7e55ee000000000103030a")
V6_GOOD = 0x927C
# the same for IPv4, partial checksum 0x17c6 at bytes 36-37
V4_SYN = bytes.fromhex(
    "4500003cbbde40003f0668460a42010a0a42020ad844138a400fb71600000000a002faf017c60000020405b40402"
    "080acac5ba4e000000000103030a")
V4_GOOD = 0xCD6B


def with_sum(ip: bytes, at: int, value: int) -> bytes:
    return ip[:at] + struct.pack("!H", value) + ip[at + 2:]


def tcpdump_says(tmp_path, ip: bytes) -> str:
    path = tmp_path / "one.pcap"
    with open(path, "wb") as f:
        dpkt.pcap.Writer(f, linktype=101).writepkt(ip, ts=1.0)          # DLT_RAW
    return subprocess.run(["tcpdump", "-vv", "-nr", str(path)], capture_output=True, text=True).stdout


def test_a_partial_ipv6_checksum_is_completed():
    assert struct.unpack_from("!H", V6_SYN, 56)[0] == 0xFB33
    fixed = tcp_checksummed(V6_SYN)
    assert fixed == with_sum(V6_SYN, 56, V6_GOOD)
    assert tcp_checksummed(fixed) == fixed          # a correct checksum computes to itself


def test_a_partial_ipv4_checksum_is_completed():
    fixed = tcp_checksummed(V4_SYN)
    assert fixed == with_sum(V4_SYN, 36, V4_GOOD)
    assert tcp_checksummed(fixed) == fixed


def test_any_wrong_checksum_is_replaced():
    assert tcp_checksummed(with_sum(V6_SYN, 56, 0)) == with_sum(V6_SYN, 56, V6_GOOD)
    assert tcp_checksummed(with_sum(V6_SYN, 56, 0xFFFF)) == with_sum(V6_SYN, 56, V6_GOOD)


SRC, DST, FAR = (ipaddress.IPv6Address(a).packed for a in ("fd77:1a2b:1::10", "fd77:1a2b:2::10", "fd77:1a2b:3::10"))


def tcp_segment() -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(sport=40082, dport=5000, seq=3503583887, ack=2286647501, win=502,
                        flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, data=b"hello, world")


def dpkt_sum(dst: bytes) -> int:
    """dpkt's checksum of the segment in a plain IPv6 packet to *dst* (no extension headers)."""
    tcp = tcp_segment()
    ip = dpkt.ip6.IP6(src=SRC, dst=dst, nxt=6, hlim=64, data=tcp, plen=len(tcp))
    return struct.unpack_from("!H", bytes(ip), 40 + 16)[0]


def with_extensions(headers: list[tuple[int, bytes]], dst: bytes = DST) -> bytes:
    """An IPv6 packet with these extension headers ((type, whole header with its next-header byte
    still 0)) before the segment, its TCP checksum zeroed."""
    tcp = bytes(tcp_segment())
    tcp = tcp[:16] + b"\0\0" + tcp[18:]
    chain, types = b"", [t for t, _ in headers] + [6]
    for (_, body), nxt in zip(headers, types[1:], strict=True):
        chain += bytes([nxt]) + body[1:]
    plen = len(chain) + len(tcp)
    return struct.pack("!IHBB", 0x60000000, plen, types[0], 64) + SRC + dst + chain + tcp


HOP_BY_HOP = (0, bytes([0, 0, 1, 4, 0, 0, 0, 0]))                   # PadN
DEST_OPTS = (60, bytes([0, 1, 1, 12]) + bytes(12))                    # 16 bytes: PadN
FRAGMENT_0 = (44, bytes([0, 0, 0, 0]) + struct.pack("!I", 7))         # offset 0, last: an atomic fragment


def tcp_sum(ip: bytes) -> int:
    off, nxt = 40, ip[6]
    while nxt != 6:
        nxt, off = ip[off], off + (8 if nxt == 44 else (ip[off + 1] + 1) * 8)
    return struct.unpack_from("!H", ip, off + 16)[0]


def test_extension_headers_are_walked_and_not_counted():
    ip = with_extensions([HOP_BY_HOP, DEST_OPTS])
    assert tcp_sum(tcp_checksummed(ip)) == dpkt_sum(DST)


def test_a_routing_header_with_segments_left_sums_over_the_final_destination():
    # type 2 (RFC 6275 6.4): one address, the final destination, segments left 1
    routing = (43, bytes([0, 2, 2, 1]) + bytes(4) + FAR)
    ip = with_extensions([HOP_BY_HOP, routing])
    assert tcp_sum(tcp_checksummed(ip)) == dpkt_sum(FAR) != dpkt_sum(DST)
    # none left: the header's destination is the final one
    done = (43, bytes([0, 2, 2, 0]) + bytes(4) + FAR)
    assert tcp_sum(tcp_checksummed(with_extensions([done]))) == dpkt_sum(DST)


def test_fragments_and_other_protocols_are_left_alone():
    frag = with_extensions([FRAGMENT_0])
    assert tcp_checksummed(frag) == frag            # a fragment's checksum covers the whole segment
    udp = bytearray(V6_SYN)
    udp[6] = 17
    assert tcp_checksummed(bytes(udp)) == bytes(udp)
    assert tcp_checksummed(V6_SYN[:39]) == V6_SYN[:39]
    assert tcp_checksummed(b"") == b""


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/setup installs it)")
def test_tcpdump_calls_every_result_correct(tmp_path):
    assert f"cksum 0x{0xFB33:04x} (incorrect -> 0x{V6_GOOD:04x})" in tcpdump_says(tmp_path, V6_SYN)
    assert f"cksum 0x{0x17C6:04x} (incorrect -> 0x{V4_GOOD:04x})" in tcpdump_says(tmp_path, V4_SYN)
    for ip in (V6_SYN, V4_SYN, with_extensions([HOP_BY_HOP, DEST_OPTS])):
        assert "(correct)" in tcpdump_says(tmp_path, tcp_checksummed(ip))
