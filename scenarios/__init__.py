"""The scenario catalog: one behaviour per module, named in kebab-case (``lost-ack`` is
``scenarios/lost_ack.py``), each ending in one ``SCENARIO = lab.scenario.Scenario(...)``: the
contract is written once, in lab/scenario.py. Modules whose name starts with ``_`` are shared
steps and judgements, not scenarios.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pkgutil
from pathlib import Path
from types import ModuleType

from lab.errors import UsageError
from lab.scenario import Scenario
from lab.words import closest

__all__ = ["catalog", "find", "get", "names", "listing"]


def names() -> list[str]:
    """The catalog's names from the module names alone (cheap: imports nothing)."""
    return list(_names(tuple(__path__)))


@functools.cache
def _names(path: tuple[str, ...]) -> tuple[str, ...]:
    # listed once a process: a run asks several times, and each listing stats every file of the
    # directory (7 listings, 0.8 s of a lost-ack column in a TCG guest, over 9p)
    return tuple(sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(list(path))
                        if not m.name.startswith("_")))


def catalog() -> dict[str, Scenario]:
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        sc = _scenario(importlib.import_module(f"{__name__}.{info.name}"))
        out[sc.name] = sc
    return out


def find(name: str) -> Scenario | None:
    """Scenario *name*, importing its module alone (a run needs one, and the whole catalog with
    its judges costs 45-60 ms of a run's start); None when no module has that name."""
    if name not in names():
        return None
    return _scenario(importlib.import_module(f"{__name__}.{name.replace('-', '_')}"))


def get(name: str) -> Scenario:
    found = find(name)
    if found is not None:
        return found
    cat = catalog()
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


LISTED = ("intent", "shaping", "link")       # what `invoke list` prints of each scenario
_HERE = Path(__file__).resolve().parent


def listing() -> dict[str, dict]:
    """name -> the LISTED fields, for `invoke list`: read from an index in lab.paths.cache_dir()
    while every file it was made from (this package's modules, lab/scenario.py) has the size and
    mtime it had then, else made from catalog() and saved. Importing the catalog (every scenario
    and its judges) costs 45-60 ms of a `list` that Invoke's own import already brings to about
    0.13 s; reading the index about 1 ms."""
    from lab.paths import cache_dir

    stamp = _stamp()
    index = cache_dir() / "catalog-index.json"
    try:
        kept = json.loads(index.read_text())
        if kept.get("stamp") == stamp:
            return kept["scenarios"]
    except (OSError, ValueError, AttributeError):
        pass
    made = {name: {k: getattr(sc, k) for k in LISTED} for name, sc in catalog().items()}
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "scenarios": made}))
        tmp.replace(index)
    except OSError:
        pass                        # a read-only checkout: list from the catalog every time
    return made


def _stamp() -> list[list]:
    """The size and mtime of every file the listing comes from."""
    import lab.scenario

    files = sorted(_HERE.rglob("*.py")) + [Path(lab.scenario.__file__)]
    return [[str(f), st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]]
