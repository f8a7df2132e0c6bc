"""lab.bench's measurement 4: whole processes, as a user waits for them. `invoke run lost-ack
--json` from its start to its exit, beside the report's own duration_s (which starts when the run
does and ends when report.json is written): what lies outside it is the interpreter, imports,
argument parsing, and drawing and printing the report. Also `invoke list` and `invoke --help`,
which a user types most and which should cost next to nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
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


def bench_small_commands() -> dict[str, float]:
    """`invoke list` and `invoke --help`, whole processes."""
    return {"list_s": time_command([*_invoke(), "list"])[0],
            "help_s": time_command([*_invoke(), "--help"])[0]}
