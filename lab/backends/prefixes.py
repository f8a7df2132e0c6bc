"""The lab networks' prefixes for one lab instance: an IPv4 /24 and an IPv6 /64 each, overlapping
nothing this machine already uses (a Docker network, a route).

IPv4: free /24s of 10.77.0.0/16, from a random start, so parallel labs rarely pick the same.
IPv6: unique local addresses (RFC 4193 §3.2): fd00::/8 with a random 40-bit global ID, a /48 for
the instance, and in it one /64 per network (subnet IDs 1, 2, ...): two labs share a prefix with
odds of 1 in 2^40. The compose variables carry the /24's first three octets (``10.77.5``) and the
/64's first four groups (``fd3c:9a1e:44b0:1``), so compose.yaml writes ``${TWLAB_LEFT}.10`` and
``${TWLAB_LEFT6}::10``.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from ..errors import EnvError

__all__ = ["POOL", "ULA", "pick_v4", "pick_v6", "variables", "prefix_text"]

POOL = ipaddress.IPv4Network("10.77.0.0/16")   # where lab /24s are taken from
ULA = ipaddress.IPv6Network("fd00::/8")        # RFC 4193's locally assigned half of fc00::/7

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def pick_v4(count: int, taken: Iterable[Net], rng: random.Random | None = None) -> list[ipaddress.IPv4Network]:
    """*count* free /24s of POOL, consecutive from a random start among the free ones."""
    rng = rng or random.Random()
    taken = [t for t in taken if t.version == 4]
    free = [s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)]
    if len(free) < count:
        raise EnvError(f"no free /24 left in {POOL} for the lab networks; run `invoke clean`")
    start = rng.randrange(len(free))
    return [free[(start + i) % len(free)] for i in range(count)]


def pick_v6(count: int, taken: Iterable[Net], rng: random.Random | None = None,
            tries: int = 64) -> list[ipaddress.IPv6Network]:
    """*count* /64s (subnet IDs 1..count) of a random ULA /48 that overlaps nothing *taken*."""
    rng = rng or random.Random()
    taken = [t for t in taken if t.version == 6]
    for _ in range(tries):
        global_id = rng.getrandbits(40)
        site = ipaddress.IPv6Network(((int(ULA.network_address) | global_id << 80), 48))
        if not any(site.overlaps(t) for t in taken):
            return [ipaddress.IPv6Network((int(site.network_address) | i << 64, 64)) for i in range(1, count + 1)]
    raise EnvError(f"no free unique local /48 found in {tries} random draws; run `invoke clean`")


def prefix_text(subnet: Net) -> str:
    """What a compose variable holds of *subnet*: a /24's first three octets, a /64's first four
    groups (no "::", so ``${VAR}::10`` is an address)."""
    if subnet.version == 4:
        return str(subnet.network_address).rsplit(".", 1)[0]
    groups = ipaddress.IPv6Address(subnet.network_address).exploded.split(":")[:4]
    return ":".join(f"{int(g, 16):x}" for g in groups)


def variables(networks: Iterable[str], taken: Iterable[Net], rng: random.Random | None = None) -> dict[str, str]:
    """``TWLAB_<NET>`` and ``TWLAB_<NET>6`` for each network: its /24 and its /64."""
    networks, taken = list(networks), list(taken)
    rng = rng or random.Random()
    out = {}
    for net, v4, v6 in zip(networks, pick_v4(len(networks), taken, rng), pick_v6(len(networks), taken, rng)):
        out[f"TWLAB_{net.upper()}"] = prefix_text(v4)
        out[f"TWLAB_{net.upper()}6"] = prefix_text(v6)
    return out
