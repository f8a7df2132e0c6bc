"""The backend interface and the Host it hands out."""

from __future__ import annotations

import abc
import ipaddress
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..nsops import iproute, nsenter, spawn, tied

if TYPE_CHECKING:
    from ..topology import Address, HostSpec, Topology

__all__ = ["Host", "Backend", "LABEL", "PREFIX", "missing_privileges"]

LABEL = "org.twlab.lab"     # Docker label on every container and network a lab makes
PREFIX = "twlab-"           # prefix of every namespace and container name a lab makes

Progress = Callable[[str], None]


@dataclass
class Host:
    """A running lab host: a network namespace and a way to run a process in it. Dual-stack: an
    address of each family on each of its networks (``addresses``, ``addresses6``); ``family``
    (set by the Lab) is the one its run's traffic uses, so ``address`` is what peers connect to."""

    name: str
    spec: HostSpec
    nspath: str                     # /run/netns/<name> or /proc/<pid>/ns/net
    exec_prefix: list[str]          # argv prefix that runs a program inside the host
    python: list[str]               # argv that starts Python 3 inside the host
    addresses: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)
    addresses6: dict[str, ipaddress.IPv6Address] = field(default_factory=dict)
    family: int = 4                 # the run's address family, 4 or 6 (lab.core.Lab)
    stack: str = "linux"            # whose TCP its sockets use: linux, or gvisor (lab.gvisor)
    ifnames: dict[str, str] = field(default_factory=dict)   # network -> interface, once looked up
    mapped: bool = False            # its sockets are AF_INET6 reaching IPv4 peers as ::ffff:a.b.c.d
                                    # (a v4-mapped client: `run --mapped`; an IPv4 run only)

    @property
    def socket_family(self) -> int:
        """The family of its sockets, as sock_diag lists them: 6 for a v4-mapped host."""
        return 6 if self.mapped else self.family

    def argv(self, *argv: str) -> list[str]:
        return [*self.exec_prefix, *argv]

    @property
    def plain(self) -> bool:
        """Whether running a program here is only entering its network namespace (a netns host,
        not a container or a gVisor sandbox): then the lab starts it there itself."""
        return self.exec_prefix == nsenter(self.nspath, [])

    def popen(self, argv: list[str], tie: bool = False, **popen: object) -> subprocess.Popen:
        """*argv* started inside this host (``subprocess.Popen``'s keywords): where exec_prefix
        only enters the namespace (a plain one), forked straight into it (lab.nsops.spawn: no
        nsenter exec); otherwise through exec_prefix (docker exec, runsc exec). *tie*: killed when
        this process dies (lab.nsops.tied)."""
        if self.plain:
            return spawn(self.nspath, argv, tie=tie, **popen)
        return subprocess.Popen(tied(self.argv(*argv)) if tie else self.argv(*argv), **popen)

    def addrs(self, family: int | None = None) -> dict[str, Address]:
        """network -> this host's address there, in *family* (default: the run's)."""
        return self.addresses6 if (family or self.family) == 6 else self.addresses

    @property
    def address(self) -> Address:
        """The host's address in the run's family (its first network's)."""
        return self.addr(self.family)

    def addr(self, family: int) -> Address:
        """The host's address in *family* (4 or 6), its first network's."""
        addrs = self.addrs(family)
        if not addrs:
            raise LookupError(f"{self.name} has no IPv{family} address (its compose service gives none)")
        return next(iter(addrs.values()))

    def ifname(self, network: str) -> str:
        """Name of the interface that carries this host's address (of either family) on *network*
        (remembered: a gVisor host's addresses leave Linux's side of its namespace)."""
        if network in self.ifnames:
            return self.ifnames[network]
        wanted = {a[network] for a in (self.addresses, self.addresses6) if network in a}
        with iproute(self.nspath) as ipr:
            for msg in ipr.get_addr():
                addr = msg.get("IFA_ADDRESS")
                if addr and ipaddress.ip_address(addr.split("%")[0]) in wanted:
                    self.ifnames[network] = ipr.get_links(msg["index"])[0].get("IFLA_IFNAME")
                    return self.ifnames[network]
        raise LookupError(f"{self.name}: no interface has {' or '.join(map(str, wanted))}")


class Backend(abc.ABC):
    name: str = ""

    def __init__(self, lab_id: str, progress: Progress = lambda s: None) -> None:
        from ..owner import token

        self.lab_id = lab_id
        self.progress = progress
        self.hosts: dict[str, Host] = {}
        self.owner = token()            # this process: every object made carries it (lab.owner)
        self.persistent = False         # an `invoke up` lab: marked so, kept until `invoke down`
        self.ipv6_settle_s = 0.0        # how long its IPv6 addresses took to leave DAD (links.settle)

    def owner_labels(self) -> dict[str, str]:
        """Docker labels naming this lab's owner (lab.owner), for every object it makes."""
        from ..owner import labels

        return labels(self.owner, self.persistent)

    def _make_ns(self, name: str, parent: str | None = None) -> str:
        """A named namespace (a netns host, or a switch of either backend), marked with its owner
        at once (lab.owner: the alias of its loopback); no signal lands in between. *parent*:
        made from inside that namespace (links.make_namespace)."""
        return self._make_namespaces([name], parent)[0]

    def _make_namespaces(self, names: list[str], parent: str | None = None) -> list[str]:
        """_make_ns for each of *names*, made side by side (links.make_namespaces)."""
        from ..interrupts import shielded
        from ..owner import alias
        from .links import make_namespaces

        with shielded():
            return make_namespaces(names, parent=parent, ifalias=alias(self.owner, self.persistent))

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and if not, why (one line)."""

    def env(self) -> dict[str, str]:
        """Compose variables this lab instance sets (its subnets, image, label)."""
        return {"TWLAB_LAB": self.lab_id}

    def up(self, topology: Topology) -> dict[str, Host]:
        """Create every host of *topology*; on failure (a signal included), remove what was made,
        shielded from further signals, and raise."""
        from ..interrupts import shielded

        self.require_root()
        try:
            self._up(topology)
        except BaseException:
            with shielded():
                self.down()
            raise
        return self.hosts

    @abc.abstractmethod
    def _up(self, topology: Topology) -> None:
        """Make the hosts into self.hosts (the backend's own way)."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything this lab instance made. Safe to call twice, or after a failed up."""

    @staticmethod
    def require_root() -> None:
        from ..errors import EnvError

        missing = missing_privileges()
        if missing:
            raise EnvError(f"the lab needs root with {' and '.join(missing)} (to make network "
                           "namespaces and enter containers); run it as root, e.g. with sudo")


_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def missing_privileges() -> list[str]:
    """The capabilities the lab needs that this process lacks (its effective set)."""
    try:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return [] if os.geteuid() == 0 else list(_CAPS)
    return [name for name, bit in _CAPS.items() if not eff & (1 << bit)]
