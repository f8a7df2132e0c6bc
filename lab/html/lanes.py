"""Each end's socket states as lanes: what sock_diag saw, and where each change is known to lie.

A state event says "this sample saw state S" (answered at t) and names the sample before it
(since), which still saw the old state, or, for a socket first found, the dump before, which did
not list it. So S is certain from t on, until the sample before the next change; each change lies
somewhere in (since, t] and is drawn as that interval, never as a moment. A socket first found in
FIN_WAIT1 was not seen ESTABLISHED: its lane starts with the interval it appeared in, and nothing
is drawn before it. Older recordings name no "since": the sample before is then taken as the
previous event's (a bound as loose as the events are far apart), or the lane's start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..ladder import Row

__all__ = ["Lane", "Span", "Change", "lanes"]


@dataclass(frozen=True)
class Span:
    state: str
    t0: float               # the sample that saw it
    t1: float | None        # the sample before the next change (None: still so when the run ended)
    text: str = ""          # as the ladder's row says it ("TIME_WAIT (60.0 s)")


@dataclass(frozen=True)
class Change:
    t0: float | None        # the sample before (None: no earlier sample known)
    t1: float               # the sample that saw the new state
    before: str | None      # None: the socket was first found here
    after: str              # "GONE" when it went


@dataclass
class Lane:
    host: str
    socket: str             # "10.77.1.10:47322-10.77.2.10:5000", as the host sees it
    spans: list[Span] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def lanes(rows: list[Row], host: str) -> list[Lane]:
    """*host*'s sockets, one lane each, in the order they were first seen."""
    out: dict[str, Lane] = {}
    for r in sorted((r for r in rows if r.kind == "state" and r.host == host), key=lambda r: r.t):
        s = r.segment
        key = f"{s.get('src')}:{s.get('sport')}-{s.get('dst')}:{s.get('dport')}"
        lane = out.setdefault(key, Lane(host, key))
        state = s.get("state", r.text.split(" ")[0])
        alive = bool(lane.changes) and lane.changes[-1].after != "GONE"
        last = lane.spans[-1] if alive else None     # a 4-tuple used again starts afresh
        since = r.since
        if since is None and last is not None:
            since = last.t0                     # an older recording: the previous event's answer
        if last is not None:
            lane.spans[-1] = Span(last.state, last.t0, max(last.t0, since if since is not None else r.t), last.text)
        lane.changes.append(Change(since, r.t, last.state if last else None, state))
        if state != "GONE":
            lane.spans.append(Span(state, r.t, None, r.text))
    return list(out.values())
