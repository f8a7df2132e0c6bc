"""Asking a closed connection's 4-tuple, from the router, whether TIME-WAIT still holds it - from
packets alone, for any TCP stack, without restarting the TIME-WAIT timer.

The router sends a segment that looks as if it came from the far end of the closed connection
(the prober forges its source) to the host that may hold TIME-WAIT, and reads the answer off its
own interface:

    answer                     meaning
    ACK (ack = the far end's   TIME-WAIT holds the 4-tuple (it answers an unacceptable segment
      FIN + 1)                 with an ACK: RFC 9293 §3.10.7.4, "send an acknowledgment")
    RST                        nothing holds it: CLOSED (RFC 9293 §3.10.7.1)
    SYN-ACK                    nothing holds it, a listener took the SYN (a RST then clears it)
    nothing                    no answer within the wait (a dropped probe, or a stack that ignores it)

Which probe disturbs neither stack (reference R-TW-PROBE, measured by tests/integration/
test_tw_probe.py):

    SYN  (no ACK, sequence number before the far end's FIN + 1)
        Linux: tcp_timewait_state_process() - not "after(seq, rcv_nxt)", so no reuse; no ACK flag and
        no PAWS reject, so no inet_twsk_reschedule(): answered by an ACK (TCP_TW_ACK, at most one
        per tcp_invalid_ratelimit, 500 ms), the timer untouched. gVisor: handleTimeWaitSegment()
        drops a segment without ACK silently - no answer.
    ACK  (sequence number outside the window, ack = the host's FIN + 1)
        Linux: "if (paws_reject || th->ack) inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN)" - the timer
        RESTARTS (unusable there). gVisor: answered by an ACK, resetTimeWait false: untouched.

So the prober sends the SYN to a Linux host and the ACK to a gVisor host (``PROBE_FOR``). Each
answer is dropped in the router's forward path (a fault, lab.faults) so that it never reaches the
far end, whose reply (a RST to an ACK it does not expect) would assassinate the TIME-WAIT.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .nsops import inside

if TYPE_CHECKING:
    from .backends.base import Host
    from .faults import Faults
    from .packetlib import dpkt

__all__ = ["Tuple", "Answer", "Prober", "PROBE_FOR", "OLD", "measure", "probe_once", "probe_each"]

PROBE_FOR = {"linux": "syn", "gvisor": "ack"}   # the probe each stack answers without side effects
OLD = 1 << 20          # how far before the far end's FIN + 1 the probe's sequence number lies
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass(frozen=True)
class Tuple:
    """The closed connection: *host* may hold TIME-WAIT at *addr*:*port*; the far end was
    *peer_addr*:*peer_port*. *host_next*: the host's FIN + 1; *peer_next*: the far end's FIN + 1."""

    addr: str
    port: int
    peer_addr: str
    peer_port: int
    host_next: int
    peer_next: int


@dataclass
class Answer:
    t: float                   # when the probe left (time.time())
    kind: str                  # the probe: syn | ack
    answer: str                # ack | rst | syn-ack | none
    rtt_ms: float | None = None
    detail: dict = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.answer == "ack"

    def to_json(self) -> dict:
        return {"t": self.t, "probe": self.kind, "answer": self.answer, "rtt_ms": self.rtt_ms, **self.detail}


def segment(tup: Tuple, kind: str, seq: int | None = None) -> bytes:
    """The probe as an IP packet (IPv4 or IPv6, as the 4-tuple is) from the far end to the host
    (checksums filled in)."""
    from .packetlib import dpkt  # here: the scenarios import this module, and `invoke list` loads no packets

    seq = (tup.peer_next - OLD) % (1 << 32) if seq is None else seq
    flags = dpkt.tcp.TH_SYN if kind == "syn" else dpkt.tcp.TH_ACK if kind == "ack" else dpkt.tcp.TH_RST
    tcp = dpkt.tcp.TCP(sport=tup.peer_port, dport=tup.port, seq=seq, flags=flags, win=1024,
                       ack=tup.host_next if flags & dpkt.tcp.TH_ACK else 0)
    if _v6(tup.addr):                 # dpkt fills in the TCP checksum over IPv6's pseudo-header
        ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, tup.peer_addr),
                           dst=socket.inet_pton(socket.AF_INET6, tup.addr), nxt=dpkt.ip.IP_PROTO_TCP, hlim=64,
                           data=tcp, plen=len(tcp))
        return bytes(ip6)
    ip = dpkt.ip.IP(src=socket.inet_aton(tup.peer_addr), dst=socket.inet_aton(tup.addr), p=dpkt.ip.IP_PROTO_TCP,
                    ttl=64, data=tcp, id=0x7477)          # "tw": the prober's own IP ID
    ip.len = len(ip)
    return bytes(ip)


def _v6(addr: str) -> bool:
    return ":" in addr


def classify(flags: int) -> str:
    from .packetlib import dpkt

    tcp = dpkt.tcp
    if flags & tcp.TH_RST:
        return "rst"
    if flags & tcp.TH_SYN and flags & tcp.TH_ACK:
        return "syn-ack"
    return "ack" if flags & tcp.TH_ACK else "other"


class Prober:
    """Probes one 4-tuple from the router; answers are dropped before they reach the far end."""

    def __init__(self, router: Host, faults: Faults | None, tup: Tuple, kind: str,
                 host: Host | None = None, peer: Host | None = None, wait_s: float = 0.3) -> None:
        self.router, self.tup, self.kind, self.wait_s = router, tup, kind, wait_s
        self.answers: list[Answer] = []
        with inside(router.nspath):
            # IPPROTO_RAW: the packet carries its own IP header (IPv6 too: rawv6_init_sk() sets hdrincl)
            self._tx = socket.socket(socket.AF_INET6 if _v6(tup.addr) else socket.AF_INET, socket.SOCK_RAW,
                                     socket.IPPROTO_RAW)
            self._rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._rx.setblocking(False)
        self._fault = None
        if faults is not None and host is not None and peer is not None:
            self._fault = f"probe-answers-{tup.port}"
            faults.drop(self._fault, host, peer)       # the far end never sees an answer
        self._faults = faults

    def close(self) -> None:
        if self._fault is not None and self._faults is not None:
            self._faults.lift(self._fault)
            self._fault = None
        self._tx.close()
        self._rx.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _drain(self) -> None:
        while True:
            try:
                self._rx.recv(65536)
            except BlockingIOError:
                return

    def probe(self, kind: str | None = None) -> Answer:
        """Send one probe and wait up to wait_s for the host's answer."""
        kind = kind or self.kind
        self._drain()
        t = time.time()
        self._tx.sendto(segment(self.tup, kind), (self.tup.addr, 0))
        deadline = time.monotonic() + self.wait_s
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._rx], [], [], left)
            if not ready:
                break
            try:
                frame, addr = self._rx.recvfrom(65536)
            except BlockingIOError:
                continue
            tcp = self._ours(frame, addr)
            if tcp is not None:
                ans = Answer(t, kind, classify(tcp.flags), round((time.time() - t) * 1000, 2),
                             {"seq": tcp.seq, "ack": tcp.ack})
                if ans.answer == "syn-ack":        # a listener took it: clear the half-open child
                    self._tx.sendto(segment(self.tup, "rst", seq=(tcp.ack) % (1 << 32)), (self.tup.addr, 0))
                self.answers.append(ans)
                return ans
        ans = Answer(t, kind, "none")
        self.answers.append(ans)
        return ans

    def _ours(self, frame: bytes, addr) -> dpkt.tcp.TCP | None:
        from .packetlib import dpkt

        if addr[2] == PACKET_OUTGOING:
            return None
        try:
            eth = dpkt.ethernet.Ethernet(frame)
        except dpkt.UnpackError:
            return None
        ip = eth.data
        if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.tcp.TCP):
            return None
        tcp, fam = ip.data, socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        if (socket.inet_ntop(fam, ip.src), tcp.sport, socket.inet_ntop(fam, ip.dst), tcp.dport) != (
                self.tup.addr, self.tup.port, self.tup.peer_addr, self.tup.peer_port):
            return None
        return tcp

    def until_gone(self, interval_s: float, timeout_s: float, tick=lambda: None) -> Answer | None:
        """Probe every *interval_s* until the 4-tuple is no longer held (a RST or SYN-ACK): that
        answer, or None after *timeout_s*."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            start = time.monotonic()
            ans = self.probe()
            if ans.answer in ("rst", "syn-ack"):
                return ans
            tick()
            time.sleep(max(0.0, interval_s - (time.monotonic() - start)))
        return None


def held_for(answers: list[Answer], since: float) -> tuple[float | None, float | None]:
    """TIME-WAIT's length from the probes: (the last probe answered "held", the first answered
    "gone"), each in seconds after *since*; the true end lies between them."""
    held = [a.t for a in answers if a.holds]
    gone = [a.t for a in answers if a.answer in ("rst", "syn-ack")]
    last = max((t for t in held if not gone or t < min(gone)), default=None)
    first = min(gone) if gone else None
    return (round(last - since, 3) if last is not None else None,
            round(first - since, 3) if first is not None else None)


def closed_tuple(segments: list, host_addr: str, host_port: int, peer_addr: str, peer_port: int,
                 half: bool = False) -> Tuple | None:
    """The Tuple of a closed connection from a capture's segments (both FINs seen), else None.
    *half*: the host's FIN is enough (an orphaned FIN-WAIT-2, its peer still open): the far end's
    next sequence number is then the last it sent."""
    def sent(src: str, sport: int) -> list:
        return [s for s in segments if (s.src, s.sport) == (src, sport) and s.dport in (host_port, peer_port)]

    def fin_next(src: str, sport: int) -> int | None:
        fins = [s for s in sent(src, sport) if s.has("FIN")]
        return (fins[-1].seq + fins[-1].length + 1) % (1 << 32) if fins else None

    host_next, peer_next = fin_next(host_addr, host_port), fin_next(peer_addr, peer_port)
    mine = [s for s in sent(peer_addr, peer_port) if not s.has("SYN")] if half and peer_next is None else []
    if mine:               # the furthest the far end got (a retransmission may come last), modulo 2^32
        base = mine[0].seq
        peer_next = (base + max((s.seq + s.length - base) % (1 << 32) for s in mine)) % (1 << 32)
    if host_next is None or peer_next is None:
        return None
    return Tuple(host_addr, host_port, peer_addr, peer_port, host_next, peer_next)


def probing_started(facts: dict) -> float | None:
    """When a run's prober began (its facts' ``*_probe`` entries, as measure() returns them): the
    segments after it are probes and their answers, not the connection's own - until
    ``probing_ended`` when the run's facts say (what follows is the connections' again)."""
    starts = [v["started"] for k, v in (facts or {}).items()
              if k.endswith("_probe") and isinstance(v, dict) and v.get("started")]
    return min(starts) if starts else None


def probe_summary(facts: dict) -> list[str]:
    """One line per prober run: what it sent and what it found."""
    return [f"{k.removesuffix('_probe')}: {len(v.get('answers', []))} {v.get('probe')} probes from the router "
            f"(every {v.get('interval_s')} s): {'the orphaned FIN-WAIT-2' if v.get('half') else 'TIME-WAIT'} held "
            f"until +{v.get('held_until_s')} s after {'the ACK of its FIN' if v.get('half') else 'the last ACK'}, "
            f"gone by +{v.get('gone_by_s')} s"
            for k, v in (facts or {}).items() if k.endswith("_probe") and isinstance(v, dict) and v.get("answers")]


def router_capture(lab, host: str):
    """The router's capture facing *host* (its pcap path), or None."""
    for name, point in lab.capture_points.items():
        if point["host"] == lab.topology.router.name and host in point["faces"]:
            return lab.captures[name].path
    return None


def _closed(lab, host: str, peer: str, host_port: int, peer_port: int) -> tuple[list, Tuple | None]:
    """The router's capture facing *host*, and the closed connection's Tuple from it (None: it
    does not hold both FINs)."""
    from .pcap import read_pcap

    path = router_capture(lab, host)
    segs = read_pcap(path) if path else []
    return segs, closed_tuple(segs, str(lab.host(host).address), host_port, str(lab.host(peer).address), peer_port)


def probe_once(lab, host: str, peer: str, host_port: int, peer_port: int, kind: str | None = None) -> dict:
    """Does *host* hold the closed connection's 4-tuple right now? One probe from the router (the
    kind its stack answers without side effects): its answer ("ack": TIME-WAIT holds it; "rst" or
    "syn-ack": nothing does; "none": no answer), or an "error" saying why none was sent."""
    _, tup = _closed(lab, host, peer, host_port, peer_port)
    if tup is None:
        return {"error": f"the router's capture facing {host} does not hold both FINs"}
    h = lab.host(host)
    kind = kind or PROBE_FOR[h.stack]
    with Prober(lab.host(lab.topology.router.name), lab.faults, tup, kind, h, lab.host(peer)) as prober:
        ans = prober.probe()
    lab.note(lab.topology.router.name, f"probed {host}:{host_port} with {kind}: {ans.answer}")
    return {"stack": h.stack, **ans.to_json()}


def probe_each(lab, host: str, peer: str, pairs: list[tuple[int, int]], kind: str | None = None) -> dict:
    """probe_once for many closed connections of *host* at once: {str(host port): answer} for each
    (host port, peer port) of *pairs*, the router's capture read once and one fault dropping the
    answers for the whole batch; ``started`` is when the first probe left (what a capture holds
    from then on is the prober's, not the connections')."""
    from .pcap import read_pcap

    h, p, router = lab.host(host), lab.host(peer), lab.host(lab.topology.router.name)
    path = router_capture(lab, host)
    segs = read_pcap(path) if path else []
    kind = kind or PROBE_FOR[h.stack]
    out: dict = {"stack": h.stack, "probe": kind, "started": time.time(), "answers": {}}
    lab.faults.drop(f"probe-answers-{host}", h, p)          # the far end never sees an answer
    try:
        for host_port, peer_port in pairs:
            tup = closed_tuple(segs, str(h.address), host_port, str(p.address), peer_port)
            if tup is None:
                out["answers"][str(host_port)] = {"error": f"the router's capture facing {host} lacks a FIN"}
                continue
            with Prober(router, None, tup, kind) as prober:
                out["answers"][str(host_port)] = prober.probe().to_json()
    finally:
        lab.faults.lift(f"probe-answers-{host}")
    said = [a.get("answer", "error") for a in out["answers"].values()]
    lab.note(router.name, f"probed {len(pairs)} closed connections of {host} with {kind}: "
             + ", ".join(f"{said.count(k)} {k}" for k in sorted(set(said))))
    return out


def measure(lab, host: str, peer: str, host_port: int, peer_port: int, interval_s: float = 1.0,
            timeout_s: float = 150.0, kind: str | None = None, first: tuple[str, ...] = ()) -> dict:
    """How long *host* holds the closed connection's 4-tuple in TIME-WAIT, from the wire: probed
    from the router every *interval_s* (the probe its stack answers without restarting the timer)
    until it is gone. TIME-WAIT (re)started when the host's last ACK of the far end's FIN passed
    the router. *first*: other probes sent once before (what the stack answers to them). Returns
    the answers, that start and the bounds on the length (held_for)."""
    h, p = lab.host(host), lab.host(peer)
    segs, tup = _closed(lab, host, peer, host_port, peer_port)
    if tup is None:
        return {"error": f"the router's capture facing {host} does not hold both FINs"}
    acks = [s.t for s in segs if (s.src, s.sport) == (tup.addr, tup.port) and s.has("ACK")
            and s.ack == tup.peer_next and not s.has("FIN")]
    start = max(acks) if acks else None
    kind = kind or PROBE_FOR[h.stack]
    started = time.time()
    with Prober(lab.host(lab.topology.router.name), lab.faults, tup, kind, h, p) as prober:
        firsts = [{"probe": k, "answer": prober.probe(k).answer} for k in first]
        prober.answers.clear()
        waiting = lab.waiting.wait(f"{host}'s TIME-WAIT to end (probed from the router)", timeout_s,
                                   None) if lab.waiting is not None else None
        ended: bool | None = None          # None: stopped by something else (an interrupt)
        try:
            gone = prober.until_gone(interval_s, timeout_s, tick=(waiting.tick if waiting else lambda: None))
            ended = gone is not None
        finally:
            if waiting is not None:
                waiting.close(ended)
    last_held, first_gone = held_for(prober.answers, start) if start is not None else (None, None)
    lab.note(lab.topology.router.name, f"probed {host}:{host_port} with {kind}: "
             + (f"TIME-WAIT held until +{last_held} s, gone by +{first_gone} s" if gone else "never gone"))
    return {"probe": kind, "stack": h.stack, "first": firsts, "started": started, "tw_start": start,
            "interval_s": interval_s,
            "held_until_s": last_held, "gone_by_s": first_gone, "gone": gone is not None,
            "answers": [a.to_json() for a in prober.answers],
            "tuple": {"addr": tup.addr, "port": tup.port, "peer_addr": tup.peer_addr, "peer_port": tup.peer_port}}
