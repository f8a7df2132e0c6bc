"""The sampler in a process of its own, at real-time priority; the lab's watcher in a thread.

Why a process: Python threads share one interpreter lock. A sampler *thread* at SCHED_FIFO still
waits for the lock whenever the lab's main thread holds it and is itself preempted - with 50 labs
on this 2-core machine that happened every few polls, and the median run's longest gap between
polls was 84 ms (every run had gaps over 10 ms). Forked into a child of its own (own lock), at
SCHED_FIFO, the sampler wakes on time: see ``invoke bench --capacity`` for the figures.

The child is forked from the lab process once the captures run and before any peer starts, polls
until the lab asks it to stop (a byte on a pipe), takes one last whole dump, and sends back what it
saw: the timeline's state and timer events, every timer sample and its cadence. It ignores Ctrl-C
(the lab stops it, in order) and dies with the lab even on SIGKILL (PR_SET_PDEATHSIG). What it
inherits from the lab (pipes to tcpdump, pcap files) it leaves alone: no peer runs yet, so it
holds no pipe anyone waits on.

Closely: when the lab knows an edge is coming - a timer due in a window, the state a close will
cause - it asks for polls every CLOSE_S (0.5 ms) inside that window (``closely()``), so that the
samples bound a lifetime to about a millisecond at each end rather than the 5 ms cadence; lookups of
the known sockets only (about 20 us each), whole dumps still every 50 ms.

The watcher (lab.Lab.watch: captures alive, namespaces present) stays in a thread of the lab
process, ticking every 100 ms; its own cadence tells a stopped lab process (lab.health.PauseWatch).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .health import Cadence
from .timeline import Timeline

if TYPE_CHECKING:
    from .observe import Sampler

__all__ = ["SamplerProcess"]

_PR_SET_PDEATHSIG = 1
CLOSE_S = 0.0005                 # the poll interval inside a closely() window
_WINDOW = struct.Struct("=dd")  # a closely() request: from, until (time.time())


class SamplerProcess:
    """Runs *sampler* in a child process; ``stop()`` brings its observations back into it (its
    timeline, series and cadence), so the rest of the lab reads the Sampler as before."""

    def __init__(self, sampler: Sampler, watch: Callable[[], None] | None = None,
                 watch_s: float = 0.1) -> None:
        self.sampler, self._watch, self._watch_s = sampler, watch, watch_s
        self.heartbeat = Cadence(gap_s=1.5 * watch_s)   # the lab process's own: a pause shows here
        self._pid: int | None = None
        self._out = self._ctl = self._ack = -1
        self._stopping = threading.Event()
        self.ended_early: str | None = None      # how the sampler process ended, if not by stop()
        self._reaped = False
        self._thread: threading.Thread | None = None

    # -- the lab's side --------------------------------------------------------------------------
    def start(self) -> SamplerProcess:
        out_r, out_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                                      # the child: never returns
            code = 1
            try:
                for fd in (out_r, ctl_w, ack_r):
                    os.close(fd)
                code = _child(self.sampler, parent, ctl_r, out_w, ack_w)
            finally:
                os._exit(code)
        for fd in (out_w, ctl_r, ack_w):
            os.close(fd)
        self._pid, self._out, self._ctl, self._ack = pid, out_r, ctl_w, ack_r
        self._thread = threading.Thread(target=self._tick, name="twlab-watch", daemon=True)
        self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat.tick(time.time())
            if self._watch is not None:
                self._watch()
            self._stopping.wait(self._watch_s)

    @property
    def cadence(self) -> Cadence:
        return self.sampler.cadence

    @property
    def series(self) -> dict[str, list[tuple]]:
        return self.sampler.series

    def sync(self, timeout_s: float = 5.0) -> str | None:
        """Have the sampler take a whole dump now and wait until it has: every socket that exists
        at this moment is then followed (its later state changes reach the timeline at the
        sampler's pace, not at the next 50 ms dump). None once it has; else why not."""
        if self._pid is None:
            return "the socket sampler is not running"
        try:
            os.write(self._ctl, b"d")
        except OSError:
            return "the socket sampler is gone"
        ready, _, _ = select.select([self._ack], [], [], timeout_s)
        got = os.read(self._ack, 1) if ready else b""
        if got == b"k":
            return None
        if got == b"e":
            return "the socket sampler could not dump the hosts' sockets (three tries)"
        return f"the socket sampler did not answer within {timeout_s:g} s"

    def closely(self, start: float, until: float) -> None:
        """Poll every CLOSE_S from *start* to *until* (time.time()). A request that cannot be
        sent (the sampler gone) is dropped: alive() reports that on its own."""
        if self._pid is None or until <= time.time():
            return
        try:
            os.write(self._ctl, b"c" + _WINDOW.pack(start, until))   # 17 bytes: one atomic write
        except OSError:
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the child for its last look and its observations; safe to call twice."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        data = b""
        try:
            try:
                os.write(self._ctl, b"x")
            except BrokenPipeError:                       # it is gone: its observations with it
                self.ended_early = self.ended_early or "exited before the lab stopped it"
                return
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self._out], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    continue
                chunk = os.read(self._out, 1 << 20)
                if not chunk:
                    break
                data += chunk
        finally:
            for fd in (self._ctl, self._out, self._ack):
                os.close(fd)
            if not self._reaped:
                _reap(pid)
        if data:
            self._merge(pickle.loads(data))
        elif not self.ended_early:
            self.ended_early = "sent nothing back"

    def alive(self) -> bool:
        """False once the sampler process has ended without being asked to (killed, crashed):
        what it had seen is lost with it. Records how it ended in ``ended_early``."""
        if self._pid is None or self._reaped:
            return not self.ended_early
        done, status = os.waitpid(self._pid, os.WNOHANG)
        if not done:
            return True
        self._reaped = True
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        self.ended_early = f"killed by {signal.Signals(sig).name}" if sig else \
            f"exited with status {os.WEXITSTATUS(status)}"
        return False

    def _merge(self, got: dict) -> None:
        s = self.sampler
        s.timeline.extend(got["events"])
        s.series, s.cadence, s.samples = got["series"], got["cadence"], got["samples"]


def _reap(pid: int, timeout_s: float = 2.0) -> None:
    """Wait for the child to exit (up to *timeout_s*, then kill it). A pidfd wakes the moment it
    exits, where a waitpid(WNOHANG) loop woke at its next nap; a kernel without pidfd_open gets
    that loop, with 5 ms naps."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:                              # reaped already (ESRCH), or no pidfd
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], timeout_s)
        finally:
            os.close(fd)
    else:
        deadline = time.monotonic() + timeout_s
        try:
            while not os.waitpid(pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                time.sleep(0.005)
        except ChildProcessError:                # reaped already
            return
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except ChildProcessError:                    # reaped already
        pass


# -- the child ------------------------------------------------------------------------------------
def _child(sampler: Sampler, parent: int, ctl: int, out: int, ack: int) -> int:
    # the lab stops it, in order, even when a signal went to the whole process group (Ctrl-C,
    # `kill -TERM -PGID`); it dies with the lab (PR_SET_PDEATHSIG) if the lab is killed
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:                            # the lab died before prctl
        return 1
    sampler.timeline = Timeline()                         # only what it sees from now on
    for view in sampler.views.values():
        view.forget_sockets()                            # the lab's netlink sockets stay the lab's
    sampler.cadence.sched = _realtime()
    windows: list[tuple[float, float]] = []
    while True:
        began = time.monotonic()
        sampler.poll()
        took = time.monotonic() - began
        windows = [w for w in windows if w[1] > time.time()]
        ready, _, _ = select.select([ctl], [], [], _pause(sampler.interval_s, windows, time.time(), took))
        if not ready:
            continue
        asked = os.read(ctl, 1)
        if asked == b"c":
            windows.append(_WINDOW.unpack(os.read(ctl, _WINDOW.size)))
            continue
        if asked != b"d":                                 # "x" (stop), or the lab is gone
            break
        # a sync: a whole dump of every host, then say so ("e": a dump failed three times, so
        # what exists now is not all followed)
        whole = any(sampler.poll(discover=True) for _ in range(3))
        os.write(ack, b"k" if whole else b"e")
    # one last look, a whole dump, so the end state is on the timeline (a lookup-only poll would
    # miss a socket a cut-short dump skipped earlier)
    sampler.poll(discover=True)
    sampler.finish()
    data = pickle.dumps({"events": sampler.timeline.events(), "series": sampler.series,
                         "cadence": sampler.cadence, "samples": sampler.samples})
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    return 0


def _pause(interval_s: float, windows: list[tuple[float, float]], now: float, took: float = 0.0) -> float:
    """How long the sampler waits before its next poll: CLOSE_S inside a closely() window - or as
    long as the last poll *took*, so that a real-time sampler never holds a CPU more than half the
    time (a poll with a dump of Docker's shared table takes over a millisecond) - else its
    interval, cut short where a window opens sooner."""
    if any(start <= now < until for start, until in windows):
        return max(CLOSE_S, took)
    return min([interval_s] + [max(0.0, start - now) for start, _ in windows if start > now])


def _realtime() -> str:
    """SCHED_FIFO at the lowest real-time priority, when allowed: the sampler runs as soon as its
    5 ms wait ends instead of queueing behind every busy process. Each poll is a few netlink round
    trips (about 20 us; a whole dump 70-160 us on a host with its own TCP table) and then a wait,
    so it never holds a CPU for long, and the kernel's real-time throttling bounds it anyway."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "fifo"
    except (OSError, AttributeError):
        return "other"
