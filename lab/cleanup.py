"""Finding and removing what lab runs left behind - exactly that, nothing else.

A lab's namespaces are named ``twlab-<hex id>-<host>`` (``...-sw-<net>`` for a switch) and its
containers carry the label ``org.twlab.lab``; so do the Docker networks of a by-hand ``docker
compose up`` of compose.yaml (lab runs make none: their links are veths). A run removes its own on exit; ``invoke clean`` (and the start of every
run) removes those of runs that were killed (SIGKILL, power loss). Nothing is matched by a loose
pattern, and nothing in the host's own network namespace is touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .backends.base import LABEL
from .backends.netns import lab_namespaces, remove_namespace

__all__ = ["Leftovers", "find", "clean", "clean_dead", "dead_labs", "register", "unregister", "live_labs", "RUN_DIR"]

RUN_DIR = Path(os.environ.get("TWLAB_RUN_DIR", "/run/twlab"))   # one file per lab alive: its owner


def register(lab_id: str, backend: str, pid: int | None = None, persistent: bool = False) -> None:
    """Record that *lab_id* is in use (by *pid*, or by the user for a persistent `invoke up` lab)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / f"{lab_id}.json").write_text(json.dumps(
        {"lab_id": lab_id, "backend": backend, "pid": pid or os.getpid(), "persistent": persistent}))


def unregister(lab_id: str) -> None:
    try:
        (RUN_DIR / f"{lab_id}.json").unlink()
    except FileNotFoundError:
        pass


def _records() -> list[dict]:
    out = []
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def live_labs(include_persistent: bool = True) -> set[str]:
    """Labs whose owning process still runs (and `invoke up` labs, unless told otherwise)."""
    live = set()
    for rec in _records():
        if rec.get("persistent"):
            if include_persistent:
                live.add(rec["lab_id"])
        elif os.path.exists(f"/proc/{rec.get('pid')}"):
            live.add(rec["lab_id"])
    return live


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
        out.containers = sorted(c.name for c in dc.containers.list(all=True, filters=flt, ignore_removed=True))
        out.networks = sorted(n.name for n in dc.networks.list(filters=flt))
        dc.close()
    return out


def dead_labs() -> set[str]:
    """Labs registered by a run whose process is gone (killed): certainly leftovers."""
    return {r["lab_id"] for r in _records()
            if not r.get("persistent") and not os.path.exists(f"/proc/{r.get('pid')}")}


def clean_dead() -> Leftovers:
    """What every run does first: remove the labs of runs that were killed, and nothing else
    (not a lab someone brought up with `docker compose` by hand, not a lab still running)."""
    removed = Leftovers()
    for lab_id in sorted(dead_labs()):
        got = clean(lab_id)
        removed.namespaces += got.namespaces
        removed.containers += got.containers
        removed.networks += got.networks
    return removed


def clean(lab_id: str | None = None, keep: set[str] | None = None) -> Leftovers:
    """Remove the leftovers of lab *lab_id*, or of every lab that is not alive (a running lab,
    or an `invoke up` lab, unless *keep* says otherwise); return what was removed."""
    if keep is None:
        keep = live_labs() if lab_id is None else set()
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
        for ctr in dc.containers.list(all=True, filters=flt, ignore_removed=True):
            if ctr.labels.get(LABEL) in keep:
                continue
            try:
                ctr.remove(force=True)
                removed.containers.append(ctr.name)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:      # 409: someone else is removing it right now
                    raise
        for net in dc.networks.list(filters=flt):
            if net.attrs.get("Labels", {}).get(LABEL) in keep:
                continue
            try:
                net.remove()
                removed.networks.append(net.name)
            except (NotFound, APIError):
                pass
        dc.close()
    for rec in _records():
        if rec["lab_id"] not in keep and (lab_id is None or rec["lab_id"] == lab_id):
            unregister(rec["lab_id"])
    return removed
