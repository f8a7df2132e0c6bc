"""How long a host keeps several closed connections' 4-tuples, from the wire, probed together: a
TIME-WAIT (both FINs seen) and an orphaned FIN-WAIT-2 (only the host's FIN seen, its peer still
open) each answer lab.twprobe's ACK probe while they hold the 4-tuple and a RST once nothing does.
For a stack with no sock_diag (gVisor), where two such lifetimes run at once (time-wait-duration),
one prober after the other would miss the second's end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .twprobe import PROBE_FOR, Prober, closed_tuple, held_for, router_capture

__all__ = ["Watched", "measure_together", "lifetime_start"]


@dataclass(frozen=True)
class Watched:
    """One closed connection to follow: the host's port, the far end's, and whether only the
    host's FIN was sent (``half``: an orphaned FIN-WAIT-2)."""

    host_port: int
    peer_port: int
    half: bool = False


def lifetime_start(segs: list, tup, half: bool) -> float | None:
    """When the lifetime began as the router saw it: a TIME-WAIT at the host's last ACK of the far
    end's FIN; a FIN-WAIT-2 at the far end's first ACK of the host's FIN."""
    if half:
        acks = [s.t for s in segs if (s.src, s.sport, s.dport) == (tup.peer_addr, tup.peer_port, tup.port)
                and s.has("ACK") and s.ack == tup.host_next]
        return min(acks) if acks else None
    acks = [s.t for s in segs if (s.src, s.sport) == (tup.addr, tup.port) and s.has("ACK")
            and s.ack == tup.peer_next and not s.has("FIN")]
    return max(acks) if acks else None


def measure_together(lab, host: str, peer: str, watched: dict[str, Watched], interval_s: float,
                     timeout_s: float) -> dict[str, dict]:
    """Each of *watched* probed from the router every *interval_s* until it is gone (or
    *timeout_s*): {label: what twprobe.measure returns for one}, or {label: {"error": ...}} when the
    router's capture lacks its FINs."""
    from .pcap import read_pcap

    h, p, router = lab.host(host), lab.host(peer), lab.host(lab.topology.router.name)
    path = router_capture(lab, host)
    segs = read_pcap(path) if path else []
    kind = PROBE_FOR[h.stack]
    out: dict[str, dict] = {}
    probers: dict[str, tuple[Prober, float | None]] = {}
    lab.faults.drop(f"lifetime-probes-{host}", h, p)          # the far end never sees an answer
    try:
        for label, w in watched.items():
            tup = closed_tuple(segs, str(h.address), w.host_port, str(p.address), w.peer_port, half=w.half)
            if tup is None:
                out[label] = {"error": f"the router's capture facing {host} lacks {label}'s FIN"}
                continue
            probers[label] = (Prober(router, None, tup, kind), lifetime_start(segs, tup, w.half))
        started = time.time()
        gone = _probe_until_gone(lab, host, {k: pr for k, (pr, _) in probers.items()}, interval_s, timeout_s)
    finally:
        for pr, _ in probers.values():
            pr.close()
        lab.faults.lift(f"lifetime-probes-{host}")
    for label, (pr, start) in probers.items():
        held, first_gone = held_for(pr.answers, start) if start is not None else (None, None)
        out[label] = {"probe": kind, "stack": h.stack, "started": started, "tw_start": start,
                      "interval_s": interval_s, "held_until_s": held, "gone_by_s": first_gone,
                      "gone": label in gone, "half": watched[label].half,
                      "answers": [a.to_json() for a in pr.answers]}
    lab.note(router.name, f"probed {host}'s " + ", ".join(
        f"{k}: held until +{v.get('held_until_s')} s, gone by +{v.get('gone_by_s')} s" for k, v in out.items()))
    return out


def _probe_until_gone(lab, host: str, probers: dict[str, Prober], interval_s: float, timeout_s: float) -> set:
    """Probe each in turn every *interval_s* until each answered "gone" (a RST or SYN-ACK): the
    labels that did."""
    gone: set[str] = set()
    waiting = lab.waiting.wait(f"{host}'s closed connections to let go (probed from the router)", timeout_s,
                               None) if lab.waiting is not None else None
    deadline = time.monotonic() + timeout_s
    try:
        while len(gone) < len(probers) and time.monotonic() < deadline:
            begun = time.monotonic()
            for label, pr in probers.items():
                if label not in gone and pr.probe().answer in ("rst", "syn-ack"):
                    gone.add(label)
            if waiting is not None:
                waiting.tick()
            time.sleep(max(0.0, interval_s - (time.monotonic() - begun)))
    finally:
        if waiting is not None:
            waiting.close(len(gone) == len(probers))
    return gone
