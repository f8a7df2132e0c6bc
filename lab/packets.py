"""Reading the lab's pcaps (dpkt) into TCP segments, IPv4 and IPv6.

IPv6: dpkt walks the extension headers (hop-by-hop, routing, fragment, destination options, AH)
to the TCP header; a fragment other than the first carries no TCP header and is skipped. A
segment keeps its IP header's fields that a check may ask about: the flow label, traffic class
and hop limit (RFC 8200 3; None for IPv4), the TTL and type of service (RFC 791 3.1; None for
IPv6). Addresses are text as the whole lab writes them, str(ipaddress.ip_address(...)):
"10.77.1.10", "fd77:1a2b:1::10" (compressed, RFC 5952).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dpkt

__all__ = ["Segment", "read_pcap", "flag_names", "match_arrivals"]

_FLAGS = [(dpkt.tcp.TH_SYN, "SYN"), (dpkt.tcp.TH_FIN, "FIN"), (dpkt.tcp.TH_RST, "RST"),
          (dpkt.tcp.TH_PUSH, "PSH"), (dpkt.tcp.TH_ACK, "ACK"), (dpkt.tcp.TH_URG, "URG")]

DLT_EN10MB, DLT_LINUX_SLL, DLT_NFLOG, DLT_LINUX_SLL2 = 1, 113, 239, 276


def flag_names(bits: int) -> str:
    return ",".join(n for b, n in _FLAGS if bits & b)


@dataclass(frozen=True)
class Segment:
    t: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: str                 # "FIN,ACK"
    seq: int
    ack: int
    length: int                # payload bytes
    tsval: int | None
    tsecr: int | None
    ifindex: int | None = None  # interface, where the link type records it (any, SLL2)
    outgoing: bool | None = None
    prefix: str | None = None   # NFLOG prefix (which fault logged it)
    payload: bytes = b""         # as captured: the first bytes only where the capture was truncated
    ip: bytes = field(default=b"", repr=False, compare=False)   # the whole IP packet, as captured
    flow_label: int | None = None     # IPv6 only (20 bits)
    traffic_class: int | None = None  # IPv6 only (DSCP and ECN, 8 bits)
    hop_limit: int | None = None      # IPv6 only
    ttl: int | None = None            # IPv4 only
    tos: int | None = None            # IPv4 only (DSCP and ECN, 8 bits)

    def has(self, flag: str) -> bool:
        return flag in self.flags.split(",")

    @property
    def pure_ack(self) -> bool:
        return self.flags == "ACK" and self.length == 0

    @property
    def wire(self) -> tuple:
        """What stays the same from one point of the path to the next: the 4-tuple, flags,
        numbers, length, TSval and, for IPv6, the flow label (no router changes it, RFC 6437 2;
        Linux may draw a new one for a retransmission, see sk_rethink_txhash()). Not the hop
        limit or TTL: each router lowers them."""
        return (self.src, self.sport, self.dst, self.dport, self.flags, self.seq, self.ack,
                self.length, self.tsval, self.flow_label)

    def same_wire(self, other: Segment) -> bool:
        """The same segment seen at two points (retransmissions differ in TSval)."""
        return self.wire == other.wire

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("payload")
        d.pop("ip")
        return d


def match_arrivals(sent: list, received: list, skew_s: float = 0.001) -> dict[int, float | None]:
    """When each of *sent* arrived, as seen in *received* (another capture on the same clock):
    ``{id(segment): time or None}``, None meaning lost on the way. Copies are matched by wire
    identity (Segment.same_wire: TSval included) and in time order: a copy arrives after its
    segment was sent and before the next identical segment was sent. Identical segments are
    common: RSTs carry no timestamps, so two RSTs answering two copies of a FIN are the same bytes,
    and only the order of sending tells which one a copy belongs to."""
    copies: dict[tuple, list[float]] = {}
    for s in received:
        copies.setdefault(s.wire, []).append(s.t)
    sends: dict[tuple, list] = {}
    for s in sent:
        sends.setdefault(s.wire, []).append(s)
    out: dict[int, float | None] = {}
    for key, group in sends.items():
        group.sort(key=lambda s: s.t)
        times = sorted(copies.get(key, []))
        j = 0
        for i, s in enumerate(group):
            nxt = group[i + 1].t if i + 1 < len(group) else float("inf")
            while j < len(times) and times[j] < s.t - skew_s:
                j += 1                      # a copy from before this send: nobody's
            if j < len(times) and times[j] < nxt:
                out[id(s)] = times[j]
                j += 1
            else:
                out[id(s)] = None
    return out


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
