"""lab/cli.py: scenario words after `invoke matrix` / `invoke check` become their --scenario list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.cli import fold, scenario_names
from scenarios import catalog

REPO = Path(__file__).resolve().parents[2]


def test_scenario_names_are_the_catalog():
    assert scenario_names() == sorted(catalog())


def test_fold_appends_words_to_matrix_and_check():
    names = {"lost-ack", "tw-reopen"}
    calls = [("matrix", {"kernel": ["host"], "scenario": []}), ("lost-ack", {}), ("tw-reopen", {})]
    assert fold(calls, names) == [("matrix", {"kernel": ["host"], "scenario": ["lost-ack", "tw-reopen"]})]
    # after --scenario given as a flag, the words are added to it
    calls = [("check", {"scenario": ["tw-reopen"], "junit": "o.xml"}), ("lost-ack", {})]
    assert fold(calls, names) == [("check", {"scenario": ["tw-reopen", "lost-ack"], "junit": "o.xml"})]


def test_fold_leaves_other_calls_alone():
    names = {"lost-ack"}
    # a scenario word on its own runs the scenario; after another task too
    assert fold([("lost-ack", {})], names) == [("lost-ack", {})]
    assert fold([("list", {}), ("lost-ack", {})], names) == [("list", {}), ("lost-ack", {})]
    # a task after the scenario words ends the folding
    calls = [("matrix", {"scenario": None}), ("lost-ack", {}), ("list", {}), ("lost-ack", {})]
    assert fold(calls, names) == [("matrix", {"scenario": ["lost-ack"]}), ("list", {}), ("lost-ack", {})]


def test_invoke_reads_the_executor_from_invoke_yaml():
    """The project's invoke.yaml names lab.cli.ScenarioWords; invoke loads it (a dry parse: an
    unknown scenario word is refused by the parser, a known one is not)."""
    invoke = str(Path(sys.executable).parent / "invoke")
    done = subprocess.run([invoke, "--list"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "lost-ack" in done.stdout
    done = subprocess.run([invoke, "matrix", "--kernel", "nonsense", "lost-ack"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    # the words reached the task (a usage error about the kernel, not "No idea what 'lost-ack' is")
    assert done.returncode == 2 and done.stderr.startswith("twlab: --kernel 'nonsense'"), done.stderr
    import yaml  # noqa: PLC0415 - invoke's own dependency
    conf = yaml.safe_load((REPO / "invoke.yaml").read_text())
    assert conf["tasks"]["executor_class"] == "lab.cli.ScenarioWords"
