"""lab.bench's measurements 1 and 2: bring-up and tear-down of the compose.yaml topology by each
backend class, and the raw floor for the same topology made with the plainest tools."""

from __future__ import annotations

import os
import secrets

from .. import cleanup
from ..backends.base import PREFIX
from ..backends.links import IPV6_QUIET, kernel_has_ipv6, own_sysctls
from ..topology import DEFAULT_COMPOSE, Topology, load
from .common import Sweeper, deferred_interrupts, run_cmd, timed

# -- 1. lab bring-up / tear-down ---------------------------------------------------------------

def _backend(name: str, lab_id: str):
    from ..backends.docker import DockerBackend
    from ..backends.netns import NetnsBackend

    return {"netns": NetnsBackend, "docker": DockerBackend}[name](lab_id)


def _topology_for(backend) -> Topology:
    topo = load()
    if hasattr(backend, "plan"):
        topo = load(env=backend.plan(topo))
    return topo


def bench_lab(name: str, sweeper: Sweeper) -> dict[str, float]:
    """``backend.up(topology)`` and ``backend.down()`` of one fresh lab, in seconds."""
    lab_id = secrets.token_hex(3)
    backend = _backend(name, lab_id)
    cleanup.register(lab_id, name)
    out: dict[str, float] = {}
    try:
        topo = _topology_for(backend)
        out["up_s"] = timed(lambda: backend.up(topo))
    finally:
        try:
            with deferred_interrupts():
                out["down_s"] = timed(backend.down)
        finally:
            sweeper.sweep(lab_id)
    return out


# -- 2. the raw floor --------------------------------------------------------------------------

def netns_commands(topo: Topology, lab_id: str) -> tuple[list[list[str]], list[str]]:
    """The plain ``ip`` commands that build *topo* as namespaces ``twlab-<lab_id>-<host>``
    (same interface names, links, addresses, routes and sysctls as the netns backend; every
    link is made inside a lab namespace, nothing in the host's own), and the namespaces."""
    ns = {h: f"{PREFIX}{lab_id}-{h}" for h in topo.hosts}
    ifname = {(h.name, net): f"eth{i}" for h in topo.hosts.values() for i, net in enumerate(h.addresses)}
    names = list(ns.values())
    cmds: list[list[str]] = [["ip", "netns", "add", n] for n in names]
    cmds += [["ip", "-n", n, "link", "set", "lo", "up"] for n in names]
    if kernel_has_ipv6():                     # IPv6 quiet before the links, as lab.backends.links does
        cmds += [["ip", "netns", "exec", n, "sysctl", "-qw",
                  *(f"net.ipv6.conf.{scope}.{k}={v}" for scope in ("all", "default") for k, v in IPV6_QUIET)]
                 for n in names]
    for net in topo.networks.values():
        members = topo.members(net.name)
        if len(members) == 2:
            a, b = members
            cmds.append(["ip", "-n", ns[a.name], "link", "add", ifname[a.name, net.name], "type", "veth",
                         "peer", "name", ifname[b.name, net.name], "netns", ns[b.name]])
        elif len(members) > 2:
            sw = f"{PREFIX}{lab_id}-sw-{net.name}"
            names.append(sw)
            cmds += [["ip", "netns", "add", sw],
                     ["ip", "-n", sw, "link", "add", "br0", "type", "bridge"],
                     ["ip", "-n", sw, "link", "set", "br0", "up"]]
            for i, m in enumerate(members):
                cmds += [["ip", "-n", ns[m.name], "link", "add", ifname[m.name, net.name], "type", "veth",
                          "peer", "name", f"p{i}", "netns", sw],
                         ["ip", "-n", sw, "link", "set", f"p{i}", "master", "br0", "up"]]
    for h in topo.hosts.values():
        for net, addr in h.addresses.items():
            dev = ifname[h.name, net]
            cmds.append(["ip", "-n", ns[h.name], "addr", "add", f"{addr}/{topo.networks[net].subnet.prefixlen}",
                         "dev", dev])
            if net in h.addresses6 and kernel_has_ipv6():
                cmds.append(["ip", "-n", ns[h.name], "addr", "add",
                             f"{h.addresses6[net]}/{topo.networks[net].subnet6.prefixlen}", "dev", dev])
            cmds.append(["ip", "-n", ns[h.name], "link", "set", dev, "up"])
        cmds += [["ip", "-n", ns[h.name], "route", "replace", str(r.dest), "via", str(r.via)]
                 for r in h.routes]
        cmds += [["ip", "netns", "exec", ns[h.name], "sysctl", "-qw", f"{k}={v}"]
                 for k, v in own_sysctls(h.sysctls).items()]
    return cmds, names


def bench_raw_netns(sweeper: Sweeper) -> dict[str, float]:
    """The topology by ``ip`` commands, then ``ip netns del`` of each namespace, in seconds."""
    lab_id = secrets.token_hex(3)
    cmds, names = netns_commands(load(), lab_id)
    cleanup.register(lab_id, "netns")
    out: dict[str, float] = {"commands": float(len(cmds))}
    try:
        def up() -> None:
            for argv in cmds:
                run_cmd(argv)
        out["up_s"] = timed(up)
    finally:
        try:
            with deferred_interrupts():
                def down() -> None:
                    for n in names:
                        if os.path.exists(f"/run/netns/{n}"):
                            run_cmd(["ip", "netns", "del", n], detached=True)
                out["down_s"] = timed(down)
        finally:
            sweeper.sweep(lab_id)
    return out


def bench_raw_docker(sweeper: Sweeper) -> dict[str, float]:
    """``docker compose up -d`` and ``down`` of compose.yaml, in seconds (the up until compose
    returns, i.e. the containers run; not until their commands have set the routes)."""
    from ..backends.docker import DockerBackend

    lab_id = secrets.token_hex(3)
    env = {**os.environ, **DockerBackend(lab_id).plan(load())}
    base = ["docker", "compose", "-p", f"{PREFIX}{lab_id}", "-f", str(DEFAULT_COMPOSE)]
    cleanup.register(lab_id, "docker")
    out: dict[str, float] = {}
    try:
        out["up_s"] = timed(lambda: run_cmd([*base, "up", "-d"], env=env))
    finally:
        try:
            with deferred_interrupts():
                out["down_s"] = timed(lambda: run_cmd([*base, "down"], env=env, detached=True))
        finally:
            sweeper.sweep(lab_id)
    return out
