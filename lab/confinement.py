"""What a lab host may not have: privileges, capabilities beyond NET_ADMIN and NET_RAW, this
machine's namespaces, devices or Docker socket (a compose service is refused with one line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import TopologyError

__all__ = ["LAB_CAPS", "refuse_unconfined"]

LAB_CAPS = frozenset({"NET_ADMIN", "NET_RAW"})       # all a lab host may add (cap_add)
# compose keys that would put a container into this machine's namespaces, or another's
_NAMESPACE_KEYS = ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup")
_DOCKER_SOCKETS = tuple(Path(p).resolve() for p in ("/var/run/docker.sock", "/run/docker.sock"))
_DEV = Path("/dev")


def _mount_source(volume: Any) -> str | None:
    """The host side of a compose volume: "SRC:DST[:MODE]" or {source: SRC, ...}."""
    if isinstance(volume, dict):
        return str(volume["source"]) if volume.get("source") else None
    src, sep, _ = str(volume).partition(":")
    return src if sep else None


def refuse_unconfined(svc: dict, where: str, base: Path) -> None:
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
