"""Batches stopped as a whole: `run --repeat N` and `run all`, each lab in a worker process.

SIGTERM to the batch's process (`kill PID`) or Ctrl-C to the whole job: the running labs are
stopped and removed, no new one starts, the partial summary is written, exit 130 - without
waiting for the runs to end on their own (time-wait-duration waits out a real 60 s TIME-WAIT).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from lab.cleanup import find

from .procs import Run, assert_clean_leaves_nothing_of, assert_interrupted

pytestmark = pytest.mark.integration


def _wait_until_up(path: Path, run: Run, timeout_s: float = 120) -> None:
    """A run's capture file appears once its lab is up and captures."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert run.proc.poll() is None, f"the batch ended before {path} appeared: {run.finish()[1]}"
        assert time.monotonic() < deadline, f"no {path} within {timeout_s} s"
        time.sleep(0.1)


def _stop(run: Run, how: str) -> str:
    if how == "kill-TERM":
        run.kill(signal.SIGTERM)
        return "SIGTERM"
    run.group(signal.SIGINT)
    return "Ctrl-C (SIGINT)"


def _finish_or_kill(run: Run) -> tuple[int, str]:
    """The batch's end - well before its runs could end on their own (2 x ~65 s); a batch that
    does not stop is killed, its workers with it, and their labs removed."""
    try:
        return run.finish(timeout_s=100)
    except Exception:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        from lab.cleanup import clean_dead

        clean_dead()
        raise


@pytest.mark.parametrize("how", ["kill-TERM", "ctrl-c"])
def test_stopped_repeat_removes_its_labs_and_writes_the_partial_summary(backend, how, tmp_path):
    art = tmp_path / "art"
    run = Run("run", "time-wait-duration", "--backend", backend, "--repeat", "2", "--parallel", "1",
              "--artifacts", str(art))
    _wait_until_up(art / "run-001" / "client.pcap", run)
    time.sleep(1)                                     # into the scenario
    what = _stop(run, how)
    code, out = _finish_or_kill(run)
    assert_interrupted(code, out, what, made=True)
    assert "partial summary" in out, out
    summary = json.loads((art / "summary.json").read_text())
    assert summary["interrupted"] == what.split()[-1].strip("()"), summary
    assert summary["not_run"] == [2], summary
    assert [r["run"] for r in summary["runs"]] == [1], summary
    first = summary["runs"][0]
    assert first["verdict"] == "error" and first.get("interrupted"), first
    assert not (art / "run-002").exists(), "the second run was started"
    assert first["labs"], first
    for lab_id in first["labs"]:
        assert not find(lab_id), find(lab_id).lines()
        assert_clean_leaves_nothing_of(lab_id)


def test_stopped_catalog_removes_its_labs_and_writes_the_partial_summary(tmp_path):
    art = tmp_path / "art"
    run = Run("run", "all", "--backend", "netns", "--parallel", "2", "--artifacts", str(art))
    deadline = time.monotonic() + 120
    while not list(art.glob("*/client.pcap")):
        assert run.proc.poll() is None and time.monotonic() < deadline, run.out
        time.sleep(0.1)
    run.group(signal.SIGINT)
    code, out = _finish_or_kill(run)
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True)
    summary = json.loads((art / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT" and summary["not_run"], summary
    labs = [lab for r in summary["scenarios"] for lab in r.get("labs") or []]
    assert labs, summary
    for lab_id in labs:
        assert not find(lab_id), find(lab_id).lines()
