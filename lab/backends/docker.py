"""docker backend: the services of compose.yaml as real containers (Docker SDK).

Every container carries the label ``org.twlab.lab=<lab id>`` and a ``twlab-<lab>-`` name, so one
filter finds everything a lab made. The containers get no Docker network (``network_mode:
none``) and run an idle command of the lab's own (IDLE); the lab then wires them as the netns
backend wires its namespaces (lab.backends.links: veth pairs between the containers' network
namespaces, addresses and routes from the topology). A Docker bridge network would put a bridge
in this machine's own namespace, and a lab host that adds a default route (it has NET_ADMIN)
would reach this machine through it. Containers are never privileged: they get all capabilities
dropped and only compose.yaml's cap_add back.

plan() picks each instance an image and its own /24s and IPv6 /64s for the lab networks (the
compose variables ``TWLAB_<NETWORK>`` and ``TWLAB_<NETWORK>6``: lab.backends.prefixes), chosen to
overlap no Docker network and no route of this machine: the lab's links need none of that (they
live in the lab's namespaces), but a by-hand ``docker compose up`` with those variables makes
Docker networks (tests/integration/test_compose_by_hand.py does).

Docker switches IPv6 off in a container without an IPv6 network (disable_ipv6 1 in all, default
and lo); lab.backends.links turns it back on before it makes the links.
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import TYPE_CHECKING

from ..errors import BackendError, EnvError
from ..interrupts import shield_calls, shielded
from .base import LABEL, PREFIX, Backend, Host, missing_privileges
from .links import own_sysctls, switch_name, wire
from .netns import lab_namespaces, remove_namespace
from .prefixes import variables

if TYPE_CHECKING:
    from ..topology import Topology

__all__ = ["DockerBackend", "lab_containers", "client", "IDLE"]

_TIMEOUT_S = 30
IDLE = ("sleep", "infinity")                   # what each container runs: the lab does the rest


def client():
    """A Docker client, or EnvError saying why there is none."""
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env(timeout=_TIMEOUT_S)
        c.api.request = shield_calls(c.api.request)   # a signal never cuts a request in half
        c.ping()
        return c
    except DockerException as exc:
        raise EnvError(
            f"no Docker daemon answers at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}"
            " (start dockerd, or use --backend netns)"
        ) from exc


def lab_containers(dc, lab_id: str | None = None):
    flt = f"{LABEL}={lab_id}" if lab_id else LABEL
    return dc.containers.list(all=True, filters={"label": flt}, ignore_removed=True)


def _taken_subnets(dc) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Subnets of every Docker network and every route (of both families) on this machine (read
    only)."""
    from ..netlink import IPRoute

    taken = []
    for net in dc.api.networks():
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            try:
                taken.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
            except ValueError:
                pass
    ipr = None
    try:
        with shielded():                # never a Ctrl-C inside pyroute2's constructor (nsops.iproute)
            ipr = IPRoute()
        for family in (2, 10):
            for route in ipr.get_routes(family=family):
                dst = route.get("RTA_DST")
                if dst and route["dst_len"] > 0:
                    taken.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    finally:
        if ipr is not None:
            ipr.close()
    return taken


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, lab_id: str, progress=lambda s: None) -> None:
        super().__init__(lab_id, progress)
        self._dc = None
        self._env: dict[str, str] = {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            client().close()
        except EnvError as exc:
            return False, str(exc).split(" (")[0]
        except Exception as exc:  # no docker package, socket errors, ...
            return False, f"no Docker daemon ({exc.__class__.__name__})"
        missing = missing_privileges()
        if missing:
            return False, f"not root (no {' or '.join(missing)}; the lab enters the containers' namespaces)"
        return True, "ok"

    @property
    def dc(self):
        if self._dc is None:
            self._dc = client()
        return self._dc

    def plan(self, topology: Topology) -> dict[str, str]:
        """Compose variables for this instance: an image, and a free /24 and a free unique local
        /64 for each lab network (lab.backends.prefixes)."""
        from .. import image

        self._env = {"TWLAB_LAB": self.lab_id,
                     "TWLAB_IMAGE": image.ensure_image(self.dc, progress=self.progress),
                     **variables(topology.networks, _taken_subnets(self.dc))}
        return dict(self._env)

    def env(self) -> dict[str, str]:
        return dict(self._env) or super().env()

    def _up(self, topology: Topology) -> None:
        from docker.errors import APIError

        labels = {LABEL: self.lab_id, **self.owner_labels()}
        containers = {}
        for spec in topology.hosts.values():
            name = f"{PREFIX}{self.lab_id}-{spec.name}"
            try:
                # no Docker network: the lab wires the containers itself (lab.backends.links)
                containers[spec.name] = self.dc.containers.create(
                    spec.image, command=list(IDLE), network_mode="none",
                    name=name, hostname=spec.name, labels={**spec.labels, **labels},
                    cap_drop=["ALL"], cap_add=list(spec.cap_add),
                    security_opt=["no-new-privileges"], init=spec.init,
                    sysctls=own_sysctls(spec.sysctls), detach=True,
                )
            except APIError as exc:
                raise BackendError(f"cannot create container {name}: {exc.explanation}") from exc
        for ctr in containers.values():
            try:
                ctr.start()
            except APIError as exc:
                raise BackendError(f"cannot start container {ctr.name}: {exc.explanation}") from exc
        for spec in topology.hosts.values():
            ctr = containers[spec.name]
            pid = self._wait_running(ctr)
            self.hosts[spec.name] = Host(
                name=spec.name, spec=spec, nspath=f"/proc/{pid}/ns/net",
                exec_prefix=["docker", "exec", "-i", ctr.name],
                python=["python3", "-u"],
                addresses=dict(spec.addresses), addresses6=dict(spec.addresses6),
            )
        self.ipv6_settle_s = wire(topology, self.hosts, lambda net: self._make_ns(switch_name(self.lab_id, net)))

    def _wait_running(self, ctr) -> int:
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            ctr.reload()
            state = ctr.attrs["State"]
            if state.get("Running") and state.get("Pid"):
                return int(state["Pid"])
            if state.get("Status") in ("exited", "dead"):
                logs = ctr.logs(tail=3).decode(errors="replace").strip().replace("\n", " | ")
                raise BackendError(f"container {ctr.name} exited at start: {logs or state.get('Error')}")
            time.sleep(0.05)
        raise BackendError(f"container {ctr.name} did not start within {_TIMEOUT_S} s")

    def down(self) -> None:
        if self._dc is None:
            try:
                self._dc = client()
            except EnvError:
                return
        from docker.errors import APIError, NotFound

        for ctr in lab_containers(self.dc, self.lab_id):
            try:
                ctr.remove(force=True)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:   # removal already in progress
                    raise BackendError(f"cannot remove container {ctr.name}: {exc.explanation}") from exc
        for name in lab_namespaces(self.lab_id):        # a switch of a network of three or more
            remove_namespace(name)
