"""The lab's network, made the same way on both backends: veth pairs between the hosts' network
namespaces, addresses and routes from the Topology, forwarding off in every host but the router.

Each link is a veth pair created inside one lab host's namespace with its peer placed straight
into the other's, so no interface of the lab ever exists in this machine's own namespace: a lab
host has no address of this machine on any link and no path to one, whatever routes it adds
itself (it has NET_ADMIN). A network with more than two members gets a bridge in a namespace of
its own (``twlab-<lab>-sw-<net>``), never in this machine's. The docker backend uses this too
(its containers have Docker's "none" network), the way containerlab wires its labs: a Docker
bridge network would put a bridge, with an address, in this machine's namespace.

IPv6 (dual-stack, where the kernel has it): before any link exists each host gets IPv6 on
(Docker switches it off in a container without an IPv6 network), router advertisements and
autoconfiguration off, and duplicate address detection off (``accept_dad`` 0 in ``all`` and
``default``, which every new interface copies): so no link-local or configured address is ever
tentative and none is usable late, nothing but the lab's addresses and routes appears, and no
router solicitation is sent. Then the addresses and routes of both families; IPv6 forwarding on in
the router only. ``settle`` then waits, bounded, until no address is tentative (the case of a
compose file that turns DAD back on) and refuses one whose DAD failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from ..errors import BackendError, UsageError
from ..netlink import NetlinkError
from ..netlink import netns as pnetns
from ..nsops import inside, iproute, libc, read_sysctl, write_sysctl
from .base import PREFIX, Host

if TYPE_CHECKING:
    from ..topology import Topology

__all__ = ["NETNS_DIR", "make_namespace", "make_namespaces", "ifnames", "veth", "switch_name", "wire", "set_forwarding",
           "kernel_has_ipv6", "own_sysctls", "quiet_ipv6", "settle", "IPV6_QUIET"]

NETNS_DIR = "/run/netns"

# every lab host's IPv6, in net.ipv6.conf.all and .default, before its links exist: on, no router
# advertisements, no autoconfiguration, no duplicate address detection (disable_ipv6 last, so an
# interface it enables, lo, is quiet already)
IPV6_QUIET = (("accept_ra", "0"), ("autoconf", "0"), ("accept_dad", "0"), ("disable_ipv6", "0"))
SETTLE_S = 5.0          # how long settle() waits for an address to leave DAD's tentative state
_IFA_F_DADFAILED, _IFA_F_TENTATIVE = 0x08, 0x40        # include/uapi/linux/if_addr.h


def kernel_has_ipv6() -> bool:
    """This kernel has IPv6 (not built without it, nor booted with ipv6.disable=1)."""
    return os.path.isdir("/proc/sys/net/ipv6")


def own_sysctls(sysctls: Mapping[str, str]) -> dict[str, str]:
    """A service's sysctls as this kernel can take them: its net.ipv6.* left out where the kernel
    has no IPv6 (an IPv4 run still works there)."""
    return {k: v for k, v in sysctls.items() if kernel_has_ipv6() or not k.startswith("net.ipv6.")}


def make_namespace(name: str, parent: str | None = None, **lo: str) -> str:
    """A named network namespace with its loopback up (and any other *lo* attribute, e.g. the
    owner's ifalias: Backend._make_ns); its path. With *parent* (a namespace's path) it is made
    from inside that one, which decides the size of its TCP hash table (lab.backends.tcphash)."""
    return make_namespaces([name], parent, **lo)[0]


def make_namespaces(names: list[str], parent: str | None = None, **lo: str) -> list[str]:
    """make_namespace for each of *names*; their paths. On an error the ones made stay, for the
    backend's down() to remove with the rest.

    Made in this process, as `ip netns add` makes one: the calling thread unshares a new network
    namespace and pyroute2's netns.attach bind-mounts it at /run/netns/NAME (its code is ported
    from iproute2: the run directory made a shared mount first), then the thread goes back where
    it was. Not `ip netns add`: an exec each, about 0.12 s of a TCG guest's CPU, four a run; not
    pyroute2's netns.create, which forks the lab. A Ctrl-C waits until the namespace is made."""
    from ..interrupts import shielded

    for name in names:
        try:
            with shielded(), _unshared(parent):
                pnetns.attach(name, "thread-self", libc=libc())    # /proc/thread-self/ns/net: this thread's new one
        except OSError as exc:
            raise BackendError(f"cannot create network namespace {name}: {exc.strerror or exc}") from None
    paths = [f"{NETNS_DIR}/{name}" for name in names]
    for path in paths:
        with iproute(path) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up", **lo)
    return paths


@contextlib.contextmanager
def _unshared(parent: str | None) -> Iterator[None]:
    """The calling thread in a new network namespace (made from inside *parent*, or from where
    the thread is), and back in its own afterwards."""
    with inside(parent or "/proc/thread-self/ns/net"):
        if libc().unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        yield


_CLONE_NEWNET = 0x40000000


def ifnames(topology: Topology) -> dict[tuple[str, str], str]:
    """(host, network) -> interface name, as Docker would name them: eth0, eth1, ... in the
    order of the host's networks."""
    return {(h.name, net): f"eth{i}" for h in topology.hosts.values() for i, net in enumerate(h.addresses)}


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair made inside *ns_a*, its peer placed straight into *ns_b*."""
    fd_b = os.open(ns_b, os.O_RDONLY)
    try:
        with iproute(ns_a) as ipr:
            ipr.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": fd_b})
    except NetlinkError as exc:
        raise BackendError(f"cannot create veth {if_a}<->{if_b}: {exc}") from exc
    finally:
        os.close(fd_b)


def _switch(sw: str, network: str, members: list[str], ifname: Mapping[tuple[str, str], str],
            hosts: Mapping[str, Host]) -> None:
    """A bridge in the namespace at *sw*, one veth from each member to it."""
    with iproute(sw) as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        br = ipr.link_lookup(ifname="br0")[0]
        ipr.link("set", index=br, state="up")
    for i, name in enumerate(members):
        veth(hosts[name].nspath, ifname[name, network], sw, f"p{i}")
        with iproute(sw) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=f"p{i}")[0], master=br, state="up")


def set_forwarding(host: Host) -> None:
    """Only the router forwards: IPv4 forwarding off where the compose service does not set it
    (a new namespace inherits this machine's), IPv6 forwarding on in the router (a service with
    net.ipv4.ip_forward 1) and off elsewhere, unless the service sets it itself."""
    wanted = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "1" if host.spec.forwards else "0"}
    for key, value in wanted.items():
        if key in host.spec.sysctls:
            continue
        try:
            read_sysctl(host.nspath, key)
        except UsageError:          # no such key here (a kernel without IPv6)
            continue
        write_sysctl(host.nspath, key, value)


def quiet_ipv6(host: Host) -> None:
    """IPv6 on, without router advertisements, autoconfiguration or DAD, for the interfaces to come
    (lab.backends.links.IPV6_QUIET); a key the compose service sets itself is left to it."""
    for scope in ("all", "default"):
        for name, value in IPV6_QUIET:
            key = f"net.ipv6.conf.{scope}.{name}"
            if key not in host.spec.sysctls:
                write_sysctl(host.nspath, key, value)


def settle(hosts: Mapping[str, Host], timeout_s: float = SETTLE_S, link_local: bool = False) -> float:
    """Wait until no IPv6 address of any host is tentative (in DAD) and, with *link_local*, each
    interface with an IPv6 address of the lab has its link-local one (NDP's source: an IPv6 run
    waits for it, lab.core; the kernel adds it once the link has carrier, which a veth reports
    through linkwatch, up to a second later: an IPv6 run that started sooner saw its first SYN
    sent again); the seconds waited. A failed DAD (a duplicate address) is a BackendError, and
    so is an address still tentative, or a link-local still missing, after *timeout_s*."""
    started = time.monotonic()
    while True:
        waiting = [w for host in hosts.values() for w in _unsettled(host, link_local)]
        waited = time.monotonic() - started
        if not waiting:
            return waited
        if waited > timeout_s:
            raise BackendError(f"IPv6 not usable after {timeout_s:g} s: {', '.join(waiting)}")
        time.sleep(0.02)


def _unsettled(host: Host, link_local: bool) -> list[str]:
    """What of *host*'s IPv6 is not usable yet: tentative addresses, interfaces without a
    link-local address (BackendError for a failed DAD)."""
    out, with_link_local = [], set()
    with iproute(host.nspath) as ipr:
        for msg in ipr.get_addr(family=socket.AF_INET6):
            flags = msg.get("IFA_FLAGS", msg["flags"])
            addr = msg.get("IFA_ADDRESS") or ""
            if flags & _IFA_F_DADFAILED:
                raise BackendError(f"{host.name}: duplicate address detection failed for {addr}: "
                                   "another host on its link has it; fix the compose file")
            if flags & _IFA_F_TENTATIVE:
                out.append(f"{host.name} {addr} tentative (in duplicate address detection)")
            elif addr.lower().startswith("fe80:"):
                with_link_local.add(msg["index"])
    if not link_local:
        return out
    with inside(host.nspath):
        wanted = {socket.if_nametoindex(host.ifname(net)): host.ifname(net) for net in host.addresses6}
    out += [f"{host.name} {name} has no link-local address yet" for i, name in wanted.items()
            if i not in with_link_local]
    return out


def switch_name(lab_id: str, network: str) -> str:
    """The namespace of a network's bridge: ``twlab-<lab>-sw-<net>``."""
    return f"{PREFIX}{lab_id}-sw-{network}"


def wire(topology: Topology, hosts: Mapping[str, Host], new_switch: Callable[[str], str]) -> float:
    """Every link, address and route of *topology*, of both families, between the running *hosts*,
    with IPv6 quiet (quiet_ipv6) and forwarding only in the router (set_forwarding). A network of
    three or more members gets its bridge in the namespace ``new_switch(network)`` makes (the
    backend's, so it is marked as its other namespaces are). IPv6 is left out where the kernel
    has none. Returns how long the IPv6 addresses took to be usable (settle(): 0 without DAD)."""
    ipv6 = kernel_has_ipv6()
    if ipv6:
        for host in hosts.values():
            quiet_ipv6(host)
    ifname = ifnames(topology)
    for net in topology.networks.values():
        members = [m.name for m in topology.members(net.name)]
        if len(members) == 2:
            a, b = members
            veth(hosts[a].nspath, ifname[a, net.name], hosts[b].nspath, ifname[b, net.name])
        elif len(members) > 2:
            _switch(new_switch(net.name), net.name, members, ifname, hosts)
    for spec in topology.hosts.values():
        _address(topology, hosts[spec.name], ifname, ipv6)
        set_forwarding(hosts[spec.name])
    return settle(hosts) if ipv6 else 0.0


def _address(topology: Topology, host: Host, ifname: Mapping[tuple[str, str], str], ipv6: bool) -> None:
    """One host's addresses (each family's on each network), its links up, its routes."""
    spec = host.spec
    with iproute(host.nspath) as ipr:
        for netname, addr in spec.addresses.items():
            idx = ipr.link_lookup(ifname=ifname[spec.name, netname])[0]
            net = topology.networks[netname]
            ipr.addr("add", index=idx, address=str(addr), prefixlen=net.subnet.prefixlen)
            if ipv6 and netname in spec.addresses6:
                ipr.addr("add", index=idx, address=str(spec.addresses6[netname]), prefixlen=net.subnet6.prefixlen,
                         family=socket.AF_INET6)
            ipr.link("set", index=idx, state="up")
        for route in spec.routes:
            if route.family == 6 and not ipv6:
                continue
            ipr.route("replace", dst=str(route.dest), gateway=str(route.via),
                      family=socket.AF_INET6 if route.family == 6 else socket.AF_INET)
