"""Targeted faults: drop, hold or copy packets that match a direction and TCP flags, in the
router's forward path.

Exact and repeatable, never random: a rule in an nftables table of the router's own namespace
(``table inet twlab``) matches the sender's and receiver's addresses and the TCP flags, logs each
match to NFLOG (group 1, prefixed with the fault's name) and drops it. The NFLOG stream is captured
to ``faults.pcap``, so every drop is recorded with its time and its full packet, and the rule's
counter says how many were dropped. Installing and lifting a fault are atomic nft transactions.

Holding a packet is dropping it and keeping the copy NFLOG handed over: ``release`` sends the
held packets on, byte for byte as they arrived, from a raw socket in the router's namespace (the
router's own output path, which the forward-path rules do not see). ``copy`` logs without dropping,
so real segments of a connection can be replayed later (``inject``): wandering duplicates made of
what was really on the wire, never invented by hand.

Both address families: the table is an ``inet`` one (its forward chain sees IPv4 and IPv6), and a
rule matches the hosts' addresses of the lab's family (``ip saddr``/``ip daddr`` or ``ip6 saddr``/
``ip6 daddr``, flags alike); NFLOG hands over packets of both, and a packet is sent again from a
raw socket of its own version (IPv6: IPPROTO_RAW, which includes the header, as IPv4's does),
with its TCP checksum computed again (lab.checksum).
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .capture import Capture
from .checksum import tcp_checksummed
from .errors import BackendError, LabError, UsageError
from .nft import Nft
from .records import endpoint

if TYPE_CHECKING:
    from .backends.base import Host
    from .timeline import Timeline

__all__ = ["Faults", "Fault", "FLAG_BITS"]

TABLE = "twlab"
NFLOG_GROUP = 1
FLAG_BITS = ("fin", "syn", "rst", "psh", "ack", "urg")


def _flag_expr(flags: str | None, has: str | None) -> str:
    def bits(spec: str) -> list[str]:
        names = [b.strip().lower() for b in spec.replace(",", "|").split("|") if b.strip()]
        for n in names:
            if n not in FLAG_BITS:
                raise UsageError(f"unknown TCP flag {n!r}: use {', '.join(FLAG_BITS)}")
        return names

    mask = "(" + "|".join(FLAG_BITS) + ")"
    if flags:   # exactly these among FSRPAU
        return f"tcp flags & {mask} == ({'|'.join(bits(flags))})"
    if has:     # at least these
        want = "|".join(bits(has))
        return f"tcp flags & ({want}) == ({want})"
    return "meta l4proto tcp"


@dataclass
class Fault:
    name: str
    description: str
    rule: str
    handle: int
    installed_at: float
    removed_at: float | None = None
    lift_asked_at: float | None = None     # the rule went at some moment between these two
    dropped: int = 0
    drop_times: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "nft_rule": self.rule,
                "installed_at": self.installed_at, "removed_at": self.removed_at,
                "lift_asked_at": self.lift_asked_at,
                "dropped": self.dropped, "drop_times": self.drop_times}


class Faults:
    """The fault layer of one lab: lives in the router's namespace."""

    def __init__(self, router: Host, timeline: Timeline, pcap: Path) -> None:
        self.router, self.timeline, self.pcap = router, timeline, Path(pcap)
        self.faults: dict[str, Fault] = {}
        self._capture: Capture | None = None
        self._ready = False
        self._nftables: Nft | None = None                  # its libnftables context (lab.nft)

    @property
    def capture(self) -> Capture | None:
        """The NFLOG capture writing faults.pcap (None before start and after stop)."""
        return self._capture

    def _nft(self, script: str, echo: bool = False, json: bool = False) -> str:
        if self._nftables is None:
            self._nftables = Nft(self.router.nspath)
        return self._nftables.run(script, echo=echo, json=json)

    def start(self, wait: bool = True) -> Faults:
        """The table and the NFLOG capture; *wait* False leaves waiting for the capture to listen
        to the caller (``capture.ready()``), who starts its other captures meanwhile."""
        self._nft(f"add table inet {TABLE}\n"
                  f"add chain inet {TABLE} forward {{ type filter hook forward priority -10; policy accept; }}\n")
        self._ready = True
        self._capture = Capture(self.router.nspath, f"nflog:{NFLOG_GROUP}", self.pcap, bpf="").launch()
        if wait:
            self._capture.ready()
        return self

    def drop(self, name: str, src: Host, dst: Host, flags: str | None = None,
             has: str | None = None) -> Fault:
        """Drop every packet from *src* to *dst* whose TCP flags are exactly *flags*
        (e.g. "ack": pure ACKs) or include *has* (e.g. "fin")."""
        return self._add(name, src, dst, flags, has, verdict="drop", what="drop")

    def _add(self, name: str, src: Host, dst: Host, flags: str | None, has: str | None,
             verdict: str, what: str) -> Fault:
        if name in self.faults and self.faults[name].removed_at is None:
            raise UsageError(f"fault {name!r} is already installed")
        if " " in name or '"' in name:
            raise UsageError(f"fault name {name!r}: no spaces or quotes")
        proto, saddrs = _addresses(src)
        _, daddrs = _addresses(dst, src.family)
        match = (f"{proto} saddr {{ {', '.join(saddrs)} }} {proto} daddr {{ {', '.join(daddrs)} }} "
                 f"{_flag_expr(flags, has)}")
        # queue-threshold 1: the kernel hands each logged packet to the capture at once
        # a named counter outlives the rule, so what it matched can be read after lifting it
        rule = (f'{match} counter name "c_{name}" log prefix "{name} " group {NFLOG_GROUP} '
                f'queue-threshold 1 {verdict}').rstrip()
        out = self._nft(f"add counter inet {TABLE} c_{name}\nadd rule inet {TABLE} forward {rule}\n", echo=True)
        handle = _handle_from_echo(out)
        what = f"{what} {src.name}->{dst.name} tcp " + (f"flags=={flags}" if flags else f"has {has}" if has else "any")
        fault = Fault(name, what, rule, handle, time.time())
        self.faults[name] = fault
        self.timeline.add(fault.installed_at, self.router.name, "fault", f"fault {name} on: {what}",
                          fault=name)
        return fault

    def hold(self, name: str, src: Host, dst: Host, flags: str | None = None,
             has: str | None = None) -> Fault:
        """Like drop, but the packets are kept: ``release(name)`` sends them on."""
        return self.drop(name, src, dst, flags=flags, has=has)

    def copy(self, name: str, src: Host, dst: Host, flags: str | None = None,
             has: str | None = None) -> Fault:
        """Let matching packets through, keeping a copy of each (``logged(name)``)."""
        return self._add(name, src, dst, flags, has, verdict="", what="copy")

    def logged(self, name: str, settle_s: float = 0.05) -> list:
        """The packets fault *name* has logged so far (held, dropped or copied), oldest first."""
        from .packets import read_pcap

        time.sleep(settle_s)          # NFLOG -> tcpdump -> file is quick, not instant
        return [seg for seg in read_pcap(self.pcap) if seg.prefix == name]

    def inject(self, segments: list, toward: Host) -> float:
        """Send these captured packets again, unchanged, from the router toward *toward*;
        returns when they were sent."""
        from .nsops import inside

        raws: dict[int, socket.socket] = {}
        try:
            with inside(self.router.nspath):
                for version in {seg.ip[0] >> 4 for seg in segments}:
                    raws[version] = socket.socket(_AF[version], socket.SOCK_RAW, socket.IPPROTO_RAW)
            sent = time.time()
            for seg in segments:
                version = seg.ip[0] >> 4
                raws[version].sendto(tcp_checksummed(seg.ip), (str(toward.addr(version)), 0))
        finally:
            for raw in raws.values():
                raw.close()
        self.timeline.add(sent, self.router.name, "fault",
                          f"injected {len(segments)} captured segment(s) toward {toward.name}: "
                          + ", ".join(f"{s.flags} seq={s.seq}" for s in segments),
                          segments=[s.to_json() for s in segments])
        return sent

    def release(self, name: str, toward: Host) -> list:
        """Lift hold *name* and send on every packet it held, in order."""
        self.lift(name)
        held = self.logged(name)
        if held:
            self.inject(held, toward)
        return held

    def count(self, name: str) -> int:
        """How many packets fault *name* has matched so far."""
        fault = self.faults[name]
        if fault.removed_at is not None:
            return fault.dropped
        return self._counter(name)

    def _counter(self, name: str) -> int:
        doc = json.loads(self._nft(f"list counter inet {TABLE} c_{name}", json=True))
        for item in doc.get("nftables", []):
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise BackendError(f"nft has no counter for fault {name}")

    def lift(self, name: str) -> Fault:
        fault = self.faults[name]
        if fault.removed_at is None:
            fault.lift_asked_at = time.time()
            self._nft(f"delete rule inet {TABLE} forward handle {fault.handle}")
            fault.removed_at = time.time()
            fault.dropped = self._counter(name)
            # a fault installed again under this name starts from zero
            self._nft(f"delete counter inet {TABLE} c_{name}")
            self.timeline.add(fault.removed_at, self.router.name, "fault",
                              f"fault {name} off after {fault.dropped} matches", fault=name,
                              dropped=fault.dropped)
        return fault

    def disarm(self) -> None:
        """Lift every fault and remove the table (safe to call twice)."""
        for name in list(self.faults):
            try:
                self.lift(name)
            except Exception:
                pass
        if self._ready:
            self._ready = False
            try:    # about 1 ms through the library; the namespace itself may be gone
                self._nft(f"delete table inet {TABLE}")
            except LabError:
                pass
        self._nftables = None

    def stop(self) -> None:
        """disarm(), stop the NFLOG capture (a lab stops it with its others: ``capture``), read
        the drop times."""
        self.disarm()
        if self._capture is not None:
            self._capture.stop()
            self._capture = None
            from .packets import read_pcap

            for seg in read_pcap(self.pcap):
                if seg.prefix in self.faults:
                    fault = self.faults[seg.prefix]
                    fault.drop_times.append(seg.t)
                    kind = fault.description.split(" ")[0]             # "drop" or "copy"
                    verb = {"drop": "dropped", "copy": "copied"}[kind]
                    self.timeline.add(seg.t, self.router.name, kind,
                                      f"{verb} {seg.flags} {endpoint(seg.src, seg.sport)} -> "
                                      f"{endpoint(seg.dst, seg.dport)}"
                                      f" (fault {seg.prefix})", segment=seg.to_json())


_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def _addresses(host: Host, family: int | None = None) -> tuple[str, list[str]]:
    """The nft keyword for *family* (the lab's by default) and the host's addresses in it, one on
    each of its networks."""
    family = family or host.family
    return ("ip6" if family == 6 else "ip"), [str(a) for a in host.addrs(family).values()]


def _handle_from_echo(out: str) -> int:
    """`nft --echo --handle` prints the rule it added, ending in "# handle N": as "add rule", or
    as "insert rule" where the kernel echoes it without NLM_F_APPEND (Debian 11's 5.10 does)."""
    m = re.search(r"^(?:add|insert) rule .*# handle (\d+)\s*$", out, re.MULTILINE)
    if not m:
        raise BackendError(f"nft did not echo a rule handle: {out.strip()[:200]!r}")
    return int(m.group(1))
