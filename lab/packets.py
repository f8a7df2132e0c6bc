"""TCP segments as the lab's pcaps hold them (lab/pcap.py reads the files with dpkt), IPv4 and IPv6.

IPv6: dpkt walks the extension headers (hop-by-hop, routing, fragment, destination options, AH)
to the TCP header; a fragment other than the first carries no TCP header and is skipped. A
segment keeps its IP header's fields that a check may ask about: the flow label, traffic class
and hop limit (RFC 8200 3; None for IPv4), the TTL and type of service (RFC 791 3.1; None for
IPv6). Addresses are text as the whole lab writes them, str(ipaddress.ip_address(...)):
"10.77.1.10", "fd77:1a2b:1::10" (compressed, RFC 5952).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Segment", "read_pcap", "flag_names", "match_arrivals"]

# the TCP header's control bits (RFC 9293 3.1), in the order the lab writes them
_FLAGS = [(0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG")]


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
    identity (Segment.same_wire: TSval included). Identical segments are common - RSTs carry no
    timestamps, so two RSTs answering two copies of a FIN are the same bytes, and a burst of
    duplicate ACKs leaves within one TSval tick - and only time tells them apart: see _pair."""
    copies: dict[tuple, list[float]] = {}
    for s in received:
        copies.setdefault(s.wire, []).append(s.t)
    sends: dict[tuple, list] = {}
    for s in sent:
        sends.setdefault(s.wire, []).append(s)
    out: dict[int, float | None] = {}
    for key, group in sends.items():
        group.sort(key=lambda s: s.t)
        got = _pair([s.t for s in group], sorted(copies.get(key, [])), skew_s)
        out.update({id(s): t for s, t in zip(group, got)})
    return out


def _pair(sends: list[float], copies: list[float], skew_s: float) -> list[float | None]:
    """Identical segments sent at *sends* and copies received at *copies* (both sorted): which
    copy each send became. The path keeps order (a copy never overtakes an earlier identical
    one), a copy is never earlier than its send (less *skew_s*), as many sends as possible
    arrived, and among such pairings the one with the least total transit time is taken: two
    RSTs 0.5 s apart and one copy 10 ms after the second mean the first was lost; four ACKs sent
    within 0.2 ms and four copies each 6 us after mean none was. Dynamic programming over
    (send, copy), O(len(sends) x len(copies)): identical groups are a few segments long."""
    n, m = len(sends), len(copies)
    # best[i][j]: (arrivals, -transit) pairing sends[i:] with copies[j:]
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]

    def paired(i: int, j: int) -> tuple[int, float] | None:
        """The best of sends[i:] with copies[j:] when send i became copy j (None: it cannot)."""
        if copies[j] < sends[i] - skew_s:
            return None
        arrivals, neg = best[i + 1][j + 1]
        return arrivals + 1, neg - (copies[j] - sends[i])

    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = max(best[i + 1][j], best[i][j + 1], paired(i, j) or (0, 0.0))
    out: list[float | None] = []
    i = j = 0
    while i < n:
        if j < m and paired(i, j) == best[i][j]:
            out.append(copies[j])
            i, j = i + 1, j + 1
            continue
        if j < m and best[i][j] == best[i][j + 1]:
            j += 1
        else:
            out.append(None)
            i += 1
    return out


def read_pcap(path: Path | str) -> list[Segment]:
    """Every TCP segment in the file, IPv4 and IPv6, in capture order (lab.pcap: dpkt is
    imported when a capture is read, not when the scenarios are listed)."""
    from .pcap import read_pcap as read

    return read(path)
