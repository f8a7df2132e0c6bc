"""Showing the lab's long waits to the people watching: a live countdown on a terminal, a line
about every 10 s otherwise (a CI log), and one line when the wait ends.

lab.core.Lab.wait_for polls as it always did; when the lab has a WaitView it also calls
``tick()`` between polls. A wait that says when its event is due (``due``: the earliest and latest
wall-clock time, e.g. TIME-WAIT's 60 s plus the timer wheel's slack) is shown from its start,
unless it is due within *quiet_s*; any other wait is shown once it has lasted *quiet_s*. Showing
never changes what is awaited or for how long: ``tick()`` renders at most 4 times a second on a
terminal and once per *every_s* on a pipe, and does nothing in between.

    waiting up to 75 s for A's TIME_WAIT to expire (60 s): due in 58.9-61.0 s
    ... 10 s: A's TIME_WAIT to expire (60 s): due in 48.9-51.0 s
    A's TIME_WAIT to expire (60 s): came after 61.0 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.live import Live
    from rich.text import Text

__all__ = ["WaitView", "Shown", "NOT_SHOWN"]

REFRESH_S = 0.25          # a terminal's countdown: redrawn at most this often


class Shown:
    """One wait as it is shown (or not): ``tick()`` between polls, ``close(came)`` at the end."""

    def tick(self) -> None:
        """Between two polls: redraw or print when it is time to."""

    def close(self, came: bool | None) -> None:
        """The wait ended: *came* True when the awaited event came, False when it timed out,
        None when something else ended it (an interrupt, an error)."""


NOT_SHOWN = Shown()


class WaitView:
    """Where and how waits are shown. *stream* (default stdout) decides: a terminal gets a live
    line (rich), anything else a line every *every_s* seconds. *clock* is the wall clock (the
    one ``due`` is given in)."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = 10.0, quiet_s: float = 5.0,
                 live: bool | None = None, clock: Callable[[], float] = time.time) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.every_s, self.quiet_s, self.clock = every_s, quiet_s, clock
        self.live = _isatty(self.stream) if live is None else live

    def wait(self, what: str, timeout_s: float, due: tuple[float, float] | None = None) -> Shown:
        return _Wait(self, what, timeout_s, due)


class _Wait(Shown):
    def __init__(self, view: WaitView, what: str, timeout_s: float, due: tuple[float, float] | None) -> None:
        self.view, self.what, self.timeout_s, self.due = view, what, timeout_s, due
        self.t0 = view.clock()
        self.last: float | None = None          # when it was last drawn or printed
        self.live: Live | None = None
        self.started = False

    def _worth_showing(self, now: float) -> bool:
        if self.due is not None:
            return self.due[1] - self.t0 >= self.view.quiet_s
        return now - self.t0 >= self.view.quiet_s

    def tick(self) -> None:
        now = self.view.clock()
        if not self.started:
            if not self._worth_showing(now):
                return
            self._start(now)
            return
        if now - self.last >= (REFRESH_S if self.live else self.view.every_s):
            self.last = now
            if self.live:
                self.live.update(self._text(now), refresh=True)
            else:
                self._print(f"... {now - self.t0:.0f} s: {self._state(now)}")

    def _start(self, now: float) -> None:
        self.started, self.last = True, now
        if self.view.live:
            from rich.console import Console  # rich when a wait is shown (lab.aside)
            from rich.live import Live

            console = Console(file=self.view.stream)
            self.live = Live(self._text(now), console=console, auto_refresh=False, transient=True)
            self.live.start(refresh=True)
        else:
            self._print(f"waiting up to {self.timeout_s:.0f} s for {self._state(now)}")

    def _text(self, now: float) -> Text:
        """The live line: one line, cut to the terminal's width rather than wrapped."""
        from rich.text import Text

        return Text(self._line(now), "cyan", no_wrap=True, overflow="ellipsis")

    def _line(self, now: float) -> str:
        return (f"waiting {now - self.t0:4.0f} s (gives up at {self.timeout_s:.0f} s) "
                f"for {self._state(now)}")

    def _state(self, now: float) -> str:
        if self.due is None:
            return self.what
        lo, hi = self.due[0] - now, self.due[1] - now
        if lo > 0:
            return f"{self.what}: due in {lo:.1f}-{hi:.1f} s"
        if hi > 0:
            return f"{self.what}: due now, at most {hi:.1f} s more"
        return f"{self.what}: {-hi:.1f} s later than due"

    def close(self, came: bool | None) -> None:
        if not self.started:
            return
        if self.live is not None:
            self.live.stop()
        took = self.view.clock() - self.t0
        self._print(f"{self.what}: came after {took:.1f} s" if came else
                    f"{self.what}: did not come within {self.timeout_s:.0f} s" if came is False else
                    f"{self.what}: stopped waiting after {took:.1f} s")

    def _print(self, line: str) -> None:
        self.view.stream.write(line + "\n")
        self.view.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
