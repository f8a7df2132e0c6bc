"""netns backend: the topology as plain network namespaces joined by veth pairs (pyroute2).

No Docker needed. Every namespace is named ``twlab-<lab>-<host>`` so ``ip netns exec`` works by
hand and cleanup finds exactly what a lab made. The links, addresses and routes are lab.backends.links'
(shared with the docker backend): veths made from inside the namespaces, so nothing is ever
created in the host's own namespace.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import time
from typing import TYPE_CHECKING

from ..netlink import netns as pnetns
from ..nsops import libc
from .base import PREFIX, Backend, Host, missing_privileges
from .links import NETNS_DIR, ifnames, own_sysctls, switch_name, wire
from .tcphash import prepare_parent

if TYPE_CHECKING:
    from ..topology import Topology

__all__ = ["NetnsBackend", "lab_namespaces", "remove_namespace", "NETNS_DIR"]

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


def _in_namespace(pid: int, target: int | None) -> bool:
    """Process *pid* still exists and (its main thread) is in the namespace of inode *target*."""
    try:
        return target is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == target
    except OSError:
        return False


def remove_namespace(name: str) -> None:
    """Kill what runs in the namespace, then remove it. Missing is fine. A process is killed
    only while it is still in the namespace: one that was passing through (a thread entered it
    for a moment, as lab.cleanup's marks used to) and left after SIGTERM is not sent SIGKILL."""
    path = f"{NETNS_DIR}/{name}"
    try:
        target = os.stat(path).st_ino
    except FileNotFoundError:
        target = None
    pids = [p for p in _pids_in(path) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 1.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _in_namespace(p, target)]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    try:
        pnetns.remove(name, libc=libc())
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

    def _up(self, topology: Topology) -> None:
        from ..nsops import write_sysctl

        parent = self._make_ns(self._ns("parent"))         # each host's own TCP hash table
        own_tables = prepare_parent(parent)
        specs = list(topology.hosts.values())
        names = ifnames(topology)
        paths = self._make_namespaces([self._ns(spec.name) for spec in specs], parent=parent if own_tables else None)
        for spec, path in zip(specs, paths):
            self.hosts[spec.name] = Host(
                name=spec.name, spec=spec, nspath=path,
                exec_prefix=["nsenter", f"--net={path}", "--"],
                python=[sys.executable, "-u", "-I", "-S"],   # the agent needs the stdlib only: 16 ms to start, not 24
                addresses=dict(spec.addresses), addresses6=dict(spec.addresses6),
                ifnames={net: name for (h, net), name in names.items() if h == spec.name},   # as wire() makes them
            )
        remove_namespace(self._ns("parent"))               # its children do not need it
        self.ipv6_settle_s = wire(topology, self.hosts, lambda net: self._make_ns(switch_name(self.lab_id, net)))
        for spec in topology.hosts.values():
            for key, value in own_sysctls(spec.sysctls).items():
                write_sysctl(self.hosts[spec.name].nspath, key, value)

    def down(self) -> None:
        for name in lab_namespaces(self.lab_id):
            remove_namespace(name)
