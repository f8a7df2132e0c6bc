"""How lab.pipeline.run_batches orders and widens its batches: the parallel-safe scenarios
*parallel* at a time, a long measurement that tolerates company (Scenario.beside) first and beside
them in a worker of its own, the others alone afterwards."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import lab.pool
import scenarios
from lab.pipeline import Job, Result, run_batches

KINDS = {"a": (True, False), "b": (True, False), "c": (True, False), "d": (True, False), "long": (False, True),
         "racy": (False, False)}


@pytest.fixture
def batches(monkeypatch):
    seen = []

    def run_jobs(fn, batch, width, take):
        seen.append(([j.scenario for j in batch], width))
        for j in batch:
            take(j, Result(j.run, j.scenario, "pass", 0, str(j.artifacts)))

    monkeypatch.setattr(lab.pool, "run_jobs", run_jobs)
    monkeypatch.setattr(scenarios, "get", lambda n: SimpleNamespace(parallel_safe=KINDS[n][0], beside=KINDS[n][1]))
    return seen


def jobs(*names):
    return [Job(i + 1, n, Path(f"/tmp/{n}")) for i, n in enumerate(names)]


def test_a_long_measurement_that_tolerates_company_starts_first_beside_the_batch(batches):
    results = run_batches(jobs("a", "long", "b", "c", "d", "racy"), 3)
    assert batches == [(["long", "a", "b", "c", "d"], 4), (["racy"], 1)]
    assert [r.scenario for r in results] == ["a", "long", "b", "c", "d", "racy"]        # job order kept


def test_one_at_a_time_keeps_everything_alone(batches):
    run_batches(jobs("a", "long", "racy"), 1)
    assert batches == [(["a"], 1), (["long", "racy"], 1)]


def test_repeats_of_the_long_one_take_the_parallel_asked_for(batches):
    run_batches(jobs("long", "long", "long"), 2)
    assert batches == [(["long", "long", "long"], 2)]
