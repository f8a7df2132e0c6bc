"""The TCP checksum of a captured IPv4 or IPv6 packet, computed again before the packet is sent
from a raw socket (lab.faults: hold, release, inject).

Why again: a packet logged in the router's forward path may still carry a partial checksum (the
sender's checksum offload - a veth's or a virtio NIC's - leaves only the pseudo-header's sum, to
be finished by the hardware), and the receiver would drop it (TcpInCsumErrors) once it leaves a
raw socket that offloads nothing. A correct checksum computes to itself, so computing it always
changes nothing else.

The checksum is the ones' complement of the ones' complement sum of a pseudo-header and the TCP
segment (RFC 9293 3.1): for IPv4 the source and destination addresses, zero, the protocol and the
TCP length; for IPv6 the source address, the final destination, the upper-layer
length (32 bits), three zero bytes and the next header value 6 (RFC 8200 8.1), the extension
headers before TCP not counted.
"""

from __future__ import annotations

import struct

__all__ = ["tcp_checksummed", "ones_sum"]

_TCP = 6
_HOPOPTS, _ROUTING, _FRAGMENT, _DSTOPTS = 0, 43, 44, 60


def ones_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum of *data* (padded with a zero byte to an even length)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_checksummed(ip: bytes) -> bytes:
    """The IP packet (either version) with its TCP checksum computed; anything else (not TCP, a
    fragment, too short) unchanged."""
    version = ip[0] >> 4 if ip else 0
    found = _ipv4_tcp(ip) if version == 4 else _ipv6_tcp(ip) if version == 6 else None
    if found is None:
        return ip
    start, end, pseudo = found
    seg = bytearray(ip[start:end])
    seg[16:18] = b"\0\0"
    struct.pack_into("!H", seg, 16, ~ones_sum(pseudo + bytes(seg)) & 0xFFFF)
    return bytes(ip[:start]) + bytes(seg) + bytes(ip[end:])


def _ipv4_tcp(ip: bytes) -> tuple[int, int, bytes] | None:
    """Where the TCP segment lies in an IPv4 packet, and its pseudo-header."""
    if len(ip) < 20 or ip[9] != _TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    end = min(struct.unpack_from("!H", ip, 2)[0], len(ip))
    if end - ihl < 20:
        return None
    return ihl, end, bytes(ip[12:20]) + struct.pack("!BBH", 0, _TCP, end - ihl)


def _ipv6_tcp(ip: bytes) -> tuple[int, int, bytes] | None:
    """The same for IPv6: the extension headers walked to TCP (hop-by-hop, routing, destination
    options; a fragment is left alone: its checksum covers the reassembled segment)."""
    if len(ip) < 40:
        return None
    nxt, off = ip[6], 40
    end = min(40 + struct.unpack_from("!H", ip, 4)[0], len(ip))
    dst = bytes(ip[24:40])
    while nxt in (_HOPOPTS, _ROUTING, _DSTOPTS) and off + 8 <= end:
        length = (ip[off + 1] + 1) * 8
        if nxt == _ROUTING:
            dst = _final_destination(ip[off:off + length], dst)
        nxt, off = ip[off], off + length
    if nxt != _TCP or end - off < 20:
        return None
    return off, end, bytes(ip[8:24]) + dst + struct.pack("!I3xB", end - off, _TCP)


def _final_destination(routing: bytes, dst: bytes) -> bytes:
    """The final destination a routing header names while segments are left (RFC 8200 8.1):
    the last address of a type 0 or 2 header (RFC 5095, RFC 6275 6.4), the first of a segment
    routing header's list (type 4, RFC 8754 2); the IPv6 header's own once none is left."""
    kind, left = routing[2], routing[3]
    if left == 0 or len(routing) < 24:
        return dst
    if kind in (0, 2):
        count = (len(routing) - 8) // 16
        return bytes(routing[8 + 16 * (count - 1):8 + 16 * count])
    if kind == 4:
        return bytes(routing[8:24])
    return dst
