"""Backends: one interface, two implementations. Only bring-up, tear-down and exec differ;
everything else (shaping, faults, capture, observation) acts on a host's network namespace."""

from __future__ import annotations

from .base import Backend, Host
from .docker import DockerBackend
from .netns import NetnsBackend

__all__ = ["Backend", "Host", "BACKENDS", "check_name", "choose"]

BACKENDS: dict[str, type[Backend]] = {"docker": DockerBackend, "netns": NetnsBackend}


def check_name(name: str) -> None:
    """Refuse a backend name that is not auto, docker or netns (UsageError), without probing."""
    from ..errors import UsageError

    if name != "auto" and name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: choose auto, docker or netns")


def choose(name: str) -> tuple[type[Backend], str]:
    """The backend class for *name* (auto|docker|netns) and one line saying why it was picked."""
    from ..errors import EnvError

    if name == "auto":
        ok, why = DockerBackend.available()
        if ok:
            return DockerBackend, "backend: docker (a Docker daemon answered)"
        from .base import missing_privileges

        missing = missing_privileges()
        if missing:
            raise EnvError(f"the lab needs root with {' and '.join(missing)} (to make network "
                           "namespaces and enter containers); run it as root, e.g. with sudo")
        return NetnsBackend, f"backend: netns ({why}; containers need a running Docker daemon)"
    check_name(name)
    cls = BACKENDS[name]
    ok, why = cls.available()
    if not ok:
        from .base import missing_privileges

        hint = "run it as root, e.g. with sudo" if missing_privileges() else \
            "start dockerd (scripts/dockerd-up) or use --backend netns"
        raise EnvError(f"backend {name} is not available: {why}; {hint}")
    return cls, f"backend: {name}"
