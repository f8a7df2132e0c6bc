"""A lab's tear-down: every step tried, in order, whatever failed before; no signal cuts it
short (lab.interrupts.shielded: one that arrives meanwhile is raised once the lab is gone); and it
checks that nothing of the lab is left before forgetting it. Lab (lab.core) inherits it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import EnvError, LabError, NamespaceGone
from .interrupts import shielded, stop
from .nsops import read_counters

if TYPE_CHECKING:
    from .backends.base import Host

__all__ = ["TearDown"]


class TearDown:
    """The tear-down half of lab.core.Lab (it reads the Lab's attributes)."""

    def ensure_closed(self, failing: type | None = None) -> None:
        """close() once more, for a `finally` around `with lab:` - in case a signal landed as
        __exit__ began, before it could close (closing twice is harmless)."""
        if not self._closed:
            self._close_surely(failing)

    def _close_surely(self, failing: type | None) -> None:
        """close(), also when a signal lands in the moment before close() shields itself (then it
        is closed again, and the signal raised after). When the block is *failing* already, tear
        down fully but let the first error speak."""
        pending: BaseException | None = None
        for _ in range(5):
            try:
                self.close()
                break
            except KeyboardInterrupt as exc:
                if self._closed:             # raised after the tear-down: the lab is gone
                    pending = exc
                    break
                pending = exc                # before it began: the lab is still there
            except BaseException as teardown:
                if not failing:
                    raise
                self.progress(f"while tearing down after {failing.__name__}: {teardown}")
                break
        if pending is not None and not failing:
            raise pending

    def close(self) -> None:
        """Stop everything and remove every host; safe to call twice. No signal cuts it short: one
        that arrives meanwhile is raised (as Interrupted) once the lab is gone. Raises the first
        error only after every step has been tried."""
        errors: list[BaseException] = []
        with shielded(note="removing the lab first; it takes a few seconds", hold_only=True) as shield:
            if not self._closed:
                self._closed = True
                if self.hosts:                # something was brought up (a refusal made nothing)
                    self.progress(f"lab {self.lab_id}: tearing down")
                errors = self._tear_down()
        if errors:
            first = errors[0]
            if isinstance(first, (LabError, KeyboardInterrupt)):
                raise first
            raise EnvError(f"tear-down failed: {first}") from first
        if shield.signum is not None:
            stop(shield.signum)

    def _tear_down(self) -> list[BaseException]:
        errors: list[BaseException] = []

        def step(fn: Callable[[], object]) -> None:
            try:
                fn()
            except BaseException as exc:   # keep tearing down; report afterwards
                errors.append(exc)

        t = time.monotonic()
        if self.sampler is not None:
            step(self.sampler.stop)       # its last look is a whole dump (lab.sampling)
            step(self.clock_checked)
        self.watch()                      # what broke, before the captures are stopped on purpose
        if self._pauses is not None:
            step(self._pauses.close)
        for name, host in self.hosts.items():
            step(lambda h=host, n=name: self._read_counters_after(n, h))
        for peer in self.peers.values():          # all asked to exit, then each waited for
            step(peer.ask_to_exit)
        for peer in self.peers.values():
            step(peer.stop)
        if self.faults is not None:
            step(self.faults.disarm)
        captures = self.all_captures()           # all asked to end, then each waited for
        for cap in captures:
            step(cap.interrupt)
        for cap in captures:
            step(cap.stop)
        if self.faults is not None:
            step(self.faults.stop)                # its log read (lab.faults)
        for view in self.views.values():
            step(view.close)
        for sandbox in getattr(self, "sandboxes", {}).values():
            step(sandbox.stop)        # before its namespace goes (its runsc commands run there)
        if self.backend is not None:
            step(self.backend.down)
            step(self._removed)
        self.timings["tear_down_s"] = time.monotonic() - t
        return errors

    def _removed(self) -> None:
        """Check that nothing of the lab is left (a second pass removes what the first missed);
        only then forget it. What stays registered is removed by the next run's start."""
        from . import cleanup

        # a namespace lab makes no Docker objects: asking the daemon took 0.12 s of each netns run
        docker = self.backend is None or self.backend.name != "netns"
        if cleanup.find(self.lab_id, docker=docker):
            cleanup.clean(self.lab_id)
        left = cleanup.find(self.lab_id, docker=docker)
        if left:
            raise EnvError(f"lab {self.lab_id} could not be removed: {', '.join(left.lines())}; "
                           "`invoke clean` removes it")
        cleanup.unregister(self.lab_id)

    def _read_counters_after(self, name: str, host: Host) -> None:
        try:
            self.counters_after[name] = read_counters(host.nspath)
        except NamespaceGone:
            self.health.note("namespace", name, f"{name}'s network namespace vanished during the run "
                             f"({host.nspath} is gone): its counters cannot be read")
