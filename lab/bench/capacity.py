"""`invoke bench --capacity`: how many labs one machine runs at once with every observation sound.

The number of lost-ack labs started together is doubled (1, 2, 4, ...) until a step fails, then
the gap between the last step that held and the first that did not is halved until it closes. A
step holds when every run passed (a run judged inconclusive or in error, or a failed check, is not
right) and no socket sample came more than GAP_MS after the one before (the sampler's own record
in each report.json: observation.sampler.max_gap_ms). The figure is the largest step that held.
Each step is `invoke run lost-ack --repeat N --parallel N` (lab.runner.run_many): N processes,
each with its own lab.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import SCENARIO

GAP_MS = 10.0


def one_step(backend: str, n: int) -> dict[str, Any]:
    """*n* labs at once: how many passed, the worst sample gap of any, and whether it held."""
    from ..runner import run_many

    tmp = Path(tempfile.mkdtemp(prefix="twlab-capacity-"))
    try:
        summary = run_many(SCENARIO, repeat=n, parallel=n, backend=backend, artifacts=tmp / "runs")
        gaps = []
        for path in (tmp / "runs").rglob("report.json"):
            sampler = (json.loads(path.read_text()).get("observation") or {}).get("sampler") or {}
            gaps.append(sampler.get("max_gap_ms"))
        worst = max((g for g in gaps if g is not None), default=None)
        held = summary["passed"] == n and len(gaps) == n and None not in gaps and worst < GAP_MS
        return {"labs": n, "passed": summary["passed"], "max_gap_ms": worst, "wall_s": summary["wall_s"],
                "verdicts": sorted(r["verdict"] for r in summary["runs"]), "held": held}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_capacity(backend: str, limit: int = 64,
                  progress: Callable[[dict[str, Any]], None] = lambda step: None) -> dict[str, Any]:
    """The steps tried, in order, and the largest number of labs that held (0 if one did not)."""
    steps: list[dict[str, Any]] = []

    def tried(n: int) -> bool:
        step = one_step(backend, n)
        steps.append(step)
        progress(step)
        return step["held"]

    good, bad, n = 0, None, 1
    while n <= limit:
        if not tried(n):
            bad = n
            break
        good, n = n, n * 2
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if tried(mid) else (good, mid)
    return {"backend": backend, "capacity": good, "limit_reached": bad is None, "limit": limit,
            "gap_threshold_ms": GAP_MS, "cpus": os.cpu_count(), "steps": steps}
