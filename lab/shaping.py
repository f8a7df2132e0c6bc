"""Link shaping with netem (pyroute2 tc), on the router's egress toward each end.

A direction ``client->server`` is shaped on the router's interface toward the server, so each
end's capture shows what really crossed the "network". Units in names (``delay_ms``, ``loss_pct``);
pyroute2's units (microseconds, percent) appear in one place, ``_netem_args``.

Many kernels have no sch_netem (this machine's cloud kernel, some WSL2 and Docker Desktop
kernels). ``probe`` finds out inside a lab namespace - never the host's - and the lab says so in
one line and runs whatever does not need shaping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pyroute2.netlink.exceptions import NetlinkError

from .backends.base import Host
from .errors import EnvError, UsageError
from .netns import iproute

__all__ = ["LinkProfile", "Shaping", "parse_shape", "probe", "apply", "REQUIRED", "OPTIONAL", "UNUSED"]

REQUIRED, OPTIONAL, UNUSED = "required", "optional", "unused"


@dataclass(frozen=True)
class LinkProfile:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0
    rate_kbit: int | None = None

    def __bool__(self) -> bool:
        return any(v for v in asdict(self).values())

    def _netem_args(self) -> dict:
        args = {"delay": int(self.delay_ms * 1000), "jitter": int(self.jitter_ms * 1000),
                "loss": self.loss_pct, "duplicate": self.duplicate_pct}
        if self.reorder_pct:
            args["prob_reorder"] = self.reorder_pct
        if self.rate_kbit:
            args["rate"] = f"{self.rate_kbit}kbit"
        return args


@dataclass(frozen=True)
class Shaping:
    """A profile for one direction of the path: packets from *src* to *dst*."""

    src: str
    dst: str
    profile: LinkProfile

    def __str__(self) -> str:
        fields = ",".join(f"{k}={v}" for k, v in asdict(self.profile).items() if v)
        return f"{self.src}->{self.dst}:{fields}"


def parse_shape(text: str) -> list[Shaping]:
    """"client->server:delay_ms=50,jitter_ms=5" (one direction) or "both:delay_ms=50"."""
    where, sep, spec = text.partition(":")
    usage = ("--shape: write SRC->DST:KEY=VALUE,... or both:KEY=VALUE,..., e.g. "
             "client->server:delay_ms=50,jitter_ms=5; keys: " + ", ".join(LinkProfile.__dataclass_fields__))
    if not sep or not spec:
        raise UsageError(usage)
    values = {}
    for item in spec.split(","):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or key not in LinkProfile.__dataclass_fields__:
            raise UsageError(f"--shape {text!r}: unknown setting {key!r}; " + usage.split("; ")[1])
        try:
            number = float(val)
        except ValueError:
            raise UsageError(f"--shape {text!r}: {key} takes a number, not {val!r}") from None
        if number < 0 or (key.endswith("_pct") and number > 100):
            raise UsageError(f"--shape {text!r}: {key}={val} is out of range")
        values[key] = int(number) if key == "rate_kbit" else number
    profile = LinkProfile(**values)
    if where.strip() == "both":
        return [Shaping("client", "server", profile), Shaping("server", "client", profile)]
    src, arrow, dst = where.partition("->")
    if not arrow or not src.strip() or not dst.strip():
        raise UsageError(usage)
    return [Shaping(src.strip(), dst.strip(), profile)]


def probe(host: Host) -> tuple[bool, str]:
    """Can this kernel do netem? Tried on the loopback of a lab host's namespace."""
    with iproute(host.nspath) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        try:
            ipr.tc("add", "netem", index=lo, handle="1:", delay=0)
        except NetlinkError as exc:
            return False, f"netem is not available on this kernel ({exc.args[-1] if exc.args else exc})"
        ipr.tc("del", index=lo, handle="1:")
    return True, "netem available"


def apply(host: Host, ifname: str, profile: LinkProfile) -> None:
    with iproute(host.nspath) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.tc("replace", "netem", index=idx, handle="1:", **profile._netem_args())
        except NetlinkError as exc:
            raise EnvError(f"cannot shape {host.name}:{ifname} with netem: {exc}") from exc
