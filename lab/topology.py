"""compose.yaml -> Topology: hosts, networks, addresses, routes and sysctls.

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

import yaml

from .errors import TopologyError, UsageError
from .paths import data_file

__all__ = ["Network", "Route", "HostSpec", "Topology", "load", "DEFAULT_COMPOSE"]

DEFAULT_COMPOSE = data_file("compose.yaml")        # the checkout's, or the one the package carries

LAB_CAPS = frozenset({"NET_ADMIN", "NET_RAW"})       # all a lab host may add (cap_add)
# compose keys that would put a container into this machine's namespaces, or another's
_NAMESPACE_KEYS = ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup")
_DOCKER_SOCKETS = tuple(Path(p).resolve() for p in ("/var/run/docker.sock", "/run/docker.sock"))
_DEV = Path("/dev")

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    internal: bool                                   # Docker's `internal:` flag
    labels: Mapping[str, str] = field(default_factory=dict)
    driver_opts: Mapping[str, str] = field(default_factory=dict)

    @property
    def leads_nowhere(self) -> bool:
        """No NAT out of it: Docker-internal, or masquerading switched off."""
        return self.internal or self.driver_opts.get(
            "com.docker.network.bridge.enable_ip_masquerade", "true").lower() == "false"


@dataclass(frozen=True)
class Route:
    dest: ipaddress.IPv4Network
    via: ipaddress.IPv4Address


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

    @property
    def forwards(self) -> bool:
        return str(self.sysctls.get("net.ipv4.ip_forward", "0")) == "1"


@dataclass(frozen=True)
class Topology:
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

    def address(self, host: str) -> ipaddress.IPv4Address:
        """The host's address (its first network's) - what peers connect to."""
        return next(iter(self.host(host).addresses.values()))


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
    """Routes the service's command sets up (``ip route replace|add DEST via GW``)."""
    if not command:
        return ()
    words: list[str] = []
    for part in command:
        words += shlex.split(part) if " " in part else [part]
    routes = []
    for i in range(len(words) - 5):
        if words[i] == "ip" and words[i + 1] == "route" and words[i + 2] in ("add", "replace") \
                and words[i + 4] == "via":
            try:
                routes.append(Route(ipaddress.IPv4Network(words[i + 3]),
                                    ipaddress.IPv4Address(words[i + 5].rstrip(";&"))))
            except ValueError as exc:
                raise TopologyError(f"{where}: bad route in command: {exc}") from exc
    return tuple(routes)


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


def _mount_source(volume: Any) -> str | None:
    """The host side of a compose volume: "SRC:DST[:MODE]" or {source: SRC, ...}."""
    if isinstance(volume, dict):
        return str(volume["source"]) if volume.get("source") else None
    src, sep, _ = str(volume).partition(":")
    return src if sep else None


def _refuse_unconfined(svc: dict, where: str, base: Path) -> None:
    """A lab host gets what the lab needs and no more: no privileges, no capability beyond
    NET_ADMIN and NET_RAW, none of this machine's namespaces, devices or Docker socket."""
    if svc.get("privileged"):
        raise TopologyError(f"{where}: privileged containers are not allowed; use cap_add")
    extra = sorted({str(c).upper().removeprefix("CAP_") for c in svc.get("cap_add") or ()} - LAB_CAPS)
    if extra:
        raise TopologyError(f"{where}.cap_add: {', '.join(extra)} is not allowed; a lab host gets "
                            f"{' and '.join(sorted(LAB_CAPS))} only")
    for key in _NAMESPACE_KEYS:
        value = str(svc.get(key) or "")
        if value == "host" or value.startswith(("container:", "service:")):
            whose = "this machine's" if value == "host" else f"{value.split(':', 1)[1]}'s"
            raise TopologyError(f"{where}: '{key}: {value}' would give the lab host {whose} "
                                "namespace; remove it (every lab host has namespaces of its own)")
    if svc.get("devices") or svc.get("device_cgroup_rules"):
        raise TopologyError(f"{where}.devices: a lab host gets no device of this machine; remove it")
    for volume in svc.get("volumes") or ():
        source = _mount_source(volume)
        if not source or not source.startswith(("/", ".", "~")):
            continue                                  # a named volume
        real = (base / Path(source).expanduser()).resolve()
        if any(real == sock or real in sock.parents for sock in _DOCKER_SOCKETS):
            raise TopologyError(f"{where}.volumes: {source} would hand the lab host the Docker daemon's "
                                "socket (root on this machine); remove that mount")
        if real == _DEV or _DEV in real.parents:
            raise TopologyError(f"{where}.volumes: {source} would give the lab host this machine's "
                                "devices; remove that mount")


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
    """The compose file as YAML, with a ``services:`` mapping (not yet interpolated)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError(f"{path}{line}: not valid YAML ({problem}); fix the file") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise TopologyError(f"{path}: no 'services:' mapping; a lab needs client, router and server")
    return doc


def _networks(doc: dict, path: Path) -> dict[str, Network]:
    """The ``networks:``, each with a subnet and leading nowhere (no NAT to the outside)."""
    networks: dict[str, Network] = {}
    for name, spec in (doc.get("networks") or {}).items():
        spec = spec or {}
        configs = ((spec.get("ipam") or {}).get("config") or [])
        if not configs or "subnet" not in configs[0]:
            raise TopologyError(f"{path}: network {name!r} needs ipam.config[0].subnet")
        try:
            subnet = ipaddress.IPv4Network(configs[0]["subnet"])
        except ValueError as exc:
            raise TopologyError(f"{path}: network {name!r}: {exc}") from exc
        networks[name] = Network(name, subnet, bool(spec.get("internal", False)),
                                 _mapping(spec.get("labels"), f"networks.{name}.labels"),
                                 _mapping(spec.get("driver_opts"), f"networks.{name}.driver_opts"))
        if not networks[name].leads_nowhere:
            raise TopologyError(f"{path}: network {name!r} would NAT to the outside; set internal: true "
                                "or driver_opts com.docker.network.bridge.enable_ip_masquerade: \"false\"")
    return networks


def _host(name: str, svc: Any, networks: Mapping[str, Network], path: Path) -> HostSpec:
    """One service as a lab host: confined, with a fixed address on each of its networks."""
    where = f"{path.name}: services.{name}"
    if not isinstance(svc, dict):
        raise TopologyError(f"{where}: expected a mapping")
    _refuse_unconfined(svc, where, path.parent)
    addresses = _addresses(svc, networks, where)
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


def _check_routes(hosts: Mapping[str, HostSpec], networks: Mapping[str, Network], path: Path) -> None:
    """Each route's gateway is on one of its host's networks."""
    for host in hosts.values():
        for route in host.routes:
            if not any(route.via in networks[n].subnet for n in host.addresses):
                raise TopologyError(
                    f"{path.name}: services.{host.name}: route via {route.via} is on none of its networks"
                )


def _require_router(path: Path, hosts: Mapping[str, HostSpec]) -> None:
    """Faults, the router's capture and link shaping all live in the router: a lab has one."""
    if not any(h.forwards for h in hosts.values()):
        raise TopologyError(f"{path}: no router: no service forwards between the others; a lab needs "
                            "client -- router -- server, the router with sysctls net.ipv4.ip_forward: 1 "
                            "(see compose.yaml)")
