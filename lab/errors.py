"""Errors raised by twlab. Every message is one line a user can act on.

    LabError                      base class; `exit_code` is what the CLI exits with
    ├── UsageError                bad input: unknown scenario, host, sysctl, flag value (exit 2)
    ├── EnvError                  the machine cannot run the lab: no root, no tool, no daemon (exit 2)
    │   ├── ImageError            the host image cannot be found or built
    │   └── NetemMissing          a scenario needs link shaping and this kernel has no sch_netem
    ├── ScenarioSkipped           a scenario cannot show its behaviour in this lab (exit 2): `run all`,
    │   │                         `check` and `matrix` list it as skipped, with the reason
    │   ├── NetemMissing          (also an EnvError, above)
    │   └── CannotShow            the sysctls in force rule out what it observes (its precondition())
    ├── TopologyError             compose.yaml cannot be read or does not describe a lab (exit 2)
    ├── BackendError              bringing hosts up or down failed (exit 2)
    │   └── NamespaceGone         a lab host's network namespace vanished (never re-created)
    ├── ObservationBroken         the lab's own observation broke during a run (a capture ended,
    │                             a host vanished, the lab was stopped): nothing judged (exit 2)
    ├── PeerError                 a peer program died, hung or answered nonsense (exit 2)
    └── WaitTimeout               a protocol event a scenario waited for never came: judged as
                                  a failed run (exit 1), after tear-down, from what was seen

Errors from libraries (netlink, Docker, subprocess) are translated where they are caught:
`raise BackendError(...) from exc`. A failed *check* is not an error: it is a verdict (exit 1).
"""

from __future__ import annotations

import re

__all__ = [
    "LabError",
    "UsageError",
    "EnvError",
    "ImageError",
    "NetemMissing",
    "ScenarioSkipped",
    "CannotShow",
    "TopologyError",
    "BackendError",
    "NamespaceGone",
    "ObservationBroken",
    "PeerError",
    "WaitTimeout",
    "quoted",
    "shortened",
]

QUOTE_LIMIT = 60     # characters of user input a message repeats; the rest is cut


def shortened(line: str, longest: int = 200, limit: int = QUOTE_LIMIT) -> str:
    """*line* with every word longer than *longest* characters cut to *limit*: the command line's
    last guard against repeating 100 KB of input (a scenario, host or path) in a message."""
    return re.sub(rf"\S{{{longest + 1},}}",
                  lambda m: f"{m.group(0)[:limit]}... ({len(m.group(0))} characters)", line)


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """*text* as a message repeats it: repr()'d, and cut after *limit* characters (a 100 KB value
    is not echoed whole)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class LabError(Exception):
    """Base of every twlab error; its message is one line a user can act on."""

    exit_code = 2


class UsageError(LabError):
    """The user asked for something that does not exist or cannot be done."""


class EnvError(LabError):
    """This machine lacks something the lab needs (root, a tool, a daemon, a kernel feature)."""


class ImageError(EnvError):
    """The host image cannot be found or built."""


class ScenarioSkipped(LabError):
    """A scenario that cannot show its behaviour in this lab, found before anything is captured:
    the run stops (exit 2, nothing left behind) and the summaries list it as skipped. *why* (what
    rules it out) and *hint* (what to do) are kept apart for the summaries that show only one."""

    def __init__(self, scenario: str, why: str, hint: str, message: str) -> None:
        self.scenario, self.why, self.hint = scenario, why, hint
        super().__init__(message)


class NetemMissing(ScenarioSkipped, EnvError):
    """A scenario needs netem shaping and this kernel lacks sch_netem (*why*: the lab's probe)."""

    def __init__(self, scenario: str, why: str) -> None:
        hint = f"run it on a kernel with sch_netem, e.g. `invoke vm {scenario}`"
        super().__init__(scenario, why, hint, f"{scenario} needs link shaping, but {why}; {hint}")


class CannotShow(ScenarioSkipped):
    """The sysctls in force rule out what the scenario observes (its precondition() says why, e.g.
    tcp_max_tw_buckets=0 for a scenario that watches a TIME-WAIT): the kernel would do exactly
    what the setting says, and the run would only time out waiting for what cannot come."""

    def __init__(self, scenario: str, why: str) -> None:
        hint = "run it without that setting"
        super().__init__(scenario, why, hint,
                         f"{scenario} cannot show its behaviour with these settings: {why}; {hint}")


class NoIPv6(ScenarioSkipped, EnvError):
    """A run over IPv6 (--family 6) where there is none: a kernel without IPv6, a lab host with
    IPv6 disabled (disable_ipv6), or a compose file without IPv6 prefixes (*why*: which)."""

    def __init__(self, scenario: str, why: str) -> None:
        hint = "run it with --family 4"
        super().__init__(scenario, why, hint, f"{scenario} cannot run over IPv6: {why}; {hint}")


class TopologyError(LabError):
    """compose.yaml cannot be read or does not describe a lab."""


class BackendError(LabError):
    """Bringing lab hosts up or down failed."""


class NamespaceGone(BackendError):
    """A lab host's network namespace is gone (deleted by hand, its container killed): entering
    it is refused, never answered by making a new one."""

    def __init__(self, nspath: str, why: str = "no such file") -> None:
        self.nspath = nspath
        super().__init__(f"network namespace {nspath} is gone ({why})")


class ObservationBroken(LabError):
    """The lab's own observation broke during a run (lab.health): what it saw has a hole, so it
    judges nothing; the message names what broke."""


class PeerError(LabError):
    """A peer program died, hung, or answered something that is not a result."""


class WaitTimeout(LabError):
    """A protocol event the scenario waited for never came (an observation, not a lab fault)."""

    exit_code = 1
