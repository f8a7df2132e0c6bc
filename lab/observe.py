"""TCP socket states and timers (sock_diag) and counters (nstat), inside the lab hosts.

``sockets(host)`` wraps pyroute2's DiagSocket (whose signature its authors say will change) once,
behind our own SocketInfo. A Sampler polls the hosts' sockets on the lab ports in the background and
writes each state change and each timer restart to the timeline, so a verdict can say "the
TIME-WAIT timer went back to 59.9 s at t=0.41" from what the kernel reported.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import asdict, dataclass

from pyroute2 import DiagSocket
from pyroute2.netlink.diag import SS_ALL

from .backends.base import Host
from .netns import inside, read_counters
from .timeline import Timeline

__all__ = ["SocketInfo", "SocketView", "Sampler", "counters_delta", "read_counters", "TCP_STATES"]

TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}
TIMERS = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "probe"}


@dataclass(frozen=True)
class SocketInfo:
    state: str
    src: str
    sport: int
    dst: str
    dport: int
    timer: str
    expires_ms: int
    retrans: int
    inode: int

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def to_json(self) -> dict:
        return asdict(self)


class SocketView:
    """sock_diag sockets made inside one host's namespace (a socket stays where it was made).

    pyroute2's netlink sockets are per thread, so each thread that asks gets its own, made in
    the namespace the first time that thread asks."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._local = threading.local()
        self._all: list[DiagSocket] = []
        self._lock = threading.Lock()
        self._ds()          # fail early (and in the caller's thread) if the namespace is gone

    def _ds(self) -> DiagSocket:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            with inside(self.host.nspath):
                ds = DiagSocket()
                ds.bind()
            self._local.ds = ds
            with self._lock:
                self._all.append(ds)
        return ds

    def sockets(self, port: int | None = None, states: set[str] | None = None) -> list[SocketInfo]:
        msgs = self._ds().get_sock_stats(family=socket.AF_INET, states=SS_ALL)
        out = []
        for m in msgs:
            state = TCP_STATES.get(m["idiag_state"], str(m["idiag_state"]))
            info = SocketInfo(state, m["idiag_src"], m["idiag_sport"], m["idiag_dst"],
                              m["idiag_dport"], TIMERS.get(m["idiag_timer"], "?"),
                              m["idiag_expires"], m["idiag_retrans"], m["idiag_inode"])
            if port is not None and port not in (info.sport, info.dport):
                continue
            if states is not None and state not in states:
                continue
            out.append(info)
        return out

    def close(self) -> None:
        with self._lock:
            for ds in self._all:
                ds.close()
            self._all.clear()


class Sampler:
    """Polls the hosts' sockets on *port* every *interval_s*; writes changes to the timeline."""

    def __init__(self, views: dict[str, SocketView], port: int, timeline: Timeline,
                 interval_s: float = 0.005) -> None:
        self.views, self.port, self.timeline, self.interval_s = views, port, timeline, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twlab-sampler", daemon=True)
        self._last: dict[tuple[str, tuple], SocketInfo] = {}
        self.samples = 0
        # host -> [(t, "src:sport-dst:dport", state, timer, expires_ms, retrans)], every sample
        # of every socket with a running timer: when a timer was due, seen from each sample
        self.series: dict[str, list[tuple]] = {}

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def poll(self) -> None:
        seen = set()
        for name, view in self.views.items():
            t_ask = time.time()
            try:
                socks = view.sockets(port=self.port)
            except Exception:   # a dump cut short (a signal, a namespace going away): skip it
                continue
            now = (t_ask + time.time()) / 2       # the kernel answered between these two
            for s in socks:
                k = (name, s.key)
                seen.add(k)
                if s.timer != "off":
                    self.series.setdefault(name, []).append(
                        (round(now, 6), f"{s.src}:{s.sport}-{s.dst}:{s.dport}", s.state, s.timer,
                         s.expires_ms, s.retrans))
                old = self._last.get(k)
                if old is None or old.state != s.state:
                    self.timeline.add(now, name, "state",
                                      f"{s.src}:{s.sport} -> {s.dst}:{s.dport} {s.state}",
                                      socket=s.to_json(), previous=old.state if old else None)
                elif s.timer == old.timer and s.timer in ("timewait", "on") and \
                        s.expires_ms > old.expires_ms + 50:
                    self.timeline.add(now, name, "timer",
                                      f"{s.state} {s.timer} timer restarted: "
                                      f"{old.expires_ms} -> {s.expires_ms} ms",
                                      socket=s.to_json(), before_ms=old.expires_ms)
                self._last[k] = s
            for k in [k for k in self._last if k[0] == name and k not in seen]:
                gone = self._last.pop(k)
                self.timeline.add(now, name, "state",
                                  f"{gone.src}:{gone.sport} -> {gone.dst}:{gone.dport} gone",
                                  socket={**gone.to_json(), "state": "GONE"}, previous=gone.state)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that changed, as after - before (gauges such as SockstatTcpTw included)."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
