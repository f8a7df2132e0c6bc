"""Recorded runs (tests/data/scenarios/<name>.json or .json.gz, made from a real run's
report.json) loaded as Evidence, for the scenario unit tests; each load is a fresh copy to edit.
A record holds the keys Evidence.from_record reads and, for the scenarios judged from sock_diag's
timers, the report's timer_samples."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lab.evidence import Evidence

DATA = Path(__file__).resolve().parent.parent / "data" / "scenarios"


def evidence(name: str) -> Evidence:
    plain = DATA / f"{name}.json"
    if plain.exists():
        doc = json.loads(plain.read_text())
    else:
        with gzip.open(DATA / f"{name}.json.gz", "rt") as f:
            doc = json.load(f)
    ev = Evidence.from_record(doc)
    # sock_diag's timer samples, where the record keeps them (retransmitted-fin, tw-assassination)
    ev.timer_samples = {h: [tuple(x) for x in xs] for h, xs in doc.get("timer_samples", {}).items()}
    return ev


def failed(scenario, ev: Evidence) -> set[str]:
    """The names of *scenario*'s checks that fail on *ev*."""
    return {c.name for c in scenario.check(ev) if not c.passed}
