"""`invoke stability`: every scenario RUNS times in a row on each backend (lab.runner.run_many with
one lab at a time), and how often each passed; stability.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .artifacts import check_dir, ensure_dir, write_text
from .runner import default_artifacts, run_many
from .saved import index_quietly

__all__ = ["run_stability"]


def run_stability(names: list[str], backends: list[str], runs: int,
                  artifacts: str | Path | None = None) -> tuple[dict[str, dict], Path]:
    """{"SCENARIO/BACKEND": {passed, failed, errors, check_pass_rate, wall_s}} and where it is."""
    base = check_dir(Path(artifacts) if artifacts else default_artifacts("stability"))
    results = {}
    for name in names:
        for be in backends:
            summary = run_many(name, runs, 1, backend=be, artifacts=base / be / name, progress=lambda line: None)
            results[f"{name}/{be}"] = {k: summary[k] for k in
                                       ("passed", "failed", "errors", "check_pass_rate", "wall_s")}
            print(f"{name} on {be}: {summary['passed']}/{runs} passed", file=sys.stderr)
    write_text(ensure_dir(base) / "stability.json", json.dumps(results, indent=2) + "\n")
    index_quietly(base, "stability")
    return results, base
