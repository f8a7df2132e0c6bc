"""lab.bench's measurement 4: whole processes, as a user waits for them. `invoke run lost-ack
--json` from its start to its exit, beside the report's own duration_s (which starts when the run
does and ends when report.json is written): what lies outside it is the interpreter, imports,
argument parsing, and drawing and printing the report. The same run on a terminal (a pty), as a
user types it: there the prompt comes back while report.html is drawn (lab.html.writer), so the
page's own time is measured too, from the exit until the page is there. Also `invoke list` and
`invoke --help`, which a user types most and which should cost next to nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .common import SCENARIO
from .wholerun import split_run

_TIMEOUT_S = 300


def _invoke() -> list[str]:
    """The checkout's `invoke` (the README's command), run by this interpreter."""
    return [sys.executable, str(Path(sys.executable).parent / "invoke")]


def time_command(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one whole process, start to exit (output captured, not shown)."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S)
    return time.perf_counter() - start, done


def bench_process_run(backend: str) -> dict[str, Any]:
    """`invoke run lost-ack --backend B --json` as a user would start it: its wall time, and the
    report's split of it (protocol waiting, the run's own duration)."""
    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-"))
    try:
        wall, done = time_command([*_invoke(), "run", SCENARIO, "--backend", backend, "--json",
                                   "--artifacts", str(tmp / "run")])
        try:
            report = json.loads(done.stdout)
        except ValueError:
            return {"process_s": wall, "outside_run_s": None, "beyond_waiting_s": None,
                    "verdict": None, "error": (done.stderr.strip().splitlines() or ["no report"])[-1]}
        split = split_run(report)
        waiting = split["protocol_wait_s"]
        return {"process_s": wall,
                "outside_run_s": wall - split["total_s"],
                "beyond_waiting_s": wall - waiting if waiting is not None else None,
                "verdict": report.get("verdict"), "error": report.get("error")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def time_on_terminal(argv: list[str], watch: Path | None = None) -> tuple[float, float | None]:
    """Wall time of one whole process whose stdout and stderr are a terminal (a pty; what it
    prints is read and dropped), start to exit - its exit, as a shell waits for it: a detached
    page writer may hold the terminal open a moment longer. With *watch*, also when that file
    appeared, in seconds after the exit (None: not within 30 s)."""
    master, slave = os.openpty()
    seen: list[float] = []

    def drain() -> None:                        # a full pty would block the process
        try:
            while os.read(master, 65536):
                pass
        except OSError:                         # EIO once every writer closed; EBADF once closed here
            pass

    def look() -> None:
        end = time.perf_counter() + _TIMEOUT_S + 30
        while not seen and time.perf_counter() < end:
            if watch is not None and watch.is_file():
                seen.append(time.perf_counter())
            time.sleep(0.005)

    reader, looker = threading.Thread(target=drain, daemon=True), threading.Thread(target=look, daemon=True)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
        reader.start()
        if watch is not None:
            looker.start()
        proc.wait(timeout=_TIMEOUT_S)
        exited = time.perf_counter()
        if watch is not None:
            looker.join(timeout=30)
        return exited - start, (max(0.0, seen[0] - exited) if seen else None)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)


def bench_terminal_run(backend: str) -> dict[str, Any]:
    """`invoke run lost-ack --backend B` on a terminal: its wall time beyond the protocol's
    waiting, and how long after the exit report.html was there."""
    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-"))
    try:
        run = tmp / "run"
        wall, page = time_on_terminal([*_invoke(), "run", SCENARIO, "--backend", backend, "--artifacts", str(run)],
                                      watch=run / "report.html")
        try:
            waiting = split_run(json.loads((run / "report.json").read_text()))["protocol_wait_s"]
        except (OSError, ValueError):
            waiting = None
        return {"terminal_s": wall, "terminal_beyond_waiting_s": wall - waiting if waiting is not None else None,
                "page_after_exit_s": page}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_small_commands() -> dict[str, float]:
    """`invoke list` and `invoke --help`, whole processes."""
    return {"list_s": time_command([*_invoke(), "list"])[0],
            "help_s": time_command([*_invoke(), "--help"])[0]}
