"""A lab to explore by hand: `invoke up`, `invoke shell HOST`, `invoke down`.

The lab outlives the command that made it: its namespaces or containers stay until `invoke down`
(or `invoke clean --all`). There is one such lab per registry directory (RUN_DIR): what it is, is
kept in RUN_DIR/up.state, which `invoke up` claims (under a lock) before it makes anything, so a
second `invoke up` refuses in one line instead of making a lab nobody knows of. An `up` that is
interrupted removes what it made; one that was killed leaves a claim that `invoke down`,
`invoke clean` or the next `invoke up` clears, with its half-made lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator

from . import owner
from .cleanup import _MADE, RUN_DIR, clean, find, mark_ready, register
from .errors import UsageError
from .interrupts import interrupts_as_exceptions, shielded

__all__ = ["lab_up", "lab_down", "shell_argv", "forget_if_gone", "STATE"]

STATE = RUN_DIR / "up.state"     # not *.json: those are the registry's records


def _state() -> dict | None:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict) -> None:
    tmp = RUN_DIR / f".up.state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, STATE)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One `up`/`down` at a time looks at and changes the state (released if the process dies)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "up.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _being_made(state: dict) -> bool:
    """The claim of an `invoke up` that is still bringing its lab up."""
    return not state.get("ready", True) and owner.alive(state.get("owner"))


def _stale(state: dict) -> bool:
    """The claim of an `invoke up` that died before its lab was up."""
    return not state.get("ready", True) and not owner.alive(state.get("owner"))


def _claim(lab_id: str, progress: Callable[[str], None]) -> None:
    with _locked():
        state = _state()
        if state and _stale(state):
            gone = clean(state["lab_id"])
            progress(f"removed lab {state['lab_id']}, left half-made by an `invoke up` that was killed"
                     + (f": {', '.join(gone.lines())}" if gone else ""))
            state = None
        if state and _being_made(state):
            raise UsageError(f"lab {state['lab_id']} is being brought up by another `invoke up` "
                             f"(pid {state.get('pid')}); wait for it, then `invoke down` first")
        if state:
            raise UsageError(f"a lab is already up ({state['lab_id']}); `invoke down` first")
        _write_state({"lab_id": lab_id, "pid": os.getpid(), "owner": owner.token(), "ready": False})


def _release(lab_id: str) -> None:
    with _locked():
        state = _state()
        if state and state.get("lab_id") == lab_id:
            STATE.unlink(missing_ok=True)


def lab_up(backend: str = "auto", progress: Callable[[str], None] = print) -> dict:
    """Bring a lab up and leave it; SIGINT, SIGTERM and SIGHUP meanwhile remove what was made."""
    with interrupts_as_exceptions():
        return _up(backend, progress)


def _up(backend: str, progress: Callable[[str], None]) -> dict:
    import secrets

    from .backends import choose
    from .topology import load

    lab_id = secrets.token_hex(3)
    _claim(lab_id, progress)         # a second `up` refuses here, before it says or makes anything
    try:
        cls, why = choose(backend)
        progress(why)
        be = cls(lab_id, progress)
        be.persistent = True
        register(lab_id, be.name, persistent=True, ready=False)     # before anything is made
        topo = load()
        if hasattr(be, "plan"):
            topo = load(env=be.plan(topo))
        hosts = be.up(topo)
        state = {"lab_id": lab_id, "backend": be.name, "pid": os.getpid(), "owner": owner.token(),
                 "ready": True,
                 "hosts": {n: {"exec": h.exec_prefix, "addresses": {k: str(v) for k, v in h.addresses.items()},
                               "addresses6": {k: str(v) for k, v in h.addresses6.items()}}
                           for n, h in hosts.items()}}
        with shielded():
            _write_state(state)
            mark_ready(lab_id)
    except BaseException:
        with shielded(note="removing the half-made lab first"):
            clean(lab_id)
            _release(lab_id)
        raise
    for n, h in state["hosts"].items():
        progress(f"  {n:<8} {', '.join([*h['addresses'].values(), *h.get('addresses6', {}).values()])}")
    progress(f"lab {lab_id} is up on {be.name}: `invoke shell client`, then `invoke down`")
    return state


def lab_down(progress: Callable[[str], None] = print) -> None:
    with interrupts_as_exceptions(), _locked():
        state = _state()
        if not state:
            raise UsageError("no lab is up (`invoke up` makes one)")
        if _being_made(state):
            raise UsageError(f"lab {state['lab_id']} is still being brought up (pid {state.get('pid')}); "
                             "wait for `invoke up` to finish, or stop it with Ctrl-C")
        _MADE.add(state["lab_id"])       # what an interrupt now must account for
        with shielded(note="removing the lab first"):
            removed = clean(state["lab_id"])
            STATE.unlink(missing_ok=True)
    what = "left half-made by an `invoke up` that was killed, " if _stale(state) else ""
    progress(f"lab {state['lab_id']} {what}removed ({len(removed.lines())} objects)")


def forget_if_gone() -> str | None:
    """After `invoke clean`: drop the state of an `up` lab that is no more (removed with --all,
    by hand, or a killed `up`'s half-made one); return its id."""
    with _locked():
        state = _state()
        if not state or _being_made(state) or find(state["lab_id"]):
            return None
        STATE.unlink(missing_ok=True)
        return state["lab_id"]


def shell_argv(host: str) -> list[str]:
    state = _state()
    if not state or not state.get("ready", True):
        raise UsageError("no lab is up: run `invoke up` first")
    if host not in state["hosts"]:
        raise UsageError(f"unknown host {host!r}: this lab has {', '.join(state['hosts'])}")
    prefix = list(state["hosts"][host]["exec"])
    if prefix[:2] == ["docker", "exec"]:
        prefix = ["docker", "exec", "-it", *prefix[3:]]
    return [*prefix, "bash"]
