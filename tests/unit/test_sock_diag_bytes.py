"""lab.observe's hand-built sock_diag messages, byte by byte against include/uapi/linux/inet_diag.h
(struct inet_diag_req_v2, struct inet_diag_sockid, struct inet_diag_msg): an AF_INET6 request
carries 16-byte addresses, a reply is parsed by its own family. The round trip with a real
kernel is tests/integration/test_ipv6_plumbing.py."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from lab.observe import _parse, _request
from lab.records import endpoint, four_tuple_key

NLMSG_HDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
REQ = struct.Struct("=BBBxI")                 # family, protocol, ext, pad, states
SOCKID = struct.Struct(">HH16s16sI8s")        # sport, dport, src, dst (__be32[4] each), if, cookie


def fields(msg: bytes) -> dict:
    length, typ, flags, _seq, _pid = NLMSG_HDR.unpack_from(msg)
    family, proto, _ext, states = REQ.unpack_from(msg, 16)
    sport, dport, src, dst, ifindex, cookie = SOCKID.unpack_from(msg, 24)
    return {"length": length, "type": typ, "flags": flags, "family": family, "proto": proto,
            "states": states, "sport": sport, "dport": dport, "src": src, "dst": dst, "if": ifindex,
            "cookie": cookie}


def test_an_ipv6_lookup_carries_16_byte_addresses():
    key = ("fd77:1a2b:1::10", 41002, "fd77:1a2b:2::10", 5000)
    f = fields(_request(socket.AF_INET6, 1, key))
    assert f["length"] == 16 + 56 == len(_request(socket.AF_INET6, 1, key))
    assert (f["type"], f["flags"], f["family"], f["proto"], f["states"]) == (20, 1, socket.AF_INET6, 6, 0xFFF)
    assert (f["sport"], f["dport"]) == (41002, 5000)
    assert f["src"] == ipaddress.IPv6Address(key[0]).packed and f["dst"] == ipaddress.IPv6Address(key[2]).packed
    assert f["cookie"] == b"\xff" * 8                       # INET_DIAG_NOCOOKIE: no cookie to match


def test_an_ipv4_lookup_is_as_before():
    f = fields(_request(socket.AF_INET, 1, ("10.77.1.10", 41002, "10.77.2.10", 5000)))
    assert f["family"] == socket.AF_INET
    assert f["src"] == socket.inet_aton("10.77.1.10") + bytes(12)
    assert f["dst"] == socket.inet_aton("10.77.2.10") + bytes(12)


def test_dumps_ask_every_state_of_their_family():
    for family in (socket.AF_INET, socket.AF_INET6):
        f = fields(_request(family, 0x301))
        assert (f["family"], f["flags"], f["states"]) == (family, 0x301, 0xFFF)
        assert (f["sport"], f["dport"], f["src"], f["dst"]) == (0, 0, bytes(16), bytes(16))


def test_an_ipv4_address_asked_of_ipv6_is_v4_mapped_and_a_mismatch_refused():
    f = fields(_request(socket.AF_INET6, 1, ("10.77.1.10", 1, "10.77.2.10", 2)))
    assert f["src"] == ipaddress.IPv6Address("::ffff:10.77.1.10").packed
    with pytest.raises(ValueError, match="no address of family"):
        _request(socket.AF_INET, 1, ("fd77::1", 1, "fd77::2", 2))


def diag_msg(family: int, src: str, dst: str, state=6, timer=3, retrans=0, expires=59880, inode=0) -> bytes:
    """A netlink header and struct inet_diag_msg as the kernel sends it."""
    def packed(a: str) -> bytes:
        return ipaddress.ip_address(a).packed.ljust(16, b"\0")
    body = struct.pack("=BBBB", family, state, timer, retrans)
    body += SOCKID.pack(41002, 5000, packed(src), packed(dst), 0, b"\x01" * 8)
    body += struct.pack("=IIIII", expires, 0, 0, 0, inode)
    return NLMSG_HDR.pack(16 + len(body), 20, 2, 1, 0) + body


def test_a_reply_is_read_by_its_own_family():
    tw = _parse(diag_msg(socket.AF_INET6, "fd77:1a2b:1::10", "fd77:1a2b:2::10"), 0)
    assert (tw.state, tw.src, tw.sport, tw.dst, tw.dport, tw.timer, tw.expires_ms) == (
        "TIME_WAIT", "fd77:1a2b:1::10", 41002, "fd77:1a2b:2::10", 5000, "timewait", 59880)
    est = _parse(b"\0" * 8 + diag_msg(socket.AF_INET, "10.77.1.10", "10.77.2.10", state=1, timer=0,
                                      expires=0, inode=4242), 8)
    assert (est.state, est.src, est.dst, est.inode) == ("ESTABLISHED", "10.77.1.10", "10.77.2.10", 4242)
    mapped = _parse(diag_msg(socket.AF_INET6, "::ffff:10.77.1.10", "::ffff:10.77.2.10"), 0)
    assert mapped.src == str(ipaddress.ip_address("::ffff:10.77.1.10"))


def test_endpoints_of_ipv6_are_bracketed():
    assert endpoint("10.77.1.10", 41002) == "10.77.1.10:41002"
    assert endpoint("fd77:1a2b:1::10", 41002) == "[fd77:1a2b:1::10]:41002"
    assert four_tuple_key("fd77::10", 1, "fd77::2:10", 2) == "[fd77::10]:1-[fd77::2:10]:2"
    tw = _parse(diag_msg(socket.AF_INET6, "fd77:1a2b:1::10", "fd77:1a2b:2::10"), 0)
    assert str(tw) == "[fd77:1a2b:1::10]:41002 -> [fd77:1a2b:2::10]:5000"
