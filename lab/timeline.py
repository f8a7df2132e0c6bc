"""One timeline of what happened in a run: peer calls, socket state changes, faults, packets."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .records import SocketInfo

__all__ = ["Event", "Timeline"]


@dataclass(frozen=True)
class Event:
    t: float                  # seconds since the epoch (the same clock as the pcaps)
    host: str
    kind: str                 # "peer", "state", "timer", "fault", "packet", "note"
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def socket(self) -> SocketInfo | None:
        """The socket a "state" or "timer" event is about, as sock_diag reported it."""
        raw = self.data.get("socket")
        return SocketInfo.from_json(raw) if raw else None

    @property
    def state(self) -> str | None:
        """The state a "state" event reports ("GONE" when the socket went)."""
        raw = self.data.get("socket")
        return raw.get("state") if raw else None

    def to_json(self, t0: float) -> dict[str, Any]:
        d = asdict(self)
        d["t_rel_s"] = round(self.t - t0, 6)
        return d


class Timeline:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, t: float, host: str, kind: str, text: str, **data: Any) -> Event:
        ev = Event(t, host, kind, text, data)
        with self._lock:
            self._events.append(ev)
        return ev

    def extend(self, events: list[Event]) -> None:
        with self._lock:
            self._events.extend(events)

    def events(self, kind: str | None = None, host: str | None = None) -> list[Event]:
        with self._lock:
            evs = sorted(self._events, key=lambda e: e.t)
        return [e for e in evs if (kind is None or e.kind == kind) and (host is None or e.host == host)]
