"""The lab's watch on its own observation: captures, the sampler, the namespaces and pauses, noted
in lab.health.Health as they break. lab.core.Lab inherits it (it reads the Lab's attributes)."""

from __future__ import annotations

from .errors import LabError
from .health import ns_identity

__all__ = ["Watch"]


class Watch:
    """The watching half of lab.core.Lab."""

    def watch(self) -> None:
        """Note any capture that ended early and any host whose namespace vanished. Called by
        the sampler every 100 ms, and once more before tear-down; never raises."""
        try:
            for name, cap in list(self.captures.items()):
                if not cap.alive():
                    self.health.note("capture", name, f"the capture in {name} ended early (tcpdump "
                                     f"{cap.ended_early}): {name}.pcap misses the rest of the run")
            if self.sampler is not None and not self.sampler.alive():
                self.health.note("sampler", "lab", f"the socket sampler ended early ({self.sampler.ended_early}): "
                                 "the states and timers it saw are lost")
            fcap = self.faults.capture if self.faults is not None else None
            if fcap is not None and not fcap.alive():
                self.health.note("capture", "faults", f"the fault log's capture ended early (tcpdump "
                                 f"{fcap.ended_early}): faults.pcap misses the rest of the run")
            for name, host in list(self.hosts.items()):
                if name in self._ns_ids and ns_identity(host.nspath) != self._ns_ids[name]:
                    self.health.note("namespace", name, f"{name}'s network namespace vanished during "
                                     f"the run ({host.nspath} is gone)")
            if self._pauses is not None and self.sampler is not None:
                for stopped, resumed in self._pauses.pauses(self.sampler.heartbeat):
                    self.health.note("paused", "lab", f"the lab was stopped for {resumed - stopped:.1f} s "
                                     "(SIGSTOP/SIGTSTP, then SIGCONT): nothing was sampled or stepped "
                                     "meanwhile", t=stopped)
        except Exception as exc:          # noqa: BLE001 - a watcher must not kill the sampler
            self.health.note("watch", "lab", f"the lab's watcher failed: {exc}")

    def clock_checked(self) -> None:
        """Once the sampler has sent its observations back: note where the wall clock stepped
        against the kernel's (lab.clockcheck), which breaks every wall-clock time across it.
        Never raises."""
        from .clockcheck import clock_steps

        try:
            if self.sampler is not None:
                for step in clock_steps(self.sampler.cadence.offsets):
                    self.health.note("clock", "lab", step.text, t=step.at)
        except Exception as exc:          # noqa: BLE001 - a watcher must not stop the tear-down
            self.health.note("watch", "lab", f"the lab's clock check failed: {exc}")

    def broken(self, exc: BaseException | None = None) -> LabError | None:
        """An ObservationBroken naming what broke, when something did (checked now); else None."""
        from .errors import ObservationBroken

        if not self._closed:
            self.watch()
        if not self.health:
            return None
        what = self.health.summary()
        if exc is not None:
            what += f"; then the run stopped: {exc}"
        return ObservationBroken(f"{what}; nothing was judged, run it again")
