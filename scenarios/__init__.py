"""The scenario catalog: one behaviour per module, named in kebab-case (``lost-ack`` is
``scenarios/lost_ack.py``), each ending in one ``SCENARIO = lab.scenario.Scenario(...)``: the
contract is written once, in lab/scenario.py. Modules whose name starts with ``_`` are shared
steps and judgements, not scenarios.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from lab.errors import UsageError
from lab.scenario import Scenario
from lab.words import closest

__all__ = ["catalog", "get", "names"]


def names() -> list[str]:
    """The catalog's names from the module names alone (cheap: imports nothing)."""
    here = Path(__file__).resolve().parent
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(here)])
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
    if sc is None:
        return _legacy(mod)
    if not isinstance(sc, Scenario) or mod.__name__.rsplit(".", 1)[1] != sc.name.replace("-", "_"):
        raise TypeError(f"{mod.__name__}: SCENARIO must be a lab.scenario.Scenario named after the module")
    return sc


def _legacy(mod: ModuleType) -> Scenario:
    """A module written before lab.scenario.Scenario (module attributes): read once, here."""
    from lab.matrixkeys import KEY_VALUES, RANDOM_COUNTS

    def focus(report: dict) -> tuple[int, str] | None:
        values = next((c["values"] for c in report.get("checks", [])
                       if (c.get("values") or {}).get("ladder_port") is not None), {})
        port = values.get("ladder_port")
        return (port, values.get("ladder_why")) if port is not None else None

    return Scenario(
        name=mod.NAME, intent=mod.INTENT, run=mod.run, checks=(),
        shaping=mod.SHAPING, port=mod.PORT, sysctls=getattr(mod, "SYSCTLS", {}),
        parallel_safe=getattr(mod, "PARALLEL_SAFE", True), link=tuple(getattr(mod, "SHAPE", ())),
        intent_for=getattr(mod, "intent", None), precondition=getattr(mod, "precondition", None),
        key_values=tuple(KEY_VALUES.get(mod.NAME, ())), random_counts=mod.NAME in RANDOM_COUNTS,
        ladder_focus=focus, summary=getattr(mod, "summary", None), legacy_check=mod.check)
