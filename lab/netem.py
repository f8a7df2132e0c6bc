"""netem in the kernel: the probe, each shaped direction put on the router's interface (pyroute2
tc), what the kernel reports back, and the neighbours pinned across a shaped link. What is asked
for, and why it is done this way, is in lab/shaping.py's docstring."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .errors import EnvError, UsageError
from .netlink import NetlinkError, neighbour_states
from .netlink import sched_netem as _sched_netem
from .netlink import tc_plugins as _tc_plugins
from .nsops import iproute

if TYPE_CHECKING:
    from .backends.base import Host
    from .shaping import LinkProfile, Shaping

__all__ = ["NetemProbe", "probe", "shape_path", "path_qdisc", "apply", "read_back", "pin_neighbours",
           "SeededNetem", "TCA_NETEM_PRNG_SEED"]

TCA_NETEM_PRNG_SEED = 14

class NetemProbe(NamedTuple):
    """Whether this kernel has netem, and the words saying so (the reason when it has none)."""

    available: bool
    reason: str


def probe(host: Host) -> NetemProbe:
    """Can this kernel do netem? Tried on the loopback of a lab host's namespace."""
    with iproute(host.nspath) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        try:
            ipr.tc("add", "netem", index=lo, handle="1:", delay=0)
        except NetlinkError as exc:
            return NetemProbe(False, f"netem is not available on this kernel ({exc.args[-1] if exc.args else exc})")
        ipr.tc("del", index=lo, handle="1:", root=True)   # a root qdisc is deleted by its parent
    return NetemProbe(True, "netem available")


def shape_path(router: Host, hosts: dict[str, Host], shapings: list[Shaping],
               progress: Callable[[str], None], pin: bool = True) -> None:
    """Each direction shaped on the router's interface toward its destination (and, when *pin*,
    that destination's neighbours pinned: netem would delay or drop ARP too)."""
    for sh in shapings:
        dst = hosts[sh.dst]
        net = next((n for n in dst.addresses if n in router.addresses), None)
        if net is None or sh.dst == router.name:
            raise UsageError(f"--shape {sh}: {sh.dst} is not behind the router")
        apply(router, router.ifname(net), sh.profile)
        if pin:
            pin_neighbours(router, dst, net)
        progress(f"shaping {sh} on {router.name}:{router.ifname(net)}")


def path_qdisc(router: Host, dst: Host) -> dict | None:
    """The netem qdisc on the router's interface toward *dst*, as the kernel reports it."""
    net = next((n for n in dst.addresses if n in router.addresses), None)
    return read_back(router, router.ifname(net)) if net else None


def apply(host: Host, ifname: str, profile: LinkProfile) -> None:
    with iproute(host.nspath) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.tc("replace", "netem", index=idx, handle="1:", **profile._netem_args())
        except NetlinkError as exc:
            raise EnvError(f"cannot shape {host.name}:{ifname} with netem: {exc}") from exc
    if profile.seed is not None:        # kernels before 6.6 ignore the attribute without a word
        got = (read_back(host, ifname) or {}).get("seed")
        if got != profile.seed:
            raise EnvError(f"netem on this kernel does not take a seed (it reported {got}; "
                           "TCA_NETEM_PRNG_SEED came with Linux 6.6): drop seed= from --shape")




class SeededNetem:
    """pyroute2 0.9's netem plugin (sched_netem) plus the TCA_NETEM_* attributes up to
    TCA_NETEM_PRNG_SEED (include/uapi/linux/pkt_sched.h), so ``seed=N`` is sent and a kernel's
    reported seed is read. Registered for kind "netem" when this module is imported."""

    parent = _sched_netem.parent

    class options(_sched_netem.options):
        nla_map = _sched_netem.options.nla_map + (
            ("TCA_NETEM_ECN", "uint32"), ("TCA_NETEM_RATE64", "uint64"), ("TCA_NETEM_PAD", "hex"),
            ("TCA_NETEM_LATENCY64", "int64"), ("TCA_NETEM_JITTER64", "int64"),
            ("TCA_NETEM_SLOT", "hex"), ("TCA_NETEM_SLOT_DIST", "hex"),
            ("TCA_NETEM_PRNG_SEED", "uint64"))

    @staticmethod
    def get_parameters(kwarg: dict) -> dict:
        seed = kwarg.pop("seed", None)
        opts = _sched_netem.get_parameters(kwarg)
        if seed is not None:
            opts["attrs"].append(["TCA_NETEM_PRNG_SEED", int(seed)])
        return opts


_tc_plugins["netem"] = SeededNetem


def read_back(host: Host, ifname: str) -> dict | None:
    """The netem qdisc on *host*:*ifname* as the kernel reports it (None if there is none):
    delay and jitter in ms, loss and duplicate in %, the queue limit, and the PRNG seed in force
    (None where the kernel reports none: before Linux 6.6). What a run records of its link comes
    from here, not from what was asked."""
    from .netlink import tick_in_usec

    with iproute(host.nspath) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for msg in ipr.get_qdiscs(index=idx):
            if msg.get_attr("TCA_KIND") != "netem":
                continue
            opts = msg.get_attr("TCA_OPTIONS")
            if opts is None:
                continue
            return {"interface": ifname,
                    "delay_ms": round(opts["delay"] / tick_in_usec / 1000, 3),
                    "jitter_ms": round(opts["jitter"] / tick_in_usec / 1000, 3),
                    "loss_pct": round(opts["loss"] / 0xFFFFFFFF * 100, 4),
                    "duplicate_pct": round(opts["duplicate"] / 0xFFFFFFFF * 100, 4),
                    "limit": opts["limit"],
                    "seed": opts.get_attr("TCA_NETEM_PRNG_SEED")}
    return None


class _LinkEnd(NamedTuple):
    """One end of a link as its kernel has it: the interface, its MAC, its addresses."""

    host: Host
    index: int
    mac: str
    v4: list[str]
    v6: list[str]           # unique local and link-local; none where IPv6 is off on the link


_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def _link_end(host: Host, network: str) -> _LinkEnd:
    ifname = host.ifname(network)
    with iproute(host.nspath) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        mac = ipr.get_links(index)[0].get("IFLA_ADDRESS")
        addrs = {af: [m.get("IFA_ADDRESS") for m in ipr.get_addr(family=af, index=index)]
                 for af in (socket.AF_INET, socket.AF_INET6)}
    return _LinkEnd(host, index, mac, addrs[socket.AF_INET], addrs[socket.AF_INET6])


def pin_neighbours(router: Host, dst: Host, network: str) -> None:
    """Permanent neighbour entries across the shaped link between *router* and *dst* on
    *network*, both ways: the router's netem (on its interface toward *dst*) would delay or drop
    the router's ARP requests for *dst* and its replies to *dst*'s requests - and IPv6's neighbour
    discovery alike (neighbour solicitations and advertisements are ICMPv6 packets on the same
    interface, RFC 4861 7.2), so each end's IPv6 addresses on the link (unique local and
    link-local) are pinned too where both ends have IPv6 on it (a host whose IPv6 a sysctl disabled
    has none). A permanent entry is never probed again (no NUD, RFC 4861 7.3). The run's family
    must be pinned; the other is pinned where it can be."""

    ends = [_link_end(router, network), _link_end(dst, network)]
    for me, peer in ((ends[0], ends[1]), (ends[1], ends[0])):
        pins = [(socket.AF_INET, a) for a in peer.v4]
        if me.v6:
            pins += [(socket.AF_INET6, a) for a in peer.v6]
        with iproute(me.host.nspath) as ipr:
            for family, addr in pins:
                try:
                    ipr.neigh("replace", dst=addr, lladdr=peer.mac, ifindex=me.index, family=family,
                              state=neighbour_states["permanent"])
                except NetlinkError as exc:
                    if family != _AF[me.host.family]:
                        continue
                    raise EnvError(f"cannot pin {peer.host.name}'s address {addr} in {me.host.name}'s "
                                   f"neighbour table: {exc}") from exc
