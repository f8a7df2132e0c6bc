"""A package in sys.modules without its ``__init__`` run: lab/netlink.py (pyroute2) and
lab/packetlib.py (dpkt) import only the submodules the lab uses, where the packages' own
``__init__`` imports every one of theirs (each module's docstring has the figures). The package
object is made from its own spec, ``__path__`` intact, so every import inside the package resolves
as usual; only the names its ``__init__`` would have re-exported are missing. A package already
imported whole (a test, a user's script) is left as it is."""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["bare_package"]


def bare_package(name: str) -> None:
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError(f"{name} is not installed (scripts/setup installs it)")
        sys.modules[name] = importlib.util.module_from_spec(spec)
