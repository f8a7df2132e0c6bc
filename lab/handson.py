"""A lab to explore by hand: `invoke up`, `invoke shell HOST`, `invoke down`.

The lab outlives the command that made it: its namespaces or containers stay until `invoke down`
(or `invoke clean --all`). What it is, is kept in RUN_DIR/up.state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .cleanup import RUN_DIR, clean, register
from .errors import UsageError

__all__ = ["lab_up", "lab_down", "shell_argv"]

STATE = RUN_DIR / "up.state"     # not *.json: those are the registry's records


def _state() -> dict | None:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return None


def lab_up(backend: str = "auto", progress: Callable[[str], None] = print) -> dict:
    from .backends import choose
    from .topology import load

    if _state():
        raise UsageError(f"a lab is already up ({_state()['lab_id']}); `invoke down` first")
    import secrets

    cls, why = choose(backend)
    progress(why)
    lab_id = secrets.token_hex(3)
    be = cls(lab_id, progress)
    topo = load()
    if hasattr(be, "plan"):
        topo = load(env=be.plan(topo))
    register(lab_id, be.name, persistent=True)
    try:
        hosts = be.up(topo)
    except BaseException:
        clean(lab_id)
        raise
    state = {"lab_id": lab_id, "backend": be.name,
             "hosts": {n: {"exec": h.exec_prefix, "addresses": {k: str(v) for k, v in h.addresses.items()}}
                       for n, h in hosts.items()}}
    STATE.write_text(json.dumps(state, indent=2))
    for n, h in state["hosts"].items():
        progress(f"  {n:<8} {', '.join(h['addresses'].values())}")
    progress(f"lab {lab_id} is up on {be.name}: `invoke shell client`, then `invoke down`")
    return state


def lab_down(progress: Callable[[str], None] = print) -> None:
    state = _state()
    if not state:
        raise UsageError("no lab is up (`invoke up` makes one)")
    removed = clean(state["lab_id"])
    STATE.unlink(missing_ok=True)
    progress(f"lab {state['lab_id']} removed ({len(removed.lines())} objects)")


def shell_argv(host: str) -> list[str]:
    state = _state()
    if not state:
        raise UsageError("no lab is up: run `invoke up` first")
    if host not in state["hosts"]:
        raise UsageError(f"unknown host {host!r}: this lab has {', '.join(state['hosts'])}")
    prefix = list(state["hosts"][host]["exec"])
    if prefix[:2] == ["docker", "exec"]:
        prefix = ["docker", "exec", "-it", *prefix[3:]]
    return [*prefix, "bash"]
