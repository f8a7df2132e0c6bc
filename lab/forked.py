"""A Python program run in a copy of this process inside a network namespace, not in a new
interpreter: the peer agent of a plain namespace (lab.peer).

Why: a fresh ``python -I -S -c AGENT`` pays an interpreter's start and the agent's imports
(socket, json, selectors, enum, re). Measured in Debian 12's kernel under TCG on this 2-CPU
machine, one peer took 1.3-1.5 s of CPU to say hello, both ends' together most of the lab's
start, and a lost-ack run waited 1.5 s for them; the same start forked from the lab (which has
all of it loaded) is one fork. Here the difference is 30 ms a peer.

The child is made as lab.sampling's is: its own session (a Ctrl-C at the terminal reaches the lab,
which stops it in order), killed with the lab (PR_SET_PDEATHSIG), its network namespace set
(setns), pipes as stdin, stdout and stderr and every other descriptor of the lab closed, so a
pipe of another child never stays open in it. It never returns into the lab's code: it runs the
program's code object as ``__main__`` with its own ``sys.argv`` and standard streams, then
``os._exit``. The collector is off in the child: a cycle of the lab's (a socket, a file) freed
there would close a descriptor number the program may be using by then.

``Forked`` answers the part of subprocess.Popen the lab uses: pid, stdin, stdout, stderr, poll,
wait, kill, returncode.
"""

from __future__ import annotations

import ctypes
import gc
import io
import os
import signal
import subprocess
import sys
import time
import traceback
from types import CodeType

from .errors import NamespaceGone
from .nsops import libc

__all__ = ["Forked"]

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
_kept: list[object] = []          # the lab's own standard streams, in the child: never finalized


class Forked:
    """*code* run as ``__main__`` with ``sys.argv = [name, *argv]`` in a child of this process
    whose network namespace is the one at *nspath*."""

    def __init__(self, nspath: str, code: CodeType, argv: list[str], name: str = "twlab-forked") -> None:
        try:
            ns = os.open(nspath, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NamespaceGone(nspath, exc.strerror or str(exc)) from exc
        pipes = [os.pipe() for _ in range(3)]           # the child's stdin, stdout, stderr
        parent = os.getpid()
        c = libc()                  # looked up here: no dlopen in a child forked from threads
        calls = (c.prctl, c.setns)
        try:
            pid = os.fork()
            if pid == 0:                                # the child: never returns
                _child(parent, ns, [pipes[0][0], pipes[1][1], pipes[2][1]], code, [name, *argv], calls)
        except BaseException:
            for r, w in pipes:
                os.close(r)
                os.close(w)
            raise
        finally:
            os.close(ns)
        for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
            os.close(fd)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = open(pipes[0][1], "wb")
        self.stdout = open(pipes[1][0], "rb")
        self.stderr = open(pipes[2][0], "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1                    # reaped elsewhere
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"forked pid {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _child(parent: int, ns: int, fds: list[int], code: CodeType, argv: list[str], calls: tuple) -> None:
    prctl, setns = calls
    status = 1
    try:
        gc.disable()
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:                      # the lab died before prctl
            os._exit(1)
        if setns(ns, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _kept.extend([sys.stdin, sys.stdout, sys.stderr])
        sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False))
        sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), write_through=True)
        sys.argv = argv
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:                               # noqa: BLE001 - said on its stderr, then gone
        try:
            os.write(2, traceback.format_exc().encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(status)
