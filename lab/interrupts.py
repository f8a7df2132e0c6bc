"""Signals as exceptions, and removals no signal can cut short.

A run turns Ctrl-C (SIGINT), SIGTERM and SIGHUP into `Interrupted` (a KeyboardInterrupt), so
every `finally` and `with` removes what it made. A removal must then finish: inside `shielded()`
a signal is only recorded, and raised when the block ends - so a second Ctrl-C, 0.3 s after the
first, waits for the tear-down instead of leaving half a lab behind. And only the first signal
stops a run: one that comes while it is stopping (unwinding through its `finally` blocks, where
a tear-down may not have shielded itself yet) is only noted. Short steps that make
something are shielded too (each request to the Docker daemon, each namespace being made): a
signal never lands between the daemon making an object and the lab learning that it exists.

A SIGINT the process was started with ignored (a background job of a non-interactive shell)
stays ignored, as Unix has it.

Python runs a signal's handler at the next bytecode, wherever that is - also where an exception
cannot propagate: a fork's hooks (logging's `_releaseLock` runs after every fork, and the lab
forks for pyroute2, its samplers and its workers), a `__del__`, a weakref's callback. There the
Interrupted would be printed as "Exception ignored" and lost, and the run would go on. So an
Interrupted that reaches `sys.unraisablehook` is delivered again, to the next line that can raise
it (the clean-clone CI of 91440ec caught one lost in logging's fork hook).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["Interrupted", "interrupts_as_exceptions", "shielded", "shield_calls", "stop", "signal_name",
           "signal_of", "SIGNALS", "ignore_while_exiting"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Interrupted(KeyboardInterrupt):
    """A signal that stops the run, raised like Ctrl-C so every `finally` and `with` tears down."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    def __reduce__(self):             # crosses process boundaries (a batch's workers) intact
        return (Interrupted, (self.signum,))


def signal_name(exc: BaseException | None) -> str:
    """Which signal an interrupt came from, for people: "Ctrl-C (SIGINT)", "SIGTERM", ..."""
    signum = getattr(exc, "signum", signal.SIGINT)
    return _NAMES.get(signum, signal.Signals(signum).name)


def signal_of(exc: BaseException | None) -> str:
    """The signal's own name, for machines: "SIGINT", "SIGTERM", ..."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _Stop:
    depth = 0                     # nested interrupts_as_exceptions() blocks
    signum: int | None = None     # the signal this process is already stopping for
    quiet = False                 # a batch's worker: its batch speaks to the user


def _note(text: str) -> None:
    if not _Stop.quiet:
        try:   # not print(): a handler may run in the middle of another write to stderr
            os.write(2, f"twlab: {text}\n".encode())
        except OSError:
            pass


def stop(signum: int) -> None:
    """Raise Interrupted for *signum* - unless this process is already stopping: one signal
    stops a run, and those after it must not interrupt the stopping (its `finally` blocks)."""
    if _Stop.signum is not None and _Stop.depth:
        return
    if _Stop.depth:
        _Stop.signum = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise Interrupted (outside a shield) - the
    first of them; one that comes while the run is stopping only says so."""
    if not _main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:        # a forked child (a library's helper): just go
            os._exit(128 + signum)
        if _Stop.signum is not None:
            _note(f"{_NAMES.get(signum, signum)}: already stopping; the lab is removed first")
            return
        stop(signum)

    old = {}
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, handler)
    old_hook = sys.unraisablehook
    if not _Stop.depth:
        sys.unraisablehook = functools.partial(_redeliver, owner, old_hook)
    _Stop.depth += 1
    try:
        yield
    finally:
        _Stop.depth -= 1
        if not _Stop.depth:
            _Stop.signum = None
            sys.unraisablehook = old_hook
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _redeliver(owner: int, old_hook: Callable, unraisable) -> None:
    """sys.unraisablehook: an Interrupted raised where it cannot propagate (see the module's
    docstring) did not stop the run, so its signal is delivered again, a moment later, to
    whatever the main thread then runs (were that another such place, this comes round again).
    Anything else goes to the hook that was there before."""
    exc = unraisable.exc_value
    if not isinstance(exc, Interrupted) or os.getpid() != owner:
        old_hook(unraisable)
        return
    delay = 0.001
    while True:
        if _Stop.signum == exc.signum:
            _Stop.signum = None         # stop() noted it as stopping the run: it did not
        try:
            # Not delivered from here: Python runs a pending handler as soon as a call returns,
            # which would be inside this hook, whose exceptions are lost too. From a thread, 1 ms
            # on, it lands after this hook (and the fork's others, microseconds) has returned.
            later = threading.Timer(delay, _thread.interrupt_main, (exc.signum,))
            later.daemon = True
            later.start()
            return
        except Interrupted:             # the main thread was held up that long: once more, later
            delay *= 10


class _Shield:
    depth = 0
    pending: list[int] = []
    saved: dict[int, object] = {}
    note: str | None = None


def _record(signum, frame) -> None:
    _Shield.pending.append(signum)
    if _Shield.note and len(_Shield.pending) == 1:
        _note(f"{_NAMES.get(signum, signum)}: {_Shield.note}")


class shielded:
    """Hold SIGINT, SIGTERM and SIGHUP until the block is done (it nests; main thread only).

    On leaving the block a held signal is raised as Interrupted - also when the block failed
    otherwise (the user's stop wins over, say, a child killed by that same Ctrl-C; the error is
    chained) - unless the block is already raising a KeyboardInterrupt. With
    ``hold_only=True`` nothing is raised: the caller reads ``.signum`` and decides.
    *note*, if given, is printed (once) when a signal arrives, e.g. "removing the lab first"."""

    def __init__(self, note: str | None = None, hold_only: bool = False) -> None:
        self.note, self.hold_only = note, hold_only
        self.signum: int | None = None
        self._active = False

    def __enter__(self) -> shielded:
        if not _main_thread():
            return self
        self._active = True
        if _Shield.depth == 0:
            _Shield.pending = []
            _Shield.note = self.note
            for s in SIGNALS:
                old = signal.getsignal(s)
                if old is not signal.SIG_IGN:
                    _Shield.saved[s] = signal.signal(s, _record)
        elif self.note and not _Shield.note:
            _Shield.note = self.note
        _Shield.depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._active:
            return False
        _Shield.depth -= 1
        if _Shield.depth:
            return False
        for s, h in _Shield.saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _Shield.saved = {}
        _Shield.note = None
        pending, _Shield.pending = _Shield.pending, []
        if not pending:
            return False
        self.signum = pending[0]
        if self.hold_only or (exc_type is not None and issubclass(exc_type, KeyboardInterrupt)):
            return False
        try:
            stop(pending[0])
        except Interrupted as held:
            raise held from exc
        return False


def shield_calls(fn: Callable) -> Callable:
    """*fn*, each call of it shielded: it completes, and a signal is raised after it returns."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with shielded():
            return fn(*args, **kwargs)
    return wrapper


def ignore_while_exiting() -> None:
    """The process has stopped and only says so and exits: from now on SIGINT, SIGTERM and SIGHUP
    are ignored. A stopped run exits 130; a Ctrl-C pressed again as it exits (a docker run stops
    in about 0.45 s, so a second press 0.3-0.5 s after the first lands there) would otherwise meet
    the interpreter's own handler, or none once it is finalizing, and end it by SIGINT instead."""
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
