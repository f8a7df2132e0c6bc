"""Where twlab finds its own files, run from a checkout or installed (`pip install .`).

A checkout (pyproject.toml and tasks.py beside lab/) keeps compose.yaml and images/host/ at its
top and caches under .cache/. The installed package carries the same two files as package data in
lab/data/ - symlinks to them in the repository, the files themselves in the wheel - and caches
under $XDG_CACHE_HOME/twlab (~/.cache/twlab).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE", "CHECKOUT", "data_file", "cache_dir", "require_checkout"]

PACKAGE = Path(__file__).resolve().parent


def _checkout(top: Path) -> Path | None:
    return top if (top / "pyproject.toml").is_file() and (top / "tasks.py").is_file() else None


CHECKOUT = _checkout(PACKAGE.parent)      # None when run from an installed package


def data_file(*parts: str) -> Path:
    """A file the package carries (lab/data/...): in a checkout, the repository's own."""
    return PACKAGE.joinpath("data", *parts).resolve()


def cache_dir() -> Path:
    """Where twlab keeps what it can make again (locks, downloads): not created here."""
    if CHECKOUT is not None:
        return CHECKOUT / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twlab"


def require_checkout(what: str) -> Path:
    """The checkout, or UsageError saying that *what* needs one."""
    from .errors import UsageError

    if CHECKOUT is None:
        raise UsageError(f"{what} works from a checkout of the twlab repository (git clone, then "
                         f"scripts/setup), not from the installed package at {PACKAGE}")
    return CHECKOUT
