"""The address family a run's traffic uses: 4 or 6 (`--family 4|6|both`).

The lab is dual-stack always (compose.yaml: an IPv4 /24 and an IPv6 /64 on every network); a run
picks the family its peers connect with, its faults match and its observation asks for. `both`
runs each scenario once per family, and the IPv6 run's results are named ``SCENARIO/v6`` (the
IPv4 run keeps the scenario's own name, so the names CI has recorded so far stay the same).

A run over IPv6 where there is none stops before anything is captured, as a skip (exit 2 for
`run`; listed as skipped with the reason by `run all`, `check` and `matrix`): a kernel without
IPv6, a compose file without IPv6 prefixes, and a lab host whose IPv6 a sysctl disabled
(``--sysctl client:net.ipv6.conf.all.disable_ipv6=1``: the kernel then removes its addresses).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

from .errors import NoIPv6, UsageError, quoted

__all__ = ["FAMILIES", "parse_family", "one_family", "check_family", "check_mapped", "label", "split_label",
           "require_ipv6", "ipv6_missing", "require_ipv6_in"]

FAMILIES = {"4": (4,), "6": (6,), "both": (4, 6)}


def parse_family(text: object) -> tuple[int, ...]:
    """--family's value: "4", "6" or "both" -> the families to run, in order. Anything else is
    a UsageError (one line)."""
    families = FAMILIES.get(str(text).strip())
    if families is None:
        raise UsageError(f"--family {quoted(str(text))}: choose 4 (IPv4, the default), 6 (IPv6) or both "
                         "(each scenario once per family)")
    return families


def one_family(text: object, what: str, both_hint: str) -> int:
    """--family where one family is run at a time (`vm`, `run --repeat`): 4 or 6; `both` is
    refused with *both_hint* (where both run)."""
    families = parse_family(text)
    if len(families) > 1:
        raise UsageError(f"{what} runs one address family at a time; give --family 4 or --family 6 ({both_hint})")
    return families[0]


def check_family(family: object) -> int:
    """One family as a run takes it (4 or 6); anything else is a UsageError."""
    if family not in (4, 6):
        raise UsageError(f"address family {quoted(str(family))}: a run uses 4 (IPv4) or 6 (IPv6)")
    return int(family)  # type: ignore[arg-type]


def check_mapped(mapped: object, family: int) -> bool:
    """`run --mapped` (a v4-mapped client) is an IPv4 run; with *family* 6 a UsageError."""
    if mapped and family != 4:
        raise UsageError("--mapped makes the client an AF_INET6 socket reaching the server's IPv4 "
                         "address as ::ffff:a.b.c.d: an IPv4 run; give --family 4 (or leave --mapped out)")
    return bool(mapped)


def label(scenario: str, family: int) -> str:
    """A result's name: the scenario's own for IPv4, ``SCENARIO/v6`` for IPv6."""
    return scenario if family == 4 else f"{scenario}/v{family}"


def split_label(name: str) -> tuple[str, int]:
    """label()'s inverse: "lost-ack/v6" -> ("lost-ack", 6), "lost-ack" -> ("lost-ack", 4)."""
    base, sep, tail = name.rpartition("/v")
    if sep and tail in ("4", "6"):
        return base, int(tail)
    return name, 4


def require_ipv6(scenario: str, kernel_has_ipv6: bool, without: str) -> None:
    """Before anything is made: NoIPv6 when this kernel has no IPv6 or the topology gives none
    (*without*: Topology.without_ipv6())."""
    if not kernel_has_ipv6:
        raise NoIPv6(scenario, "this kernel has no IPv6 (no /proc/sys/net/ipv6: built without it, or "
                               "booted with ipv6.disable=1)")
    if without:
        raise NoIPv6(scenario, without)


def ipv6_missing(name: str, want: Mapping[str, ipaddress.IPv6Address], have: list[dict],
                 disabled: Mapping[str, str]) -> str:
    """Why lab host *name* cannot carry IPv6 now ("" when it can): an address of *want* (network
    -> address) missing from *have* (its addresses: pyroute2's IFA messages), naming the
    disable_ipv6 sysctls set (*disabled*: key -> value) that removed it."""
    present = {ipaddress.ip_address(m.get("IFA_ADDRESS")) for m in have
               if m.get("family") == socket.AF_INET6 and m.get("IFA_ADDRESS")}
    gone = [f"{a} ({net})" for net, a in want.items() if a not in present]
    off = [f"{k} = {v}" for k, v in disabled.items() if str(v).strip() == "1"]
    if not gone and not off:
        return ""
    if off:
        return f"{name} has IPv6 disabled ({', '.join(off)})"
    return f"{name} lost its IPv6 address{'es' if len(gone) > 1 else ''} {', '.join(gone)}"


def require_ipv6_in(hosts: Mapping[str, object], scenario: str) -> None:
    """Once the run's sysctls are set: NoIPv6 naming the first lab host that cannot carry IPv6
    (its addresses gone, or IPv6 disabled in it or on one of its lab interfaces)."""
    from .nsops import iproute
    from .sysctls import in_force

    for name, host in hosts.items():
        with iproute(host.nspath) as ipr:
            have = [{"family": m["family"], "IFA_ADDRESS": m.get("IFA_ADDRESS")}
                    for m in ipr.get_addr(family=socket.AF_INET6)]
        keys = ["net.ipv6.conf.all.disable_ipv6"]
        for net in host.addresses6:
            try:
                keys.append(f"net.ipv6.conf.{host.ifname(net)}.disable_ipv6")
            except LookupError:
                pass
        why = ipv6_missing(name, host.addresses6, have, in_force(host.nspath, keys))
        if why:
            raise NoIPv6(scenario, why)
