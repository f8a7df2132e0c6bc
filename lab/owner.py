"""Who owns a lab, as the lab's own objects say it.

Every container and Docker network of a lab carries the labels ``org.twlab.owner=<pid>.<start>``
(the process that made it, and that process's start time in clock ticks since boot, field 22 of
/proc/PID/stat, so a reused pid is not mistaken for the owner) and, for a lab made by
``invoke up``, ``org.twlab.up=1``. A namespace carries the same two facts as the alias of its
loopback interface (``ip -n NAME link show lo``: ``alias twlab owner=<pid>.<start> up``), set the
moment it is made. So `invoke clean` can tell a live lab from a leftover whichever registry
directory it reads (lab.cleanup), and the registry is only a second witness.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["OWNER_LABEL", "UP_LABEL", "Mark", "token", "alive", "labels", "alias", "parse_alias"]

OWNER_LABEL = "org.twlab.owner"
UP_LABEL = "org.twlab.up"
_ALIAS = "twlab owner="


def start_time(pid: int) -> int | None:
    """When process *pid* started (clock ticks since boot), or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()      # the command name may hold spaces and ')'
    try:
        return int(fields[19]) if fields[0] != "Z" else None   # a zombie has ended
    except (IndexError, ValueError):
        return None


def token(pid: int | None = None) -> str:
    """This process (or *pid*) as an owner: "<pid>.<start time>"."""
    pid = pid or os.getpid()
    return f"{pid}.{start_time(pid) or 0}"


def alive(owner: str | None) -> bool:
    """Whether the process an owner token names still runs (the same process, not a reused pid)."""
    try:
        pid, start = (int(x) for x in str(owner).split("."))
    except ValueError:
        return False
    return pid > 0 and start_time(pid) == start


@dataclass(frozen=True)
class Mark:
    """What one object of a lab says about its owner."""

    owner: str | None = None     # None: no mark (a lab made before marks, or by hand)
    up: bool = False             # made by `invoke up`: kept until `invoke down` or `clean --all`


def labels(owner: str | None = None, up: bool = False) -> dict[str, str]:
    """The Docker labels that mark an object as owned by *owner* (default: this process)."""
    return {OWNER_LABEL: owner or token(), **({UP_LABEL: "1"} if up else {})}


def from_labels(lbls: dict[str, str] | None) -> Mark:
    lbls = lbls or {}
    return Mark(lbls.get(OWNER_LABEL), lbls.get(UP_LABEL) == "1")


def alias(owner: str | None = None, up: bool = False) -> str:
    """The loopback alias that marks a namespace as owned by *owner* (default: this process)."""
    return f"{_ALIAS}{owner or token()}" + (" up" if up else "")


def parse_alias(text: str | None) -> Mark:
    if not text or not text.startswith(_ALIAS):
        return Mark()
    words = text[len(_ALIAS):].split()
    return Mark(words[0] if words else None, "up" in words[1:])
