"""The programs of this machine the lab runs, checked before it makes anything: a missing one is
named with the others in one line (exit 2), not found halfway through a bring-up."""

from __future__ import annotations

import shutil

from .errors import EnvError

__all__ = ["TOOLS", "missing_tools", "require_tools"]

# program -> the Debian package that has it (lab.capture, faults, nsops, sysctls, backends)
TOOLS = {"ip": "iproute2", "nft": "nftables", "tcpdump": "tcpdump", "nsenter": "util-linux",
         "setpriv": "util-linux", "unshare": "util-linux"}
BACKEND_TOOLS = {"docker": {"docker": "docker.io"}}     # the peers run through `docker exec`


def missing_tools(backend: str) -> list[str]:
    """The programs *backend*'s labs run that are not on PATH, in TOOLS' order."""
    wanted = {**TOOLS, **BACKEND_TOOLS.get(backend, {})}
    return [tool for tool in wanted if shutil.which(tool) is None]


def require_tools(backend: str) -> None:
    """EnvError naming every missing program and the packages that have them."""
    missing = missing_tools(backend)
    if not missing:
        return
    wanted = {**TOOLS, **BACKEND_TOOLS.get(backend, {})}
    packages = ", ".join(dict.fromkeys(wanted[t] for t in missing))
    raise EnvError(f"this machine lacks {', '.join(missing)}, which the lab runs: install {packages} "
                   "(Debian's names; scripts/setup installs them on Debian and Ubuntu, and says the "
                   "command on Fedora, Arch and Alpine)")
