"""Finding and removing what lab runs left behind - exactly that, nothing else.

A lab's namespaces are named ``twlab-<hex id>-<host>`` and its containers and Docker networks carry
the label ``org.twlab.lab``. A run removes its own on exit; ``invoke clean`` (and the start of every
run) removes those of runs that were killed (SIGKILL, power loss). Nothing is matched by a loose
pattern, and nothing in the host's own network namespace is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends.base import LABEL
from .backends.netns import lab_namespaces, remove_namespace

__all__ = ["Leftovers", "find", "clean"]


@dataclass
class Leftovers:
    namespaces: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.containers or self.networks)

    def lines(self) -> list[str]:
        return ([f"namespace {n}" for n in self.namespaces] + [f"container {c}" for c in self.containers]
                + [f"docker network {n}" for n in self.networks])


def _docker():
    try:
        from .backends.docker import client

        return client()
    except Exception:
        return None


def find(lab_id: str | None = None) -> Leftovers:
    out = Leftovers(namespaces=lab_namespaces(lab_id))
    dc = _docker()
    if dc is not None:
        flt = {"label": f"{LABEL}={lab_id}" if lab_id else LABEL}
        out.containers = sorted(c.name for c in dc.containers.list(all=True, filters=flt))
        out.networks = sorted(n.name for n in dc.networks.list(filters=flt))
        dc.close()
    return out


def clean(lab_id: str | None = None, keep: set[str] = frozenset()) -> Leftovers:
    """Remove the leftovers of lab *lab_id* (or of every lab except those in *keep*, which
    are labs still running); return what was removed."""
    from docker.errors import APIError, NotFound

    removed = Leftovers()
    for name in lab_namespaces(lab_id):
        if name.split("-")[1] in keep:
            continue
        remove_namespace(name)
        removed.namespaces.append(name)
    dc = _docker()
    if dc is not None:
        flt = {"label": f"{LABEL}={lab_id}" if lab_id else LABEL}
        for ctr in dc.containers.list(all=True, filters=flt):
            if ctr.labels.get(LABEL) in keep:
                continue
            try:
                ctr.remove(force=True)
                removed.containers.append(ctr.name)
            except NotFound:
                pass
        for net in dc.networks.list(filters=flt):
            if net.attrs.get("Labels", {}).get(LABEL) in keep:
                continue
            try:
                net.remove()
                removed.networks.append(net.name)
            except (NotFound, APIError):
                pass
        dc.close()
    return removed
