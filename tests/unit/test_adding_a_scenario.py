"""The README's "Adding a scenario" holds: a new module that ends in SCENARIO = Scenario(...) is in
the catalog, the command line, the runner's judging and the matrix without a line of lab/
changing; and the fields the README names are the contract's (lab.scenario.Scenario)."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

import scenarios
from lab.evidence import Evidence
from lab.scenario import Scenario

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README[README.index("## Adding a scenario"):README.index("## Known limits")]

NEW = '''"""added-by-a-test: a scenario written as the README says, in a module of its own."""
from lab.scenario import KeyValue, Scenario
from lab.shaping import OPTIONAL
from lab.verdict import Check


def run(lab) -> dict:
    return {"said": "hello"}


def said_hello(ev) -> Check:
    return Check("said-hello", "RFC 9293 §3.1", "the step said hello", ev.facts.get("said", "-"),
                 ev.facts.get("said") == "hello", {"said": ev.facts.get("said")})


SCENARIO = Scenario(name="added-by-a-test", intent="a scenario added without touching lab/", run=run,
                    checks=(said_hello,), shaping=OPTIONAL, port=5999,
                    key_values=(KeyValue("what it said", "said-hello", "said"),))
'''


@pytest.fixture
def added(tmp_path, monkeypatch):
    """A scenario module in a directory of the scenarios package (as a new file would be)."""
    (tmp_path / "added_by_a_test.py").write_text(NEW)
    monkeypatch.setattr(scenarios, "__path__", [*scenarios.__path__, str(tmp_path)])
    yield "added-by-a-test"
    sys.modules.pop("scenarios.added_by_a_test", None)


def test_a_new_module_is_in_the_catalog_the_cli_and_the_matrix(added):
    from lab.cli import scenario_names
    from lab.matrix import cell_from_report

    assert added in scenarios.names() and added in scenario_names()
    sc = scenarios.get(added)
    assert sc.port == 5999 and sc.intent.startswith("a scenario added")
    ev = Evidence(packets={}, timeline=[], counters={}, sysctls={}, addresses={}, faults={},
                  facts=sc.run(None))
    checks = sc.judge(ev)
    assert [(c.name, c.outcome) for c in checks] == [("said-hello", "pass")]
    cell = cell_from_report({"scenario": added, "verdict": "pass", "checks": [c.to_json() for c in checks]})
    assert cell["values"] == {"what it said": "hello"}


def test_the_readme_names_the_contracts_fields():
    fields = {f.name for f in dataclasses.fields(Scenario)}
    named = set(re.findall(r"\b([a-z_]+)=", SECTION.split("SCENARIO = Scenario(")[-1].split("```")[0]))
    named |= set(re.findall(r"\b([a-z_]+)\b", SECTION.split("and, when needed:")[1].split("```")[0]))
    named &= fields | {"name"}
    assert named == fields, f"the README's example leaves out {sorted(fields - named)}"


def test_the_readme_says_nothing_in_lab_changes():
    assert "nothing in\n`lab/` changes" in SECTION or "nothing in `lab/` changes" in SECTION
    assert "scenarios/lost_ack.py" in SECTION and "lab/scenario.py" in SECTION
