"""netns backend: the topology as plain network namespaces joined by veth pairs (pyroute2).

No Docker needed. Every namespace is named ``twlab-<lab>-<host>`` so ``ip netns exec`` works by
hand and cleanup finds exactly what a lab made. Links are made from inside the namespaces (a veth
is created in one host's namespace with its peer placed straight into the other's), so nothing is
ever created in the host's own namespace. A network with more than two members gets a bridge in a
namespace of its own (``twlab-<lab>-sw-<net>``).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time

from pyroute2 import netns as pnetns
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import BackendError
from ..interrupts import shielded
from ..netns import iproute
from ..topology import Topology
from .base import PREFIX, Backend, Host, missing_privileges

__all__ = ["NetnsBackend", "lab_namespaces", "remove_namespace", "NETNS_DIR"]

NETNS_DIR = "/run/netns"
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{6,}})-")


def lab_namespaces(lab_id: str | None = None) -> list[str]:
    """Namespaces made by lab *lab_id* (or by any lab), by their name."""
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _NAME.match(name)
        if m and (lab_id is None or m.group(1) == lab_id):
            out.append(name)
    return out


def _pids_in(nspath: str) -> list[int]:
    try:
        target = os.stat(nspath).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def remove_namespace(name: str) -> None:
    """Kill what runs in the namespace, then remove it. Missing is fine."""
    path = f"{NETNS_DIR}/{name}"
    pids = [p for p in _pids_in(path) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 1.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    try:
        pnetns.remove(name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


class NetnsBackend(Backend):
    name = "netns"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = missing_privileges()
        if missing:
            return False, f"not root (no {' or '.join(missing)})"
        return True, "ok"

    def _ns(self, suffix: str) -> str:
        return f"{PREFIX}{self.lab_id}-{suffix}"

    def up(self, topology: Topology) -> dict[str, Host]:
        self.require_root()
        try:
            self._up(topology)
        except BaseException:
            with shielded():
                self.down()
            raise
        return self.hosts

    def _make_ns(self, name: str) -> str:
        """A namespace, marked with its owner at once (lab.owner: the alias of its loopback); no
        signal lands in between. `ip netns add`, not pyroute2's netns.create: that one forks the
        Python process; in a session of its own, so a Ctrl-C at the terminal cannot kill it halfway."""
        from ..owner import alias

        with shielded():
            done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                                  start_new_session=True)
            if done.returncode != 0:
                raise BackendError(f"cannot create network namespace {name}: {done.stderr.strip()}")
            path = f"{NETNS_DIR}/{name}"
            with iproute(path) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up",
                         ifalias=alias(self.owner, self.persistent))
        return path

    def _up(self, topology: Topology) -> None:
        from ..netns import write_sysctl

        for spec in topology.hosts.values():
            path = self._make_ns(self._ns(spec.name))
            self.hosts[spec.name] = Host(
                name=spec.name, spec=spec, nspath=path,
                exec_prefix=["nsenter", f"--net={path}", "--"],
                python=[sys.executable, "-u"],
                addresses=dict(spec.addresses),
            )
        # interface names as Docker gives them: eth0, eth1, ... in the order of the host's networks
        ifname = {(h.name, net): f"eth{i}" for h in topology.hosts.values()
                  for i, net in enumerate(h.addresses)}
        for net in topology.networks.values():
            members = topology.members(net.name)
            if len(members) == 2:
                a, b = members
                self._veth(self.hosts[a.name].nspath, ifname[a.name, net.name],
                           self.hosts[b.name].nspath, ifname[b.name, net.name])
            elif len(members) > 2:
                sw = self._make_ns(self._ns(f"sw-{net.name}"))
                with iproute(sw) as ipr:
                    ipr.link("add", ifname="br0", kind="bridge")
                    br = ipr.link_lookup(ifname="br0")[0]
                    ipr.link("set", index=br, state="up")
                for i, m in enumerate(members):
                    self._veth(self.hosts[m.name].nspath, ifname[m.name, net.name], sw, f"p{i}")
                    with iproute(sw) as ipr:
                        ipr.link("set", index=ipr.link_lookup(ifname=f"p{i}")[0], master=br, state="up")
        for spec in topology.hosts.values():
            host = self.hosts[spec.name]
            with iproute(host.nspath) as ipr:
                for netname, addr in spec.addresses.items():
                    idx = ipr.link_lookup(ifname=ifname[spec.name, netname])[0]
                    ipr.addr("add", index=idx, address=str(addr),
                             prefixlen=topology.networks[netname].subnet.prefixlen)
                    ipr.link("set", index=idx, state="up")
                for route in spec.routes:
                    ipr.route("replace", dst=str(route.dest), gateway=str(route.via))
            for key, value in spec.sysctls.items():
                write_sysctl(host.nspath, key, value)

    @staticmethod
    def _veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """A veth pair made inside *ns_a*, its peer placed straight into *ns_b*."""
        fd_b = os.open(ns_b, os.O_RDONLY)
        try:
            with iproute(ns_a) as ipr:
                ipr.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": fd_b})
        except NetlinkError as exc:
            raise BackendError(f"cannot create veth {if_a}<->{if_b}: {exc}") from exc
        finally:
            os.close(fd_b)

    def down(self) -> None:
        for name in lab_namespaces(self.lab_id):
            remove_namespace(name)
