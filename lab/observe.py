"""TCP socket states and timers (sock_diag) and counters (nstat), inside the lab hosts.

``SocketView.sockets()`` dumps a host's TCP sockets; ``SocketView.lookup()`` asks for one socket by
its 4-tuple. A Sampler polls the lab's sockets in the background and writes each state change and
each timer restart to the timeline, and keeps every timer sample, so a verdict can say "the
TIME-WAIT timer was due 60.002 s after that FIN" from what the kernel reported.

The netlink requests are built and parsed here with ``struct`` rather than with pyroute2's
DiagSocket, for a measured reason: a sock_diag *dump* walks every bucket of the kernel's TCP hash
table (shared by all namespaces; ~1.5 ms on this 24 GB machine whatever the number of sockets), and
pyroute2 0.9 adds 1-3 ms of CPU per request on top; an exact lookup by 4-tuple costs ~13 us. The
Sampler therefore dumps only every ``discover_s`` to find new sockets and follows known ones by
lookup every ``interval_s``: 5 ms sampling that costs almost nothing, even with ten labs at once.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

from .health import Cadence
from .nsops import inside, read_counters
from .records import TIMER_RESTART_MS, SocketInfo, TimerSample, four_tuple_key

if TYPE_CHECKING:
    from .backends.base import Host
    from .timeline import Timeline

__all__ = ["SocketInfo", "SocketView", "Sampler", "counters_delta", "read_counters", "TCP_STATES"]

TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}
TIMERS = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "probe"}

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_MULTI, _NLM_F_DUMP = 0x1, 0x2, 0x300
_ALL_STATES = 0xFFF
_NOCOOKIE = 0xFFFFFFFF


def _packed(addr: str, family: int) -> bytes:
    """An address as inet_diag_sockid holds it: 16 bytes (__be32[4]), an IPv4 one in the first
    four; an IPv4 address asked of AF_INET6 as its v4-mapped form (::ffff:a.b.c.d), as a
    v4-mapped socket names it."""
    ip = ipaddress.ip_address(addr)
    if family == socket.AF_INET6 and ip.version == 4:
        ip = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    if (ip.version == 6) != (family == socket.AF_INET6):
        raise ValueError(f"sock_diag: {addr} is no address of family {family}")
    return ip.packed.ljust(16, b"\0")


def _request(family: int, flags: int, key: tuple[str, int, str, int] | None = None) -> bytes:
    """struct inet_diag_req_v2 (include/uapi/linux/inet_diag.h) behind a netlink header: a dump
    of *family*'s TCP sockets, or (with *key*) the lookup of one by its 4-tuple."""
    any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
    src, sport, dst, dport = key or (any_addr, 0, any_addr, 0)
    body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, _ALL_STATES)
    body += struct.pack(">HH", sport, dport)
    body += _packed(src, family) + _packed(dst, family)
    body += struct.pack("=III", 0, _NOCOOKIE, _NOCOOKIE)
    return struct.pack("=IHHII", 16 + len(body), _SOCK_DIAG_BY_FAMILY, flags, 1, 0) + body


_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_DUMPS = {af: _request(af, _NLM_F_REQUEST | _NLM_F_DUMP) for af in _FAMILIES.values()}


def _address(family: int, raw: bytes) -> str:
    """An address of inet_diag_sockid as text, the way the whole lab writes it:
    str(ipaddress.ip_address(...)) (compressed IPv6, RFC 5952)."""
    return str(ipaddress.IPv6Address(raw) if family == socket.AF_INET6 else ipaddress.IPv4Address(raw[:4]))


def _parse(data: bytes, off: int) -> SocketInfo:
    """struct inet_diag_msg, after the 16-byte netlink header at *off*."""
    fam, state, timer, retrans = struct.unpack_from("=BBBB", data, off + 16)
    sport, dport = struct.unpack_from(">HH", data, off + 20)
    src = _address(fam, data[off + 24:off + 40])
    dst = _address(fam, data[off + 40:off + 56])
    _if, _cookie, expires, _rq, _wq, _uid, inode = struct.unpack_from("=IQIIIII", data, off + 56)
    return SocketInfo(TCP_STATES.get(state, str(state)), src, sport, dst, dport,
                      TIMERS.get(timer, "?"), expires, retrans, inode)


class SocketView:
    """sock_diag for one host and one address family (4 or 6; by default the host's sockets', which
    the Lab sets to the run's, or 6 in a v4-mapped host): netlink sockets made inside its namespace
    (a socket stays in the namespace it was made in), one per thread that asks. An AF_INET6 view sees the AF_INET6
    sockets, v4-mapped ones included (their addresses read ::ffff:a.b.c.d); an AF_INET one never
    does."""

    def __init__(self, host: Host, family: int | None = None) -> None:
        self.host = host
        self.family = getattr(host, "socket_family", host.family) if family is None else family
        if self.family not in _FAMILIES:
            raise ValueError(f"address family {self.family!r}: 4 or 6")
        self._af = _FAMILIES[self.family]
        self._local = threading.local()
        self._all: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock()        # fail early (and in the caller's thread) if the namespace is gone

    def _sock(self) -> socket.socket:
        sk = getattr(self._local, "sk", None)
        if sk is None:
            with inside(self.host.nspath):
                sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
            sk.bind((0, 0))
            self._local.sk = sk
            with self._lock:
                self._all.append(sk)
        return sk

    def _ask(self, request: bytes) -> list[SocketInfo]:
        sk = self._sock()
        sk.send(request)
        out: list[SocketInfo] = []
        while True:
            data = sk.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, typ, flags = struct.unpack_from("=IHH", data, off)
                if typ == _NLMSG_DONE:
                    return out
                if typ == _NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err in (0, errno.ENOENT):
                        return out
                    raise OSError(err, f"sock_diag: {errno.errorcode.get(err, err)}")
                if typ == _SOCK_DIAG_BY_FAMILY:
                    out.append(_parse(data, off))
                    if not flags & _NLM_F_MULTI:
                        return out
                off += (length + 3) & ~3

    def sockets(self, port: int | None = None, states: set[str] | None = None) -> list[SocketInfo]:
        """Every TCP socket of the host in the view's family (on *port*, in *states*)."""
        return [s for s in self._ask(_DUMPS[self._af])
                if (port is None or port in (s.sport, s.dport))
                and (states is None or s.state in states)]

    def lookup(self, key: tuple[str, int, str, int]) -> SocketInfo | None:
        """The socket with this 4-tuple (any state, TIME-WAIT included), or None."""
        found = self._ask(_request(self._af, _NLM_F_REQUEST, key))
        # the kernel's lookup falls back to a listener on the port when the connection is gone
        return found[0] if found and found[0].key == key else None

    def forget_sockets(self) -> None:
        """Drop this object's netlink sockets without closing them: in a forked child (the
        sampler), they are the parent's; new ones are made on the next request."""
        with self._lock:
            for sk in self._all:
                sk.detach()
            self._all.clear()
        self._local = threading.local()

    def close(self) -> None:
        with self._lock:
            for sk in self._all:
                sk.close()
            self._all.clear()


class Sampler:
    """Polls the hosts' sockets on *port*: each state change and timer restart goes to the
    timeline, every sample of a running timer to ``series``, each round's time to ``cadence``.
    lab.sampling runs it in a process of its own every *interval_s*."""

    def __init__(self, views: dict[str, SocketView], port: int, timeline: Timeline,
                 interval_s: float = 0.005, discover_s: float = 0.05) -> None:
        self.views, self.port, self.timeline, self.interval_s = views, port, timeline, interval_s
        self.discover_s = discover_s
        self.cadence = Cadence(gap_s=2 * interval_s)   # when each round was asked: the gaps
        self._last: dict[tuple[str, tuple], SocketInfo] = {}
        # a known socket one poll missed: (answer time, asking time, the round before) of that poll.
        # It is called gone only when the next poll misses it too - a lookup can miss a socket
        # mid-change: under close polling, Linux 6.18 answered nothing for a connection moving from
        # FIN_WAIT1 to TIME-WAIT, and a dump 46 ms later found its TIME-WAIT (seen 2026-12-04)
        self._missed: dict[tuple[str, tuple], tuple[float, float, float | None]] = {}
        self._asked: dict[str, float] = {}      # host -> when its last round was asked
        self._dumped: dict[str, float] = {}     # host -> when its last dump was asked
        self.samples = 0
        # host -> every sample of every socket with a running timer
        self.series: dict[str, list[TimerSample]] = {}

    def poll(self, discover: bool | None = None) -> bool:
        """One sample: a dump of the port's sockets every discover_s (or when *discover*), exact
        lookups of the known ones in between (however often the polls come: see ``closely``).
        False when a host's dump or lookups failed (skipped: its sockets unseen this round)."""
        now = time.time()
        mono, after = time.monotonic(), time.time()     # the clocks' offset, unless a preemption split the reads
        whole = True
        if discover is None:
            discover = now - min(self._dumped.values(), default=0.0) >= self.discover_s
        self.cadence.tick(now, mono if after - now < 0.001 else None)
        for name, view in self.views.items():
            known = [k for (h, k) in self._last if h == name]
            if not discover and not known:
                continue
            t_ask = time.time()
            try:
                if discover:
                    socks = view.sockets(port=self.port)
                    # a dump is not atomic: a socket moving in the hash table while it runs (a
                    # full socket becoming a TIME-WAIT one, with 200 others doing the same) can
                    # be skipped - seen under qemu. A known socket the dump lacks is looked up
                    # before it is called gone.
                    listed = {s.key for s in socks}
                    socks += [s for s in (view.lookup(k) for k in known if k not in listed) if s is not None]
                else:
                    socks = [s for s in (view.lookup(k) for k in known) if s is not None]
            except Exception:   # a dump cut short (a signal, a namespace going away): skip it
                whole = False
                continue
            t_answer = time.time()
            # the kernel computed each timer between the two; t_ask + expires is a lower bound
            # of when the timer is due, t_answer + expires an upper one. A state change or a
            # disappearance happened after the previous sample was asked and before this one
            # was answered: events carry the answer time (the thread may have been descheduled
            # between asking and the kernel answering), and the asking time as "asked".
            now = t_answer
            seen = set()
            for s in socks:
                seen.add((name, s.key))
                miss = self._missed.pop((name, s.key), None)     # the poll that missed it saw nothing:
                self._seen(name, s, t_ask, now, miss[2] if miss else None)   # a change lies after the one before
            for k in [k for k in self._last if k[0] == name and k not in seen]:
                if k not in self._missed:           # missed once: asked again next poll
                    self._missed[k] = (now, t_ask, self._asked.get(name))
                else:
                    self._gone(k, confirmed=now)
            self._asked[name] = t_ask
            if discover:
                self._dumped[name] = t_ask
        self.samples += 1
        return whole

    def _gone(self, k: tuple[str, tuple], confirmed: float | None) -> None:
        """The socket *k* went: as of the first poll that missed it (*confirmed*: the poll that
        missed it again, None at the sampler's last look)."""
        t, asked, since = self._missed.pop(k)
        gone = self._last.pop(k)
        self.timeline.add(t, k[0], "state", f"{gone} gone", socket={**gone.to_json(), "state": "GONE"},
                          previous=gone.state, asked=asked, since=since, confirmed=confirmed)

    def finish(self) -> None:
        """After the last poll: the sockets it missed are gone (no later poll will ask again)."""
        for k in list(self._missed):
            self._gone(k, confirmed=None)

    def _seen(self, name: str, s: SocketInfo, t_ask: float, now: float, since: float | None = None) -> None:
        """One socket in one sample: its timer into the series, a change of state or a timer
        restart into the timeline (*since*: the round that last saw it, when not the previous one)."""
        k = (name, s.key)
        if s.timer != "off":
            self.series.setdefault(name, []).append(TimerSample(
                round(t_ask, 6), four_tuple_key(*s.key), s.state, s.timer, s.expires_ms,
                s.retrans, round(now, 6)))
        old = self._last.get(k)
        if old is None or old.state != s.state:
            # "since": the round before, which saw the old state (or, for a socket first found,
            # the dump before, which did not list it): the change lies after it
            if since is None:
                since = (self._asked if old else self._dumped).get(name)
            self.timeline.add(now, name, "state", f"{s} {s.state}",
                              socket=s.to_json(), previous=old.state if old else None, asked=t_ask, since=since)
        elif s.timer == old.timer and s.timer in ("timewait", "on") \
                and s.expires_ms > old.expires_ms + TIMER_RESTART_MS:
            self.timeline.add(now, name, "timer", f"{s.state} {s.timer} timer restarted: "
                              f"{old.expires_ms} -> {s.expires_ms} ms", socket=s.to_json(), before_ms=old.expires_ms)
        self._last[k] = s


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that changed, as after - before (gauges such as SockstatTcpTw included)."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
