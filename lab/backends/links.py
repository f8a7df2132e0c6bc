"""The lab's network, made the same way on both backends: veth pairs between the hosts' network
namespaces, addresses and routes from the Topology, forwarding off in every host but the router.

Each link is a veth pair created inside one lab host's namespace with its peer placed straight
into the other's, so no interface of the lab ever exists in this machine's own namespace: a lab
host has no address of this machine on any link and no path to one, whatever routes it adds
itself (it has NET_ADMIN). A network with more than two members gets a bridge in a namespace of
its own (``twlab-<lab>-sw-<net>``), never in this machine's. The docker backend uses this too
(its containers have Docker's "none" network), the way containerlab wires its labs: a Docker
bridge network would put a bridge, with an address, in this machine's namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping

from pyroute2.netlink.exceptions import NetlinkError

from ..errors import BackendError, UsageError
from ..nsops import iproute, read_sysctl, write_sysctl
from ..topology import Topology
from .base import PREFIX, Host

__all__ = ["NETNS_DIR", "make_namespace", "ifnames", "veth", "switch_name", "wire", "forwarding_off"]

NETNS_DIR = "/run/netns"

# a host that does not forward gets these (a new namespace inherits IPv4 forwarding from this
# machine's; IPv6 forwarding is set where the kernel has IPv6)
_NO_FORWARDING = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def make_namespace(name: str, parent: str | None = None, **lo: str) -> str:
    """A named network namespace with its loopback up (and any other *lo* attribute, e.g. the
    owner's ifalias: Backend._make_ns); its path. `ip netns add`, not pyroute2's netns.create:
    that one forks the Python process; in a session of its own, so a Ctrl-C at the terminal
    cannot kill it halfway. With *parent* (a namespace's path) it is made from inside that one,
    which decides the size of its TCP hash table (lab.backends.tcphash)."""
    argv = ["ip", "netns", "add", name]
    if parent is not None:
        argv = ["nsenter", f"--net={parent}", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
    if done.returncode != 0:
        raise BackendError(f"cannot create network namespace {name}: {done.stderr.strip()}")
    path = f"{NETNS_DIR}/{name}"
    with iproute(path) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up", **lo)
    return path


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


def forwarding_off(host: Host) -> None:
    """Forwarding off in a host that is not a router (its compose service sets no
    net.ipv4.ip_forward): only the router forwards."""
    for key in _NO_FORWARDING:
        if key in host.spec.sysctls:
            continue
        try:
            read_sysctl(host.nspath, key)
        except UsageError:          # no such key here (a kernel without IPv6)
            continue
        write_sysctl(host.nspath, key, "0")


def switch_name(lab_id: str, network: str) -> str:
    """The namespace of a network's bridge: ``twlab-<lab>-sw-<net>``."""
    return f"{PREFIX}{lab_id}-sw-{network}"


def wire(topology: Topology, hosts: Mapping[str, Host], new_switch: Callable[[str], str]) -> None:
    """Every link, address and route of *topology* between the running *hosts*, and forwarding
    off where the topology does not ask for it. A network of three or more members gets its
    bridge in the namespace ``new_switch(network)`` makes (the backend's, so it is marked as
    its other namespaces are)."""
    ifname = ifnames(topology)
    for net in topology.networks.values():
        members = [m.name for m in topology.members(net.name)]
        if len(members) == 2:
            a, b = members
            veth(hosts[a].nspath, ifname[a, net.name], hosts[b].nspath, ifname[b, net.name])
        elif len(members) > 2:
            _switch(new_switch(net.name), net.name, members, ifname, hosts)
    for spec in topology.hosts.values():
        host = hosts[spec.name]
        with iproute(host.nspath) as ipr:
            for netname, addr in spec.addresses.items():
                idx = ipr.link_lookup(ifname=ifname[spec.name, netname])[0]
                ipr.addr("add", index=idx, address=str(addr),
                         prefixlen=topology.networks[netname].subnet.prefixlen)
                ipr.link("set", index=idx, state="up")
            for route in spec.routes:
                ipr.route("replace", dst=str(route.dest), gateway=str(route.via))
        forwarding_off(host)
