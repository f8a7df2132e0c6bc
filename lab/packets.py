"""Reading the lab's pcaps (dpkt) into TCP segments."""

from __future__ import annotations

import socket
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

    def has(self, flag: str) -> bool:
        return flag in self.flags.split(",")

    @property
    def pure_ack(self) -> bool:
        return self.flags == "ACK" and self.length == 0

    def same_wire(self, other: Segment) -> bool:
        """The same segment seen at two points (retransmissions differ in TSval)."""
        return (self.src, self.sport, self.dst, self.dport, self.flags, self.seq, self.ack,
                self.length, self.tsval) == (other.src, other.sport, other.dst, other.dport,
                                             other.flags, other.seq, other.ack, other.length,
                                             other.tsval)

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
    def wire(s) -> tuple:
        return (s.src, s.sport, s.dst, s.dport, s.flags, s.seq, s.ack, s.length, s.tsval)

    copies: dict[tuple, list[float]] = {}
    for s in received:
        copies.setdefault(wire(s), []).append(s.t)
    sends: dict[tuple, list] = {}
    for s in sent:
        sends.setdefault(wire(s), []).append(s)
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


def read_pcap(path: Path | str) -> list[Segment]:
    """Every IPv4 TCP segment in the file, in capture order."""
    out: list[Segment] = []
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return out
    with open(path, "rb") as f:
        try:
            reader = dpkt.pcap.Reader(f)
        except ValueError:
            return out
        dlt = reader.datalink()
        for ts, buf in reader:
            ifindex = outgoing = prefix = None
            if dlt == DLT_EN10MB:
                eth = dpkt.ethernet.Ethernet(buf)
                ip = eth.data
                raw = buf[14:]
            elif dlt == DLT_LINUX_SLL2:
                proto, _, ifindex, _, pkttype = struct.unpack_from(">HHIHB", buf, 0)
                outgoing = pkttype == 4
                if proto != 0x0800:
                    continue
                raw = buf[20:]
                ip = dpkt.ip.IP(raw)
            elif dlt == DLT_LINUX_SLL:
                sll = dpkt.sll.SLL(buf)
                outgoing = sll.type == 4
                ip = sll.data
                raw = buf[16:]
            elif dlt == DLT_NFLOG:
                raw, prefix, stamp = _nflog(buf)
                if raw is None:
                    continue
                ts = stamp or ts
                ip = dpkt.ip.IP(raw)
            else:
                raise ValueError(f"{path}: unsupported link type {dlt}")
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            tsval = tsecr = None
            for kind, data in dpkt.tcp.parse_opts(tcp.opts):
                if kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
                    tsval, tsecr = struct.unpack(">II", data)
            payload = bytes(tcp.data)
            # the segment's length from the IP header: a capture may keep only the first bytes of
            # each packet (the lab's do: see lab.capture), and then the payload here is a prefix
            length = max(len(payload), ip.len - ip.hl * 4 - tcp.off * 4) if ip.len else len(payload)
            out.append(Segment(
                t=float(ts), src=socket.inet_ntoa(ip.src), sport=tcp.sport,
                dst=socket.inet_ntoa(ip.dst), dport=tcp.dport, flags=flag_names(tcp.flags),
                seq=tcp.seq, ack=tcp.ack, length=length, tsval=tsval, tsecr=tsecr,
                ifindex=ifindex, outgoing=outgoing, prefix=prefix, payload=payload, ip=bytes(raw[:ip.len]),
            ))
    return out
