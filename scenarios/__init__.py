"""The scenario catalog: one behaviour per module, named in kebab-case (``lost-ack`` is
``scenarios/lost_ack.py``), each ending in one ``SCENARIO = lab.scenario.Scenario(...)``: the
contract is written once, in lab/scenario.py. Modules whose name starts with ``_`` are shared
steps and judgements, not scenarios.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from lab.errors import UsageError
from lab.scenario import Scenario
from lab.words import closest

__all__ = ["catalog", "get", "names"]


def names() -> list[str]:
    """The catalog's names from the module names alone (cheap: imports nothing)."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_"))


def catalog() -> dict[str, Scenario]:
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        sc = _scenario(importlib.import_module(f"{__name__}.{info.name}"))
        out[sc.name] = sc
    return out


def get(name: str) -> Scenario:
    cat = catalog()
    if name in cat:
        return cat[name]
    plain = name.strip().lower().replace("_", "-")
    close = [plain] if plain in cat else closest(plain, cat, n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown scenario {name!r}: {hint}`invoke list` shows them all")


def _scenario(mod: ModuleType) -> Scenario:
    sc = getattr(mod, "SCENARIO", None)
    if not isinstance(sc, Scenario) or mod.__name__.rsplit(".", 1)[1] != sc.name.replace("-", "_"):
        raise TypeError(f"{mod.__name__}: a scenario module ends with SCENARIO = lab.scenario.Scenario(...) "
                        "named after the module")
    return sc
