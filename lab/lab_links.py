"""The Lab's links: shaping its path with netem while it runs (lab.netem does the kernel's side).
A mixin of lab.core.Lab, which holds the topology, hosts, netem probe and shaping it reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import netem
from .errors import EnvError, UsageError

if TYPE_CHECKING:
    from .shaping import LinkProfile, Shaping

__all__ = ["Links"]


class Links:
    def add_shaping(self, shapings: list[Shaping]) -> None:
        """Shape the running lab's path (a scenario's own link profile); like --shape, it needs
        netem."""
        if not self.netem.available:
            raise EnvError(f"link shaping was asked for, but {self.netem.reason}")
        for sh in shapings:
            self.topology.host(sh.src), self.topology.host(sh.dst)
        self._shape(shapings)
        self.shaping += list(shapings)

    def reshape(self, src: str, dst: str, profile: LinkProfile) -> None:
        """Change the netem profile of one shaped direction while the lab runs (e.g. turn loss on
        after the connections are open); the timeline notes it."""
        if not any((sh.src, sh.dst) == (src, dst) for sh in self.shaping):
            raise UsageError(f"{src}->{dst} is not shaped in this lab")
        from .shaping import Shaping

        new = Shaping(src, dst, profile)
        self._shape([new], pin=False)                                 # pinned when first shaped
        self.note(self.topology.router.name, f"link {new}")

    def link(self, src: str, dst: str) -> dict | None:
        """The netem qdisc shaping packets from *src* to *dst*, as the kernel reports it (None
        when that direction is not shaped)."""
        router = self.topology.router if self.topology else None
        return netem.path_qdisc(self.hosts[router.name], self.hosts[dst]) if router else None

    def _shape(self, shapings: list[Shaping], pin: bool = True) -> None:
        router = self.topology.router
        if router is None:
            raise UsageError("shaping needs a router host (a service with net.ipv4.ip_forward: 1)")
        netem.shape_path(self.hosts[router.name], self.hosts, shapings, self.progress, pin=pin)
