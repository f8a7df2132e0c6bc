"""Link shaping: what --shape asks for (LinkProfile, Shaping), what a run's links did
(seeding, observed_path). lab/netem.py puts it in the kernel (pyroute2 tc), on the router's egress
toward each end; kept apart so that naming the scenarios (`invoke list`) loads no netlink code.

A direction ``client->server`` is shaped on the router's interface toward the server, so each
end's capture shows what really crossed the "network". Units in names (``delay_ms``, ``loss_pct``);
pyroute2's units (microseconds, percent) appear in one place, ``_netem_args``.

Many kernels have no sch_netem (this machine's cloud kernel, some WSL2 and Docker Desktop
kernels). ``lab.netem.probe`` finds out inside a lab namespace - never the host's - and the lab says so in
one line and runs whatever does not need shaping.

netem shapes every frame on the interface, ARP and IPv6 neighbour discovery included: a delayed
ARP or NDP exchange adds a round trip to the first packet, and with loss a request or reply can be
dropped (the packet then waits a second or more for the retry). ``lab.netem.pin_neighbours`` gives both
ends of a shaped link permanent neighbour entries for both families, so neither crosses it.

netem's random draws (loss, duplication, ...) can be seeded since Linux 6.6 (TCA_NETEM_PRNG_SEED,
kernel commit 4072d97ddc44; iproute2's ``tc ... netem seed N``), and such a kernel reports the seed
in force whether or not one was given (netem_dump()), so a run can always say which seed drew its
losses, and ``seed=N`` in --shape replays the same draws. pyroute2 0.9's netem plugin has no such
attribute: ``lab.netem.SeededNetem`` is that plugin with the attributes up to the seed added, put in
pyroute2's plugin table for kind "netem" (encoding and decoding). Debian 12's 6.1 ends at
TCA_NETEM_SLOT_DIST and ignores an attribute it does not know (checked in the VM: a seed is not
echoed back, and three runs with the same "seed" dropped different packets): there each run draws
its own losses, and a scenario that uses loss counts outcomes over many tries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import UsageError, quoted

__all__ = ["LinkProfile", "Shaping", "parse_shape", "parse_shapes", "seeding", "observed_path",
           "NETEM_SEED_SINCE", "REQUIRED", "OPTIONAL", "UNUSED"]

REQUIRED, OPTIONAL, UNUSED = "required", "optional", "unused"


@dataclass(frozen=True)
class LinkProfile:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0
    rate_kbit: int | None = None
    seed: int | None = None        # netem's PRNG seed (Linux 6.6+); None: the kernel draws one

    def __bool__(self) -> bool:
        return any(v for v in asdict(self).values())

    def _netem_args(self) -> dict:
        args = {"delay": int(self.delay_ms * 1000), "jitter": int(self.jitter_ms * 1000),
                "loss": self.loss_pct, "duplicate": self.duplicate_pct}
        if self.reorder_pct:
            args["prob_reorder"] = self.reorder_pct
        if self.rate_kbit:
            args["rate"] = f"{self.rate_kbit}kbit"
        if self.seed is not None:
            args["seed"] = self.seed
        return args


@dataclass(frozen=True)
class Shaping:
    """A profile for one direction of the path: packets from *src* to *dst*."""

    src: str
    dst: str
    profile: LinkProfile

    def __str__(self) -> str:
        fields = ",".join(f"{k}={v}" for k, v in asdict(self.profile).items() if v or (k == "seed" and v == 0))
        return f"{self.src}->{self.dst}:{fields}"


def parse_shape(text: str) -> list[Shaping]:
    """"client->server:delay_ms=50,jitter_ms=5" (one direction) or "both:delay_ms=50"."""
    where, sep, spec = text.partition(":")
    flag = f"--shape {quoted(text)}"
    usage = ("write SRC->DST:KEY=VALUE,... or both:KEY=VALUE,..., e.g. "
             "client->server:delay_ms=50,jitter_ms=5; keys: " + ", ".join(LinkProfile.__dataclass_fields__))
    if not sep or not spec:
        raise UsageError(f"{flag}: {usage}")
    values: dict = {}
    for item in spec.split(","):
        key, eq, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or key not in LinkProfile.__dataclass_fields__:
            raise UsageError(f"{flag}: unknown setting {quoted(key)}; " + usage.split("; ")[1])
        if key in values:
            raise UsageError(f"{flag}: {key} is given twice; give each setting once")
        values[key] = _value(flag, key, val)
    profile = LinkProfile(**values)
    if where.strip() == "both":
        return [Shaping("client", "server", profile), Shaping("server", "client", profile)]
    src, arrow, dst = (w.strip() for w in where.partition("->"))
    if not arrow or not src or not dst:
        raise UsageError(f"{flag}: {usage}")
    if src == dst:
        raise UsageError(f"{flag}: {src}->{dst} is no path; shape between two hosts, e.g. client->server")
    return [Shaping(src, dst, profile)]


def _value(flag: str, key: str, val: str) -> float | int:
    if key == "seed":
        try:
            seed = int(val, 0)
        except ValueError:
            raise UsageError(f"{flag}: seed takes a whole number, not {quoted(val)}") from None
        if not 0 <= seed < 2**64:
            raise UsageError(f"{flag}: seed={quoted(val)} is out of range (0 .. 2^64-1)")
        return seed
    try:
        number = float(val)
    except ValueError:
        raise UsageError(f"{flag}: {key} takes a number, not {quoted(val)}") from None
    if not math.isfinite(number) or number < 0 or (key.endswith("_pct") and number > 100):
        raise UsageError(f"{flag}: {key}={quoted(val)} is out of range"
                         + ("; 0 .. 100" if key.endswith("_pct") else "; a finite number, 0 or more"))
    return int(number) if key == "rate_kbit" else number


def parse_shapes(texts: list[str]) -> list[Shaping]:
    """Every --shape given; a direction shaped twice (``both:`` and ``client->server:``) is refused
    rather than one silently replacing the other."""
    out: list[Shaping] = []
    for text in texts:
        for sh in parse_shape(text):
            if any((o.src, o.dst) == (sh.src, sh.dst) for o in out):
                raise UsageError(f"--shape {quoted(text)}: {sh.src}->{sh.dst} is already shaped by another "
                                 "--shape; give each direction once")
            out.append(sh)
    return out


NETEM_SEED_SINCE = (6, 6)        # TCA_NETEM_PRNG_SEED: kernel commit 4072d97ddc44 (net-next, Aug 2023: v6.6)

def seeding(release: str, links: dict[str, dict | None]) -> tuple[bool, str]:
    """Whether the losses of a run were drawn from a known seed, and the words for it: from the
    seeds the kernel reported for each shaped direction (*links*: read_back() results)."""
    seeds = {k: v.get("seed") for k, v in links.items() if v}
    if seeds and all(v is not None for v in seeds.values()):
        return True, ("seeded: " + ", ".join(f"{k} seed={v}" for k, v in seeds.items())
                      + " (reported by the kernel; --shape SRC->DST:...,seed=N replays a direction's draws)")
    try:
        version = tuple(int(x) for x in release.split("-")[0].split("+")[0].split(".")[:2])
    except ValueError:
        version = (0, 0)
    if version < NETEM_SEED_SINCE:
        return False, (f"unseeded: kernel {release} predates netem's PRNG seed (TCA_NETEM_PRNG_SEED, "
                       "Linux 6.6); each run draws its own losses")
    return False, (f"unseeded: kernel {release} reported no netem seed; each run draws its own losses")


def observed_path(client: list, server: list, client_addr: str | None = None) -> dict:
    """What the two ends' captures show of the path between them (lab.packets Segments; both
    captures must share one clock, as the namespaces of one kernel do).

    ``one_way_ms``: for each direction, the delay of every segment seen leaving one end and
    arriving at the other. ``rtt``: at each end, each segment that takes sequence space (SYN,
    FIN, data) and the first ACK covering it that came back: ``rtt_ms`` as the sender saw it,
    ``turnaround_ms`` how long the other end took to answer (a delayed ACK is the peer's choice,
    not the path's) and ``path_ms`` = rtt - turnaround, the round trip of the path itself."""
    one_way: dict[str, list[float]] = {"client->server": [], "server->client": []}
    rtts: dict[str, list[dict]] = {"client": [], "server": []}
    if not client:
        return {"one_way_ms": one_way, "rtt": rtts}
    caddr = client_addr or client[0].src
    saddr = next((s.dst for s in client if s.src == caddr), None)
    for name, mine, theirs, me in (("client", client, server, caddr), ("server", server, client, saddr)):
        key = "client->server" if name == "client" else "server->client"
        for seg in mine:
            if seg.src != me:
                continue
            twin = next((x for x in theirs if x.same_wire(seg)), None)
            if twin is not None:
                one_way[key].append(round((twin.t - seg.t) * 1000, 2))
        for i, seg in enumerate(mine):
            if seg.src != me or not (seg.length or seg.has("SYN") or seg.has("FIN")):
                continue
            end = (seg.seq + seg.length + (1 if seg.has("SYN") or seg.has("FIN") else 0)) % 2**32
            ack = next((x for x in mine[i + 1:] if x.dst == me and x.has("ACK")
                        and (x.ack - end) % 2**32 < 2**31), None)
            arrived = next((x for x in theirs if x.same_wire(seg)), None)
            left = next((x for x in theirs if ack is not None and x.same_wire(ack)), None)
            if ack is None or arrived is None or left is None:
                continue                    # lost on the way
            answer = next((x for x in theirs if x.t >= arrived.t and x.src != me and x.has("ACK")
                           and (x.ack - end) % 2**32 < 2**31), None)
            if answer is not left:
                continue                    # its answer was lost: a later copy's got through
            rtt, turnaround = (ack.t - seg.t) * 1000, (left.t - arrived.t) * 1000
            rtts[name].append({"segment": seg.flags, "t": seg.t, "rtt_ms": round(rtt, 2),
                               "turnaround_ms": round(turnaround, 2),
                               "path_ms": round(rtt - turnaround, 2)})
    return {"one_way_ms": one_way, "rtt": rtts}
