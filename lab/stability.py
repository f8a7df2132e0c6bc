"""`invoke stability`: every scenario RUNS times in a row on each backend and address family
(lab.runner.run_many with one lab at a time), and how often each passed; stability.json."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .artifacts import check_dir, ensure_dir, write_text
from .errors import ScenarioSkipped
from .family import check_family, label
from .runner import default_artifacts, run_many
from .saved import index_quietly

__all__ = ["run_stability", "exit_code"]


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
                results[f"{row}/{be}"] = _runs(name, be, runs, base / be / row.replace("/", "-"), family)
                got = results[f"{row}/{be}"]
                print(f"{row} on {be}: " + (f"skipped: {got['skipped']}" if got.get("skipped") else
                                             f"{got['passed']}/{runs} passed"), file=sys.stderr)
    write_text(ensure_dir(base) / "stability.json", json.dumps(results, indent=2) + "\n")
    index_quietly(base, "stability")
    return results, base


def _runs(name: str, backend: str, runs: int, where: Path, family: int) -> dict:
    """One row's runs; a scenario this machine cannot show (no netem, the sysctls, no IPv6) is
    skipped with its reason, as `run all` skips it, and the other rows still run."""
    started = time.time()
    try:
        summary = run_many(name, runs, 1, backend=backend, artifacts=where, progress=lambda line: None,
                           family=family)
    except ScenarioSkipped as exc:
        return {"passed": 0, "failed": 0, "errors": 0, "check_pass_rate": {}, "family": family,
                "wall_s": round(time.time() - started, 3), "skipped": exc.why}
    return {k: summary[k] for k in ("passed", "failed", "errors", "check_pass_rate", "wall_s", "family")}


def exit_code(results: dict[str, dict], runs: int) -> int:
    """0 when every row that ran passed every run (skipped rows aside), 2 when none could run,
    1 otherwise (as lab.verdict.batch_exit_code for a batch)."""
    ran = [r for r in results.values() if not r.get("skipped")]
    if not ran:
        return 2
    return 0 if all(r["passed"] == runs for r in ran) else 1
