"""compose.yaml -> Topology: hosts, networks, addresses, routes and sysctls.

The lab is dual-stack: a network may carry an IPv6 prefix beside its IPv4 /24 (a second
``ipam.config`` subnet), and then each of its services has an ``ipv6_address``
there too; routes of both families are read from the services' commands (``ip route replace DEST
via GW`` and ``ip -6 route replace DEST via GW``). A compose file without IPv6 still loads: its
lab runs IPv4 only (``Topology.has_ipv6`` is False, and ``--family 6`` is refused).

compose.yaml is the one source of truth. Both backends build the same picture from it: the docker
backend hands each service to the Docker engine, the netns backend rebuilds it with namespaces and
veth pairs. Compose's variable interpolation (``${VAR:-default}``) is honoured, which is how a lab
instance gets its own subnets while a by-hand ``docker compose up`` gets the defaults.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import compose_file
from .confinement import LAB_CAPS, refuse_unconfined
from .errors import TopologyError, UsageError
from .paths import data_file

__all__ = ["Network", "Route", "HostSpec", "Topology", "load", "DEFAULT_COMPOSE", "LAB_CAPS", "Address"]

DEFAULT_COMPOSE = data_file("compose.yaml")        # the checkout's, or the one the package carries


Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    internal: bool                                   # Docker's `internal:` flag
    labels: Mapping[str, str] = field(default_factory=dict)
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    subnet6: ipaddress.IPv6Network | None = None     # its IPv6 prefix (ipam.config), if any

    @property
    def leads_nowhere(self) -> bool:
        """No NAT out of it: Docker-internal, or masquerading switched off."""
        return self.internal or self.driver_opts.get(
            "com.docker.network.bridge.enable_ip_masquerade", "true").lower() == "false"


@dataclass(frozen=True)
class Route:
    dest: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: Address

    @property
    def family(self) -> int:
        return self.dest.version


@dataclass(frozen=True)
class HostSpec:
    name: str
    image: str
    addresses: Mapping[str, ipaddress.IPv4Address]  # network name -> address
    sysctls: Mapping[str, str]
    cap_add: tuple[str, ...]
    routes: tuple[Route, ...]
    command: tuple[str, ...] | None
    labels: Mapping[str, str]
    init: bool = False
    addresses6: Mapping[str, ipaddress.IPv6Address] = field(default_factory=dict)   # network -> address

    @property
    def forwards(self) -> bool:
        """The router: its service sets net.ipv4.ip_forward 1 (it forwards IPv6 too, unless the
        service sets net.ipv6.conf.all.forwarding itself: lab.backends.links)."""
        return str(self.sysctls.get("net.ipv4.ip_forward", "0")) == "1"

    def addrs(self, family: int = 4) -> Mapping[str, Address]:
        """network -> this host's address there, in *family* (4 or 6)."""
        return self.addresses6 if family == 6 else self.addresses


@dataclass(frozen=True)
class Topology:
    """The lab's hosts and networks, as compose.yaml describes them."""

    name: str
    hosts: Mapping[str, HostSpec]
    networks: Mapping[str, Network]
    source: Path

    def host(self, name: str) -> HostSpec:
        try:
            return self.hosts[name]
        except KeyError:
            raise UsageError(
                f"unknown host {name!r}: this lab has {', '.join(self.hosts)}"
            ) from None

    def members(self, network: str) -> list[HostSpec]:
        return [h for h in self.hosts.values() if network in h.addresses]

    @property
    def router(self) -> HostSpec | None:
        routers = [h for h in self.hosts.values() if h.forwards]
        return routers[0] if routers else None

    def address(self, host: str, family: int = 4) -> Address:
        """The host's address in *family* (its first network's) - what peers connect to."""
        return next(iter(self.host(host).addrs(family).values()))

    @property
    def has_ipv6(self) -> bool:
        """Every network has an IPv6 prefix and every host an IPv6 address on each of its
        networks: the lab can run with --family 6."""
        return all(n.subnet6 is not None for n in self.networks.values()) and \
            all(set(h.addresses6) == set(h.addresses) for h in self.hosts.values())

    def without_ipv6(self) -> str:
        """Why this topology cannot run IPv6 ("" when it can)."""
        bare = [n.name for n in self.networks.values() if n.subnet6 is None]
        if bare:
            return f"network {', '.join(map(repr, bare))} of {self.source} has no IPv6 subnet (ipam.config)"
        return ""


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(4)
            have = env.get(name)
            if m.group(2) == ":-":
                return have if have else m.group(3)
            if m.group(2) == "-":
                return have if have is not None else m.group(3)
            if have is None:
                raise TopologyError(f"{where}: variable ${name} is not set and has no default")
            return have

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, where) for v in value]
    return value


def _routes_from_command(command: tuple[str, ...] | None, where: str) -> tuple[Route, ...]:
    """Routes the service's command sets up, of either family: ``ip [-4|-6] route add|replace
    DEST via GW`` (``del`` is not a route)."""
    if not command:
        return ()
    words: list[str] = []
    for part in command:
        words += shlex.split(part) if " " in part else [part]
    routes = []
    for i, word in enumerate(words):
        rest = words[i + 1:i + 7]
        if word != "ip" or not rest:
            continue
        opt = rest.pop(0) if rest[0] in ("-4", "-6") else None
        if len(rest) >= 5 and rest[0] == "route" and rest[1] in ("add", "replace") and rest[3] == "via":
            routes.append(_route(rest[2], rest[4].rstrip(";&"), opt, where))
    return tuple(routes)


def _route(dest: str, via: str, opt: str | None, where: str) -> Route:
    """One route of a command: DEST and GW of one family, the family `ip -4`/`-6` named."""
    try:
        route = Route(ipaddress.ip_network(dest), ipaddress.ip_address(via))
    except ValueError as exc:
        raise TopologyError(f"{where}: bad route in command: {exc}") from exc
    if route.via.version != route.family:
        raise TopologyError(f"{where}: bad route in command: {dest} via {via} mixes IPv4 and IPv6")
    if opt is not None and int(opt[1]) != route.family:
        raise TopologyError(f"{where}: bad route in command: `ip {opt} route` to an IPv{route.family} "
                            f"destination ({dest}); write `ip -{route.family} route`")
    return Route(route.dest, route.via)


def _mapping(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):  # ["KEY=VALUE", ...]
        out = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            if not sep:
                raise TopologyError(f"{where}: expected KEY=VALUE, got {item!r}")
            out[key] = val
        return out
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    raise TopologyError(f"{where}: expected a mapping, got {type(value).__name__}")


def load(path: Path | str = DEFAULT_COMPOSE, env: Mapping[str, str] | None = None) -> Topology:
    """Read a compose file into a Topology, interpolating ``${VAR:-default}`` from *env*."""
    path = Path(path)
    doc = _interpolate(_read_compose(path), env or {}, path.name)
    networks = _networks(doc, path)
    hosts = {name: _host(name, svc, networks, path) for name, svc in doc["services"].items()}
    _check_routes(hosts, networks, path)
    _require_router(path, hosts)
    return Topology(str(doc.get("name", "twlab")), hosts, networks, path)


def _read_compose(path: Path) -> dict:
    """The compose file's document (not yet interpolated); the default file's parse kept."""
    return compose_file.read(path, keep=path == DEFAULT_COMPOSE)


def _networks(doc: dict, path: Path) -> dict[str, Network]:
    """The ``networks:``, each with a subnet (and, where ipam.config has one, an IPv6 prefix), leading
    nowhere (no NAT to the outside)."""
    networks: dict[str, Network] = {}
    for name, spec in (doc.get("networks") or {}).items():
        spec = spec or {}
        subnet, subnet6 = _subnets(name, spec, path)
        networks[name] = Network(name, subnet, bool(spec.get("internal", False)),
                                 _mapping(spec.get("labels"), f"networks.{name}.labels"),
                                 _mapping(spec.get("driver_opts"), f"networks.{name}.driver_opts"),
                                 subnet6=subnet6)
        if not networks[name].leads_nowhere:
            raise TopologyError(f"{path}: network {name!r} would NAT to the outside; set internal: true "
                                "or driver_opts com.docker.network.bridge.enable_ip_masquerade: \"false\"")
    return networks


def _subnets(name: str, spec: dict, path: Path) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network | None]:
    """A network's ``ipam.config`` subnets: one IPv4 and at most one IPv6. The lab puts the IPv6 one
    on its own links whatever ``enable_ipv6`` says (that is Docker's, for a by-hand lab: false in
    compose.yaml, see there); ``enable_ipv6: true`` without an IPv6 subnet would let Docker pick one
    the lab does not know, and is refused."""
    configs = ((spec.get("ipam") or {}).get("config") or [])
    if not configs or not isinstance(configs[0], dict) or "subnet" not in configs[0]:
        raise TopologyError(f"{path}: network {name!r} needs ipam.config[0].subnet")
    try:
        subnets = [ipaddress.ip_network(c["subnet"]) for c in configs if isinstance(c, dict) and "subnet" in c]
    except ValueError as exc:
        raise TopologyError(f"{path}: network {name!r}: {exc}") from exc
    v4 = [s for s in subnets if s.version == 4]
    v6 = [s for s in subnets if s.version == 6]
    if len(v4) != 1 or len(v6) > 1:
        raise TopologyError(f"{path}: network {name!r} needs one IPv4 subnet and at most one IPv6 subnet "
                            f"in ipam.config (it has {len(v4)} and {len(v6)})")
    if spec.get("enable_ipv6") is True and not v6:
        raise TopologyError(f"{path}: network {name!r} sets enable_ipv6 but has no IPv6 subnet; add one "
                            "to ipam.config (a unique local /64, fd...::/64)")
    return v4[0], (v6[0] if v6 else None)


def _host(name: str, svc: Any, networks: Mapping[str, Network], path: Path) -> HostSpec:
    """One service as a lab host: confined, with a fixed address on each of its networks."""
    where = f"{path.name}: services.{name}"
    if not isinstance(svc, dict):
        raise TopologyError(f"{where}: expected a mapping")
    refuse_unconfined(svc, where, path.parent)
    addresses = _addresses(svc, networks, where)
    addresses6 = _addresses6(svc, networks, where)
    command = svc.get("command")
    if isinstance(command, str):
        command = ("sh", "-c", command)
    command = tuple(str(c) for c in command) if command else None
    return HostSpec(
        name=name,
        image=str(svc.get("image", "")),
        addresses=addresses,
        sysctls=_mapping(svc.get("sysctls"), f"{where}.sysctls"),
        cap_add=tuple(svc.get("cap_add") or ()),
        routes=_routes_from_command(command, where),
        command=command,
        labels=_mapping(svc.get("labels"), f"{where}.labels"),
        init=bool(svc.get("init", False)),
        addresses6=addresses6,
    )


def _addresses(svc: dict, networks: Mapping[str, Network], where: str) -> dict[str, ipaddress.IPv4Address]:
    """The service's ``networks:``: network name -> its ipv4_address, inside that network."""
    nets = svc.get("networks") or {}
    if isinstance(nets, list):
        raise TopologyError(f"{where}.networks: give each network an ipv4_address")
    addresses: dict[str, ipaddress.IPv4Address] = {}
    for net, nspec in nets.items():
        if net not in networks:
            raise TopologyError(f"{where}: network {net!r} is not declared under networks:")
        try:
            addr = ipaddress.IPv4Address((nspec or {}).get("ipv4_address", ""))
        except ValueError:
            raise TopologyError(f"{where}.networks.{net}: needs a fixed ipv4_address") from None
        if addr not in networks[net].subnet:
            raise TopologyError(f"{where}: {addr} is outside {net} ({networks[net].subnet})")
        addresses[net] = addr
    if not addresses:
        raise TopologyError(f"{where}: is on no network")
    return addresses


def _addresses6(svc: dict, networks: Mapping[str, Network], where: str) -> dict[str, ipaddress.IPv6Address]:
    """network name -> the service's ipv6_address there: one on each of its networks that has an
    IPv6 prefix, inside it; none elsewhere."""
    addresses: dict[str, ipaddress.IPv6Address] = {}
    for net, nspec in (svc.get("networks") or {}).items():
        given = (nspec or {}).get("ipv6_address")
        subnet6 = networks[net].subnet6
        if subnet6 is None:
            if given:
                raise TopologyError(f"{where}.networks.{net}: ipv6_address {given} on a network without "
                                    "an IPv6 prefix; add an IPv6 subnet to its ipam.config")
            continue
        try:
            addr = ipaddress.IPv6Address(str(given or ""))
        except ValueError:
            raise TopologyError(f"{where}.networks.{net}: needs a fixed ipv6_address ({net} has the "
                                f"IPv6 prefix {subnet6})") from None
        if addr not in subnet6:
            raise TopologyError(f"{where}: {addr} is outside {net} ({subnet6})")
        addresses[net] = addr
    return addresses


def _check_routes(hosts: Mapping[str, HostSpec], networks: Mapping[str, Network], path: Path) -> None:
    """Each route's gateway is on one of its host's networks, in the route's family."""
    def subnet(n: str, family: int):
        return networks[n].subnet if family == 4 else networks[n].subnet6

    for host in hosts.values():
        for route in host.routes:
            if not any(s is not None and route.via in s for s in (subnet(n, route.family) for n in host.addresses)):
                raise TopologyError(
                    f"{path.name}: services.{host.name}: route via {route.via} is on none of its networks"
                )


def _require_router(path: Path, hosts: Mapping[str, HostSpec]) -> None:
    """Faults, the router's capture and link shaping all live in the router: a lab has one."""
    if not any(h.forwards for h in hosts.values()):
        raise TopologyError(f"{path}: no router: no service forwards between the others; a lab needs "
                            "client -- router -- server, the router with sysctls net.ipv4.ip_forward: 1 "
                            "(see compose.yaml)")
