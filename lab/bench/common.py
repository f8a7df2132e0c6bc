"""What every measurement of lab.bench shares: the names it measures, the summary of samples,
running and timing one command, and the sweeper that makes sure nothing made is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import cleanup
from ..nsops import run_tool

BACKEND_NAMES = ("netns", "docker")
SCENARIO = "lost-ack"
TIMINGS = ("bring_up_s", "start_s", "scenario_s", "tear_down_s")   # report["timings_s"] keys
_CMD_TIMEOUT_S = 120

Stats = dict[str, Any]          # {"median", "min", "max", "n", "samples"}


def summarize(samples: Sequence[float | None]) -> Stats:
    """Median, min and max of the samples that exist (None = not measured in that run)."""
    xs = [float(x) for x in samples if x is not None]
    return {
        "median": round(statistics.median(xs), 4) if xs else None,
        "min": round(min(xs), 4) if xs else None,
        "max": round(max(xs), 4) if xs else None,
        "n": len(xs),
        "samples": [None if x is None else round(float(x), 4) for x in samples],
    }


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM / SIGHUP until the block (a tear-down) is done, then raise
    KeyboardInterrupt, so a second Ctrl-C cannot cut a removal in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(pending[0]).name}")


def run_cmd(argv: list[str], env: dict[str, str] | None = None, detached: bool = False) -> None:
    """Run one command (lab.nsops.run_tool); *detached* puts it in its own session, so a Ctrl-C
    typed at the terminal does not reach it (used for removals)."""
    run_tool(argv, env=env, detached=detached, timeout_s=_CMD_TIMEOUT_S)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def mine_in_registry() -> set[str]:
    """Lab ids the live-lab registry holds for this process (non-persistent)."""
    out = set()
    for path in cleanup.RUN_DIR.glob("*.json") if cleanup.RUN_DIR.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("pid") == os.getpid() and not rec.get("persistent"):
            out.add(str(rec.get("lab_id")))
    return out


class Sweeper:
    """Makes sure every lab id the benchmark used is gone; remembers what it had to remove
    (something left behind by a timed tear-down is a finding, not a detail)."""

    def __init__(self) -> None:
        self.leftovers: list[str] = []

    def sweep(self, lab_id: str) -> None:
        with deferred_interrupts():
            left = cleanup.find(lab_id)
            if left:
                self.leftovers += [f"{lab_id}: {line}" for line in left.lines()]
                cleanup.clean(lab_id)
            cleanup.unregister(lab_id)
