"""Reading a pcap (dpkt) into lab.packets Segments: the link layers the lab writes (Ethernet,
Linux cooked v1 and v2, NFLOG) and IPv4 and IPv6 through its extension headers."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from .packetlib import dpkt
from .packets import Segment, flag_names

__all__ = ["read_pcap"]

DLT_EN10MB, DLT_LINUX_SLL, DLT_NFLOG, DLT_LINUX_SLL2 = 1, 113, 239, 276


def _nflog(buf: bytes) -> tuple[bytes | None, str | None, float | None]:
    """NFLOG: 4-byte header, then TLVs (len, type) 4-byte aligned; 3 = the kernel's timestamp
    (when the packet was logged), 9 = payload, 10 = prefix."""
    off, payload, prefix, stamp = 4, None, None, None
    while off + 4 <= len(buf):
        length, typ = struct.unpack_from("<HH", buf, off)
        if length < 4:
            break
        value = buf[off + 4: off + length]
        if typ == 3 and len(value) >= 16:
            sec, usec = struct.unpack_from(">QQ", value)
            stamp = sec + usec / 1e6
        elif typ == 9:
            payload = value
        elif typ == 10:
            prefix = value.rstrip(b"\0").decode(errors="replace").strip()
        off += (length + 3) & ~3
    return payload, prefix, stamp


_ETHERTYPES = (0x0800, 0x86DD)        # IPv4, IPv6


def _frames(path: Path):
    """Each record of the file as (time, IP packet bytes, ifindex, outgoing, NFLOG prefix): the
    link layer read and dropped; records of other protocols (ARP, ...) skipped."""
    with open(path, "rb") as f:
        try:
            reader = dpkt.pcap.Reader(f)
        except ValueError:
            return
        dlt = reader.datalink()
        if dlt not in (DLT_EN10MB, DLT_LINUX_SLL, DLT_NFLOG, DLT_LINUX_SLL2):
            raise ValueError(f"{path}: unsupported link type {dlt}")
        for ts, buf in reader:
            ifindex = outgoing = prefix = None
            if dlt == DLT_EN10MB:
                proto, raw = (struct.unpack_from(">H", buf, 12)[0], buf[14:]) if len(buf) >= 14 else (0, b"")
            elif dlt == DLT_LINUX_SLL2:
                proto, _, ifindex, _, pkttype = struct.unpack_from(">HHIHB", buf, 0)
                outgoing, raw = pkttype == 4, buf[20:]
            elif dlt == DLT_LINUX_SLL:
                pkttype, proto = struct.unpack_from(">H", buf, 0)[0], struct.unpack_from(">H", buf, 14)[0]
                outgoing, raw = pkttype == 4, buf[16:]
            else:
                raw, prefix, stamp = _nflog(buf)
                if raw is None:
                    continue
                ts, proto = stamp or ts, 0x86DD if raw[:1] and raw[0] >> 4 == 6 else 0x0800
            if proto in _ETHERTYPES:
                yield float(ts), raw, ifindex, outgoing, prefix


def _ipv4(raw: bytes) -> tuple[dpkt.tcp.TCP, dict, int] | None:
    """An IPv4 packet's TCP segment, the fields a Segment keeps of its header, and the segment's
    length from the header (a capture may keep only the first bytes of each packet)."""
    ip = dpkt.ip.IP(raw)
    if not isinstance(ip.data, dpkt.tcp.TCP):
        return None
    tcp = ip.data
    head = {"src": str(ipaddress.IPv4Address(ip.src)), "dst": str(ipaddress.IPv4Address(ip.dst)),
            "ttl": ip.ttl, "tos": ip.tos, "ip": bytes(raw[:ip.len])}
    length = max(len(tcp.data), ip.len - ip.hl * 4 - tcp.off * 4) if ip.len else len(tcp.data)
    return tcp, head, length


def _ipv6(raw: bytes) -> tuple[dpkt.tcp.TCP, dict, int] | None:
    """The same for IPv6, through its extension headers (dpkt walks them): the segment's length
    is the payload length less the extension headers and the TCP header. A fragment after the
    first (offset > 0) holds no TCP header (RFC 8200 4.5): skipped, wherever its fragment header
    sits in the chain."""
    ip = dpkt.ip6.IP6(raw)
    exts = getattr(ip, "all_extension_headers", [])
    if any(isinstance(h, dpkt.ip6.IP6FragmentHeader) and h.frag_off for h in exts):
        return None
    if not isinstance(ip.data, dpkt.tcp.TCP):
        return None
    tcp = ip.data
    head = {"src": str(ipaddress.IPv6Address(ip.src)), "dst": str(ipaddress.IPv6Address(ip.dst)),
            "flow_label": ip.flow, "traffic_class": ip.fc, "hop_limit": ip.hlim,
            "ip": bytes(raw[:40 + ip.plen]) if ip.plen else bytes(raw)}
    ext_len = sum(h.length for h in exts)
    length = max(len(tcp.data), ip.plen - ext_len - tcp.off * 4) if ip.plen else len(tcp.data)
    return tcp, head, length


def _decode(raw: bytes) -> tuple[dpkt.tcp.TCP, dict, int] | None:
    """The TCP segment in an IP packet of either version, or None (not TCP, or too short to read)."""
    try:
        return (_ipv6 if raw[:1] and raw[0] >> 4 == 6 else _ipv4)(raw)
    except (dpkt.UnpackError, struct.error, IndexError, ValueError):
        return None


def read_pcap(path: Path | str) -> list[Segment]:
    """Every TCP segment in the file, IPv4 and IPv6, in capture order."""
    out: list[Segment] = []
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return out
    for ts, raw, ifindex, outgoing, prefix in _frames(path):
        got = _decode(raw)
        if got is None:
            continue
        tcp, head, length = got
        tsval = tsecr = None
        for kind, data in dpkt.tcp.parse_opts(tcp.opts):
            if kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
                tsval, tsecr = struct.unpack(">II", data)
        out.append(Segment(
            t=ts, sport=tcp.sport, dport=tcp.dport, flags=flag_names(tcp.flags), seq=tcp.seq, ack=tcp.ack,
            length=length, tsval=tsval, tsecr=tsecr, ifindex=ifindex, outgoing=outgoing, prefix=prefix,
            payload=bytes(tcp.data), **head))
    return out
