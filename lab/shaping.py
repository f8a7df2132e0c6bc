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
from .errors import EnvError
from .netns import iproute

__all__ = ["LinkProfile", "probe", "apply", "REQUIRED", "OPTIONAL", "UNUSED"]

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
