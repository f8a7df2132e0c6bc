"""report.html written by a process of its own, started when a run starts, so that loading
matplotlib (about 1.1 s of a 1.3 s page here, measured with cProfile on `invoke report`) happens
while the lab brings its hosts up and waits on the protocol, not after the verdict.

The writer lowers its priority while it imports (nice 19: the lab's own work comes first on a
busy machine) and takes it back before drawing. It reads one artifacts directory a line on stdin
and answers one line on stdout: ``ok PATH`` or ``error WHY``. End of input (the run finished, or
died) ends it; it ignores SIGINT, so a Ctrl-C reaches the run, whose tear-down closes it.

A detached writer (an interactive run: ``invoke run`` on a terminal) is handed the run and left to
draw it after the run's process has ended, so the prompt comes back while the page is drawn
(about 0.5 s of a lost-ack run, the drawing of its figures; ``invoke bench`` prints both). It
answers nobody: a page it cannot draw is one line on the terminal's stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["PageWriter"]

_NICE = 19


class PageWriter:
    """The writer process of one run (``python -m lab.html.writer``)."""

    def __init__(self, detached: bool = False) -> None:
        self.detached = detached
        self.proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "lab.html.writer"] + (["--detached"] if detached else []),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL if detached else subprocess.PIPE,
            stderr=None if detached else subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[2], start_new_session=detached)

    def hand_off(self, directory: Path) -> None:
        """A detached writer: draw report.html for the run in *directory* after this process is
        gone, then end (nothing waits for it)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            raise RuntimeError("the page writer is not running")
        proc.stdin.write(f"{Path(directory).resolve()}\n")
        proc.stdin.close()

    def write(self, directory: Path) -> Path:
        """report.html for the run in *directory* (its report.json written); OSError or
        RuntimeError when the writer cannot (the caller says so in one line)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("the page writer is not running")
        self.proc.stdin.write(f"{Path(directory).resolve()}\n")       # the writer runs elsewhere (cwd)
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().rstrip("\n")
        kind, _, rest = answer.partition(" ")
        if kind != "ok":
            raise RuntimeError(rest or "the page writer ended without an answer")
        return Path(rest)

    def close(self) -> None:
        """End the writer (waits for it; killed if it does not end within 5 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _serve(detached: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, _NICE)
    import matplotlib.backends.backend_svg  # noqa: F401  - what a page's plots load
    import matplotlib.figure  # noqa: F401

    from ..saved import load_run, write_html

    try:
        os.setpriority(os.PRIO_PROCESS, 0, before)          # root may raise it again; others draw at 19
    except OSError:
        pass
    for line in sys.stdin:
        directory = Path(line.rstrip("\n"))
        try:
            report, _ = load_run(directory)
            print("ok", write_html(directory, report), flush=True)
        except Exception as exc:            # noqa: BLE001 - any failure is one answer line
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
            print("error", why, flush=True)
            if detached:
                print(f"twlab: could not write {directory}/report.html ({why}); `invoke report {directory}` "
                      "tries again", file=sys.stderr, flush=True)


if __name__ == "__main__":
    _serve("--detached" in sys.argv[1:])
    os._exit(0)     # every answer is flushed; skipping the interpreter's clean-up saves 0.3 s of each run
