"""What a run leaves to judge: packets from each capture, the timeline, counters, sysctls, facts.

Checks read only from here, so every verdict comes from something observed in that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .connection import Conn
from .packets import Segment, read_pcap
from .records import TimerSample
from .timeline import Event

__all__ = ["Evidence"]


@dataclass
class Evidence:
    packets: dict[str, list[Segment]]             # host -> segments its capture saw
    timeline: list[Event]
    counters: dict[str, dict[str, int]]           # host -> counter deltas over the run
    sysctls: dict[str, dict[str, str]]            # host -> sysctls in force
    addresses: dict[str, str]                     # host -> its (first) address in the run's family
    faults: dict[str, dict[str, Any]]             # name -> Fault.to_json()
    facts: dict[str, Any] = field(default_factory=dict)   # what the scenario's steps returned
    hz: int | None = None
    timer_samples: dict[str, list[tuple]] = field(default_factory=dict)  # Sampler.series
    options: dict[str, Any] = field(default_factory=dict)   # run options, e.g. strict_rfc
    captures: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> tcpdump's counts
    sampler: dict[str, Any] = field(default_factory=dict)   # lab.health.Cadence.to_json(): its gaps
    port: int | None = None                       # the scenario's port (the server's side)
    family: int = 4                               # the run's address family (lab.family): 4 or 6
    _index: dict = field(default_factory=dict, repr=False, compare=False)   # between()'s, per capture

    def __post_init__(self) -> None:
        self.timer_samples = {h: [TimerSample.of(x) for x in xs] for h, xs in self.timer_samples.items()}

    # -- one connection --------------------------------------------------------------------
    def conn(self, client_port: int, server_port: int | None = None) -> Conn:
        """The connection from the client's *client_port* to the server's *server_port* (by
        default the scenario's port): lab.connection.Conn."""
        return Conn(self, client_port, server_port if server_port is not None else self.port)

    def samples(self, host: str) -> list[TimerSample]:
        """Every sock_diag sample of a running timer in *host*, by name (lab.records)."""
        return self.timer_samples.get(host, [])

    def capture_drops(self) -> dict[str, int]:
        """Hosts whose tcpdump says the kernel dropped packets before it read them: their pcap
        misses segments, so a segment absent from it was not necessarily lost on the wire."""
        return {h: c["dropped"] for h, c in self.captures.items() if c.get("dropped")}

    def due_times(self, host: str, t: float, until: float, state: str = "TIME_WAIT"
                  ) -> list[tuple[float, float]]:
        """When *host*'s timer in *state* was due, as each sock_diag sample taken wholly between
        *t* and *until* saw it: (earliest, latest) absolute times. The kernel computed the
        remaining time somewhere between our asking and its answer, so the due time lies between
        ask + expires and answer + expires. (A sample asked before a packet but answered after
        it may already reflect that packet, so the window must hold the whole sample.)"""
        out = []
        for ts, _key, st, _timer, expires_ms, _retrans, *rest in self.timer_samples.get(host, []):
            answered = rest[0] if rest else ts
            if t < ts and answered < until and st == state:
                out.append((ts + expires_ms / 1000, answered + expires_ms / 1000))
        return out

    def capture_hole(self, *hosts: str) -> str:
        """What the captures of *hosts* (every host when none is named) miss: "" when tcpdump
        dropped nothing there, else e.g. "tcpdump in server dropped 64 packets". A segment
        absent from such a capture may have been on the wire: the check that needed it cannot
        tell, so it is inconclusive (naming this), not failed."""
        drops = {h: n for h, n in self.capture_drops().items() if not hosts or h in hosts}
        return "; ".join(f"tcpdump in {h} dropped {n} packets" for h, n in sorted(drops.items()))

    def sampler_blind_ms(self, t: float, until: float) -> float | None:
        """When no sock_diag poll fell inside [*t*, *until*] (one gap of the sampler spans it all):
        that gap (ms), so a state that lasted only that window could not have been seen. None when
        a poll fell inside, or the cadence was not recorded."""
        spans = [b - a for a, b in self.sampler.get("gaps", []) if a <= t and b >= until]
        return round(max(spans) * 1000, 1) if spans else None

    def sampler_gap_ms(self, t: float, until: float) -> float | None:
        """The longest stretch between two sock_diag polls that overlaps [*t*, *until*] (ms), when
        the sampler fell behind there (a gap over its threshold); None when it kept its pace or
        its cadence was not recorded."""
        gaps = [b - a for a, b in self.sampler.get("gaps", []) if a < until and b > t]
        return round(max(gaps) * 1000, 1) if gaps else None

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Evidence:
        """Evidence kept as JSON (packets, timeline, counters, sysctls, addresses, faults, facts,
        hz, options, captures, timer samples, the sampler's cadence): how recorded runs are
        judged again, e.g. by the unit tests."""
        def segment(s: dict) -> Segment:        # a payload is kept as hex, where it is kept at all
            return Segment(**{**s, "payload": bytes.fromhex(s["payload"])} if "payload" in s else s)

        return cls(packets={h: [segment(s) for s in segs] for h, segs in doc["packets"].items()},
                   timeline=[Event(e["t"], e["host"], e["kind"], e["text"], e["data"])
                             for e in doc["timeline"]],
                   counters=doc["counters"], sysctls=doc["sysctls"], addresses=doc["addresses"],
                   faults=doc["faults"], facts=doc["facts"], hz=doc.get("hz"),
                   options=doc.get("options", {}), captures=doc.get("captures", {}),
                   timer_samples={h: [tuple(x) for x in xs] for h, xs in (doc.get("timer_samples") or {}).items()},
                   port=doc.get("port"), family=int(doc.get("family") or 4),
                   sampler=doc.get("sampler") or (doc.get("observation") or {}).get("sampler") or {})

    @classmethod
    def load(cls, artifacts: Path, names: list[str], **kw: Any) -> Evidence:
        """The run's evidence with each capture's pcap read (ARTIFACTS/NAME.pcap: a host, or one of
        the router's interfaces, "router-client")."""
        packets = {name: read_pcap(artifacts / f"{name}.pcap") for name in names}
        return cls(packets=packets, **kw)

    # -- packets --------------------------------------------------------------------------
    def between(self, at: str, a: tuple[str, int], b: tuple[str, int]) -> list[Segment]:
        """The segments in *at*'s capture between endpoints *a* and *b* ((address, port)), in
        capture order. Indexed once per capture (a capture that changed is indexed again):
        lossy-link asks this 200 times of 100 connections, which scanning took 10 times longer."""
        segs = self.packets.get(at, [])
        mark, idx = self._index.get(at, (None, None))
        now = hash(tuple(map(id, segs)))          # the very segments indexed, whatever was edited
        if mark != now:
            idx = {}
            for s in segs:
                idx.setdefault(frozenset({(s.src, s.sport), (s.dst, s.dport)}), []).append(s)
            self._index[at] = (now, idx)
        return idx.get(frozenset({a, b}), [])

    def segments(self, at: str, src: str | None = None, dst: str | None = None,
                 flag: str | None = None) -> list[Segment]:
        """Segments seen in *at*'s capture, from host *src* to host *dst*, carrying *flag*."""
        out = []
        for s in self.packets.get(at, []):
            if src and s.src != self.addresses[src]:
                continue
            if dst and s.dst != self.addresses[dst]:
                continue
            if flag and not s.has(flag):
                continue
            out.append(s)
        return out

    def acks_of(self, at: str, fin: Segment, after: float | None = None) -> list[Segment]:
        """Segments in *at*'s capture that acknowledge *fin* (ack == fin.seq + len + 1), from the
        FIN's receiver, at or after *after*."""
        want = (fin.seq + fin.length + 1) & 0xFFFFFFFF
        return [s for s in self.packets.get(at, [])
                if s.src == fin.dst and s.dst == fin.src and s.has("ACK") and s.ack == want
                and not s.has("RST") and (after is None or s.t >= after)]

    # -- timeline -------------------------------------------------------------------------
    def states(self, host: str) -> list[Event]:
        return [e for e in self.timeline if e.host == host and e.kind == "state"]

    def ever_in(self, host: str, state: str) -> bool:
        return any(e.state == state for e in self.states(host))

    def counter(self, host: str, name: str) -> int:
        return self.counters.get(host, {}).get(name, 0)

    def sysctl(self, host: str, key: str, default: str | None = None) -> str | None:
        return self.sysctls.get(host, {}).get(key, default)
