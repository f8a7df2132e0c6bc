"""The code keeps the shape its contributors rely on: no module over 400 lines and no function over
60 lines outside tests, and nothing of the lab's reaches into a scenario module by attribute."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    return [REPO / f for f in files if not f.startswith("tests/") and (REPO / f).exists()]


def test_no_module_over_400_lines():
    big = {str(p.relative_to(REPO)): n for p in _sources()
           if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert big == {}


def test_no_function_over_60_lines():
    long = {}
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert long == {}


def test_the_lab_reads_scenarios_only_through_their_scenario_object():
    """No getattr/hasattr on a scenario module and no module-level scenario attribute read in lab/ or
    tasks.py: lab.scenario.Scenario is the contract."""
    bad = []
    for p in _sources():
        rel = str(p.relative_to(REPO))
        if not (rel.startswith("lab/") or rel == "tasks.py"):
            continue
        for n, line in enumerate(p.read_text().splitlines(), start=1):
            if any(w in line for w in ("mod.SHAPING", "mod.PORT", "mod.INTENT", "getattr(mod", "hasattr(mod",
                                       "KEY_VALUES", "PARALLEL_SAFE")):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert bad == []
