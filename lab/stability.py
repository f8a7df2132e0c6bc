"""`invoke stability`: every scenario RUNS times in a row on each backend and address family
(lab.runner.run_many with one lab at a time), and how often each passed; stability.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .artifacts import check_dir, ensure_dir, write_text
from .family import check_family, label
from .runner import default_artifacts, run_many
from .saved import index_quietly

__all__ = ["run_stability"]


def run_stability(names: list[str], backends: list[str], runs: int, artifacts: str | Path | None = None,
                  families: tuple[int, ...] = (4,)) -> tuple[dict[str, dict], Path]:
    """{"NAME/BACKEND": {passed, failed, errors, check_pass_rate, wall_s, family}} and where it is;
    NAME is the scenario's, SCENARIO/v6 over IPv6 (lab.family.label)."""
    families = tuple(check_family(f) for f in families)
    base = check_dir(Path(artifacts) if artifacts else default_artifacts("stability"))
    results = {}
    for name in names:
        for family in families:
            row = label(name, family)
            for be in backends:
                summary = run_many(name, runs, 1, backend=be, artifacts=base / be / row.replace("/", "-"),
                                   progress=lambda line: None, family=family)
                results[f"{row}/{be}"] = {k: summary[k] for k in
                                          ("passed", "failed", "errors", "check_pass_rate", "wall_s", "family")}
                print(f"{row} on {be}: {summary['passed']}/{runs} passed", file=sys.stderr)
    write_text(ensure_dir(base) / "stability.json", json.dumps(results, indent=2) + "\n")
    index_quietly(base, "stability")
    return results, base
