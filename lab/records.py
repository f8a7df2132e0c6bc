"""The typed records of what the lab observes: a socket as sock_diag reports it, and one timer
sample. The bottom layer: the sampler writes them, the timeline carries them, the evidence and the
checks read them by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

__all__ = ["SocketInfo", "TIMER_RESTART_MS", "TimerSample", "endpoint", "four_tuple_key"]


@dataclass(frozen=True)
class SocketInfo:
    """One TCP socket as sock_diag reported it (struct inet_diag_msg)."""

    state: str                  # ESTABLISHED ... TIME_WAIT; "GONE" in the event of its going
    src: str                    # addresses as str(ipaddress.ip_address(...)): "fd77:1a2b:1::10"
    sport: int
    dst: str
    dport: int
    timer: str                  # off, on (retransmission), keepalive, timewait, probe
    expires_ms: int             # the running timer's time left
    retrans: int
    inode: int

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        """"10.0.0.1:41000 -> 10.0.0.2:5000", "[fd77::10]:41000 -> [fd77::2:10]:5000"."""
        return f"{endpoint(self.src, self.sport)} -> {endpoint(self.dst, self.dport)}"

    @classmethod
    def from_json(cls, d: dict) -> SocketInfo:
        """From a stored record; older recordings keep only the 4-tuple and the state, and the
        rest reads as unknown (no timer, 0)."""
        unknown = {"timer": "off", "expires_ms": 0, "retrans": 0, "inode": 0}
        return cls(**{k: d.get(k, unknown.get(k)) for k in cls.__dataclass_fields__})


def endpoint(addr: str, port: int) -> str:
    """An address and a port as text: "10.0.0.1:80", an IPv6 one in brackets (RFC 3986 3.2.2,
    RFC 5952 6): "[fd77:1a2b:1::10]:80"."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def four_tuple_key(src: str, sport: int, dst: str, dport: int) -> str:
    """The text a timer sample names its socket by: "src:sport-dst:dport" (IPv6 addresses in
    brackets: "[fd77::10]:41000-[fd77::2:10]:5000")."""
    return f"{endpoint(src, sport)}-{endpoint(dst, dport)}"


# a timer whose expires grew by more than this between two samples was restarted (more than the
# sampler's jitter between asking and the kernel's answer)
TIMER_RESTART_MS = 50


class TimerSample(NamedTuple):
    """One sock_diag sample of a socket with a running timer. A tuple, so report.json keeps it
    as the list it always was; read it by name."""

    asked: float                # when the lab asked (epoch s)
    key: str                    # four_tuple_key() of the socket, as its host sees it
    state: str
    timer: str
    expires_ms: int
    retrans: int
    answered: float             # when the kernel's answer arrived

    @property
    def due(self) -> tuple[float, float]:
        """When the timer is due: the kernel computed the time left between the asking and the
        answer, so between asked + expires and answered + expires."""
        return (self.asked + self.expires_ms / 1000, self.answered + self.expires_ms / 1000)

    @classmethod
    def of(cls, row) -> TimerSample:
        """From a stored row (older reports have no answer time: the asking time stands in)."""
        row = list(row)
        return cls(*row) if len(row) >= 7 else cls(*row[:6], row[0])
