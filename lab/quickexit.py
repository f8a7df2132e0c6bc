"""Ending the twlab command without the interpreter's tear-down of its modules.

Once a task has finished, nothing is left to do but exit; yet Python then frees every module and
object one by one. With what a run imports (Invoke, pyroute2, dpkt, rich: about 600 modules),
that took 40-57 ms of every `invoke run` here (a script importing them: 0.23 s to exit normally,
0.19 s with os._exit; a lost-ack run: 57 ms from the last atexit handler to the process's end).
``leave`` does what an exit must - the atexit handlers (temporary directories, log files), stdout
and stderr flushed - and then ends the process at once. It steps aside (returns, and the caller
exits as usual) while any other non-daemon thread still runs: those are joined by a normal exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

__all__ = ["leave"]


def leave(code: int | str | None = 0, message: str | None = None) -> None:
    """Print *message* (to stderr, as Invoke prints an Exit's) and end the process with *code*;
    return without doing anything while another non-daemon thread is alive."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        return
    if message:
        print(message, file=sys.stderr)
    if not isinstance(code, int):            # sys.exit's rules: None is 0, anything else 1
        code = 0 if code is None else 1
    atexit._run_exitfuncs()                  # what the interpreter would run now; each one's
    for stream in (sys.stdout, sys.stderr):  # exception is printed there, as at a normal exit
        try:
            stream.flush()
        except (OSError, ValueError):        # a closed pipe (`| head`): what a shell reports for it
            code = code or 141
    os._exit(code)
