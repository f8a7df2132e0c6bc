"""Invoke glue for the command line the issues and the README promise:

    invoke matrix --kernel host --kernel debian-12 lost-ack time-wait-duration
    invoke check --junit out.xml lost-ack tw-assassination

Invoke takes no list of positional words, and a word it does not know as a flag value is read as
the next task's name. So every scenario is also a task (``invoke lost-ack`` runs it, as
``invoke run lost-ack`` does), and this executor (named in invoke.yaml as tasks.executor_class)
folds scenario "tasks" that follow ``matrix`` or ``check`` into that task's --scenario list
before anything runs. Elsewhere a scenario word runs the scenario.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Any

from invoke import Executor
from invoke.parser import ParserContext

__all__ = ["ScenarioWords", "scenario_names", "fold"]

TAKES_SCENARIOS = {"matrix": "scenario", "check": "scenario"}


def scenario_names() -> list[str]:
    """The catalog's names, from the module names alone (kebab-case of scenarios/<name>.py):
    cheap enough for every `invoke` start."""
    here = Path(__file__).resolve().parents[1] / "scenarios"
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_"))


def fold(calls: list[tuple[str, dict[str, Any]]], names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """[("matrix", {...}), ("lost-ack", {}), ("tw-reopen", {})] -> [("matrix", {..., scenario:
    [..., "lost-ack", "tw-reopen"]})]. A scenario word not after matrix/check stays a call."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, kwargs in calls:
        if name in names and out and out[-1][0] in TAKES_SCENARIOS:
            owner, kw = out[-1]
            key = TAKES_SCENARIOS[owner]
            kw[key] = list(kw.get(key) or []) + [name]
            continue
        out.append((name, dict(kwargs)))
    return out


class ScenarioWords(Executor):
    def execute(self, *tasks: Any) -> dict:
        calls = []
        for t in tasks:
            if isinstance(t, ParserContext):
                calls.append((t.name, t.as_kwargs))
            elif isinstance(t, str):
                calls.append((t, {}))
            else:
                calls.append(t)
        return super().execute(*fold(calls, set(scenario_names())))
