"""Recorded runs (tests/data/scenarios/<name>.json or .json.gz, made from a real run's
report.json) loaded as Evidence, for the scenario unit tests; each load is a fresh copy to edit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lab.evidence import Evidence

DATA = Path(__file__).resolve().parent.parent / "data" / "scenarios"


def evidence(name: str) -> Evidence:
    plain = DATA / f"{name}.json"
    if plain.exists():
        return Evidence.from_record(json.loads(plain.read_text()))
    with gzip.open(DATA / f"{name}.json.gz", "rt") as f:
        return Evidence.from_record(json.load(f))


def failed(scenario, ev: Evidence) -> set[str]:
    """The names of *scenario*'s checks that fail on *ev*."""
    return {c.name for c in scenario.SCENARIO.judge(ev) if not c.passed}
