"""Finding and removing what lab runs left behind - exactly that, nothing else.

A lab's namespaces are named ``twlab-<hex id>-<host>`` (``...-sw-<net>`` for a switch) and its
containers carry the label ``org.twlab.lab``; so do the Docker networks of a by-hand ``docker
compose up`` of compose.yaml (lab runs make none: their links are veths). A run removes its own on
exit; ``invoke clean`` (and the start of every run) removes those of runs that were killed (SIGKILL, power loss).
Nothing is matched by a loose pattern, and nothing in the host's own network namespace is touched.

Whether a lab is still in use has two witnesses: the registry (one file per lab in RUN_DIR, with its
owner) and the lab's own objects, which name their owner process and whether `invoke up` made them
(lab.owner). A lab is kept when either says its owner runs, so a clean that reads another registry
directory (TWLAB_RUN_DIR) still never removes a live lab.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import owner as _owner
from .backends.base import LABEL
from .backends.netns import NETNS_DIR, lab_namespaces, remove_namespace
from .dockerapi import labelled

__all__ = ["Leftovers", "find", "clean", "clean_dead", "dead_labs", "register", "mark_ready", "unregister",
           "live_labs", "marks", "made_here", "after_interrupt", "RUN_DIR"]

RUN_DIR = Path(os.environ.get("TWLAB_RUN_DIR", "/run/twlab"))   # one file per lab alive: its owner
_MADE: set[str] = set()          # labs this process registered (what an interrupt must account for)
_UNMARKED_GRACE_S = 0.2          # a namespace gets its mark a moment after `ip netns add`


def register(lab_id: str, backend: str, pid: int | None = None, persistent: bool = False,
             ready: bool = True) -> None:
    """Record that *lab_id* is in use by *pid* (default: this process); a *persistent* lab (made
    by `invoke up`) outlives it once *ready* (until then, it is its maker's)."""
    _MADE.add(lab_id)
    _write(lab_id, {"lab_id": lab_id, "backend": backend, "pid": pid or os.getpid(),
                    "owner": _owner.token(pid), "persistent": persistent, "ready": ready})


def mark_ready(lab_id: str) -> None:
    path = RUN_DIR / f"{lab_id}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    _write(lab_id, {**rec, "ready": True})


def _write(lab_id: str, rec: dict) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tmp = RUN_DIR / f".{lab_id}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, RUN_DIR / f"{lab_id}.json")      # readers never see half a record


def unregister(lab_id: str) -> None:
    try:
        (RUN_DIR / f"{lab_id}.json").unlink()
    except FileNotFoundError:
        pass


def made_here() -> set[str]:
    return set(_MADE)


def _records() -> list[dict]:
    out = []
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "lab_id" in rec:
            out.append(rec)
    return out


def _rec_alive(rec: dict) -> bool:
    if rec.get("owner"):
        return _owner.alive(rec["owner"])
    return os.path.exists(f"/proc/{rec.get('pid')}")      # a record written before owner tokens


def _rec_keeps(rec: dict, include_persistent: bool) -> bool:
    if rec.get("persistent") and rec.get("ready", True):
        return include_persistent
    return _rec_alive(rec)           # a run, or an `invoke up` still bringing its lab up


def _marks_keep(ms: list[_owner.Mark], rec: dict | None, include_persistent: bool) -> bool:
    if any(_owner.alive(m.owner) for m in ms if m.owner):
        return True
    # an `invoke up` lab: kept, unless this registry knows it is a half-made one whose maker died
    return include_persistent and rec is None and any(m.up for m in ms)


def _label(lab_id: str | None) -> str:
    """The Docker label filter for one lab's objects, or (None) every lab's."""
    return f"{LABEL}={lab_id}" if lab_id else LABEL


def _alias(name: str) -> str | None:
    """The loopback alias of namespace *name*, read from a thread of its own: entering another
    lab's namespace on the main thread makes this whole process look like one of that lab's
    (/proc/PID/ns/net is the main thread's), and that lab's tear-down, removing what runs in it,
    then killed this process - seen as a worker of a parallel batch dying of SIGKILL while its
    run read the marks of a lab that was just being torn down beside it."""
    from .nsops import iproute

    got: list[str | None] = []

    def read() -> None:
        try:
            with iproute(f"{NETNS_DIR}/{name}") as ipr:
                got.append(ipr.get_links(ipr.link_lookup(ifname="lo")[0])[0].get("IFLA_IFALIAS"))
        except Exception:            # gone meanwhile, or not a namespace (a half-made entry)
            got.append(None)

    reader = threading.Thread(target=read, name="twlab-mark", daemon=True)
    reader.start()
    reader.join()
    return got[0] if got else None


def marks(lab_id: str | None = None) -> dict[str, list[_owner.Mark]]:
    """What each lab's objects say about its owner: lab id -> one Mark per object."""
    out: dict[str, list[_owner.Mark]] = {}
    unmarked = []
    for name in lab_namespaces(lab_id):
        mark = _owner.parse_alias(_alias(name))
        if mark.owner is None:
            unmarked.append(name)
        else:
            out.setdefault(name.split("-")[1], []).append(mark)
    if unmarked:                     # a lab marks its namespace a moment after making it
        time.sleep(_UNMARKED_GRACE_S)
        for name in unmarked:
            out.setdefault(name.split("-")[1], []).append(_owner.parse_alias(_alias(name)))
    got = labelled(_label(lab_id))
    for obj in [o for objs in got or () for o in objs]:
        out.setdefault(obj.labels.get(LABEL, "?"), []).append(_owner.from_labels(obj.labels))
    return out


def live_labs(include_persistent: bool = True) -> set[str]:
    """Labs whose owning process still runs (and `invoke up` labs, unless told otherwise), by the
    registry or by the labs' own marks."""
    recs = {r["lab_id"]: r for r in _records()}
    live = {lab_id for lab_id, rec in recs.items() if _rec_keeps(rec, include_persistent)}
    for lab_id, ms in marks().items():
        if lab_id not in live and _marks_keep(ms, recs.get(lab_id), include_persistent):
            live.add(lab_id)
    return live


@dataclass
class Leftovers:
    namespaces: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    sandboxes: list[str] = field(default_factory=list)     # gVisor state directories (lab.gvisor)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.containers or self.networks or self.sandboxes)

    def lines(self) -> list[str]:
        return ([f"namespace {n}" for n in self.namespaces] + [f"container {c}" for c in self.containers]
                + [f"docker network {n}" for n in self.networks]
                + [f"gVisor sandboxes {s}" for s in self.sandboxes])


def _sandbox_dirs(lab_id: str | None) -> list[str]:
    """GVISOR_DIR/<lab id> of lab *lab_id* (or of every lab), with their runsc processes."""
    from . import gvisor

    return [str(gvisor.lab_dir(i)) for i in gvisor.lab_dirs() if lab_id is None or i == lab_id]


def _docker():
    try:
        from .backends.docker import client

        return client()
    except Exception:
        return None


def find(lab_id: str | None = None, docker: bool = True) -> Leftovers:
    """The namespaces, containers, networks and gVisor sandboxes of lab *lab_id* (or of every
    lab); the Docker daemon asked only when *docker*."""
    out = Leftovers(namespaces=lab_namespaces(lab_id), sandboxes=_sandbox_dirs(lab_id))
    got = labelled(_label(lab_id)) if docker else None
    if got is not None:
        out.containers, out.networks = (sorted(o.name for o in objs) for objs in got)
    return out


def dead_labs() -> set[str]:
    """Labs whose owner is certainly gone: the registry or every mark names a dead process, and
    nothing says otherwise (a lab with no marks and no record - one made by hand - is not dead)."""
    recs = {r["lab_id"]: r for r in _records()}
    all_marks = marks()
    dead = set()
    for lab_id in set(recs) | set(all_marks):
        rec, ms = recs.get(lab_id), all_marks.get(lab_id, [])
        if (rec is not None and _rec_keeps(rec, True)) or _marks_keep(ms, rec, True):
            continue
        if rec is not None or (ms and all(m.owner for m in ms)):
            dead.add(lab_id)
    return dead


def clean_dead() -> Leftovers:
    """What every run does first: remove the labs of runs that were killed, and nothing else
    (not a lab someone brought up with `docker compose` by hand, not a lab still running)."""
    removed = Leftovers()
    for lab_id in sorted(dead_labs()):
        got = clean(lab_id)
        removed.namespaces += got.namespaces
        removed.containers += got.containers
        removed.networks += got.networks
        removed.sandboxes += got.sandboxes
    return removed


def clean(lab_id: str | None = None, keep: set[str] | None = None) -> Leftovers:
    """Remove the leftovers of lab *lab_id*, or of every lab that is not alive (a running lab,
    or an `invoke up` lab, unless *keep* says otherwise); return what was removed."""
    from .interrupts import shielded

    if keep is None:
        keep = live_labs() if lab_id is None else set()
    with shielded():                # a Ctrl-C waits until the removal is done
        return _remove(lab_id, keep)


def _remove(lab_id: str | None, keep: set[str]) -> Leftovers:
    from docker.errors import APIError, NotFound

    from . import gvisor

    removed = Leftovers()
    for path in _sandbox_dirs(lab_id):           # first: their runsc commands need the namespace
        if Path(path).name in keep:
            continue
        gvisor.remove_lab(Path(path).name)
        removed.sandboxes.append(path)
    for name in lab_namespaces(lab_id):
        if name.split("-")[1] in keep:
            continue
        remove_namespace(name)
        removed.namespaces.append(name)
    dc = _docker()
    if dc is not None:
        flt = {"label": _label(lab_id)}
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


def after_interrupt(exc: BaseException) -> str:
    """What to tell the user after an interrupt: which signal, and what became of the labs this
    process made - checked now, not assumed."""
    from .interrupts import signal_name

    what = f"interrupted by {signal_name(exc)}"
    labs = sorted(made_here())
    if not labs:
        return f"{what} before any lab was made"
    try:
        left = [line for lab_id in labs for line in find(lab_id).lines()]
    except Exception as err:        # noqa: BLE001 - the daemon went away, say so
        return f"{what}; could not check that the lab was removed ({err}); `invoke clean` removes leftovers"
    if left:
        return f"{what}; left behind: {', '.join(left)}; `invoke clean` removes them"
    if len(labs) == 1:
        return f"{what}; the lab was removed (lab {labs[0]})"
    return f"{what}; all {len(labs)} labs were removed ({', '.join(labs)})"
