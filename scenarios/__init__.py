"""The scenario catalog: one behaviour per module, named in kebab-case (``lost-ack`` is
``scenarios/lost_ack.py``). A scenario module defines:

    NAME     kebab-case name        INTENT   one line: what it shows and the rule it checks
    SHAPING  required|optional|unused (lab.shaping)
    PORT     the port whose sockets the sampler follows
    SYSCTLS  optional {host: {key: value}}: the scenario's own settings, applied before --sysctl
    intent(sysctls) -> str           optional: the intent for the sysctls in force, when they change
                                     what the run shows (lost-ack with tcp_max_tw_buckets=0)
    precondition(sysctls) -> str | None
                                     optional: why the scenario cannot show its behaviour with the
                                     sysctls in force (five-tuple with tcp_max_tw_buckets=0: no
                                     TIME-WAIT to hold the 4-tuple), or None. Asked right after
                                     bring-up, before anything is captured; a reason ends the run
                                     as skipped (lab.errors.CannotShow)
    run(lab) -> dict                 the steps, in order, returning facts the checks need
    check(ev: lab.evidence.Evidence) -> list[lab.verdict.Check]
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from types import ModuleType

from lab.errors import UsageError

__all__ = ["catalog", "get", "intent", "precondition"]


def catalog() -> dict[str, ModuleType]:
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        out[mod.NAME] = mod
    return out


def get(name: str) -> ModuleType:
    cat = catalog()
    if name in cat:
        return cat[name]
    plain = name.strip().lower().replace("_", "-")
    close = [plain] if plain in cat else difflib.get_close_matches(plain, cat, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown scenario {name!r}: {hint}`invoke list` shows them all")


def intent(mod: ModuleType, sysctls: dict[str, dict[str, str]]) -> str:
    """What a run of scenario *mod* shows with these sysctls in force (host -> key -> value, as
    read back from the lab's hosts): its intent() when it has one, else its INTENT."""
    fn = getattr(mod, "intent", None)
    return fn(sysctls) if fn is not None else mod.INTENT


def precondition(mod: ModuleType, sysctls: dict[str, dict[str, str]]) -> str | None:
    """Why a run of scenario *mod* cannot show its behaviour with these sysctls in force (as read
    back from the lab's hosts), or None: its precondition() when it has one."""
    fn = getattr(mod, "precondition", None)
    return fn(sysctls) if fn is not None else None
