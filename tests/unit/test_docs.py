"""The README keeps up with the code: its scenario table lists the catalog, with each scenario's
shaping need, and every task is in its task table."""

from __future__ import annotations

import re
from pathlib import Path

from scenarios import catalog

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_lists_every_scenario_with_its_shaping():
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| .* \| \**(required|optional|unused)\** \|$", README, re.M))
    assert rows == {name: sc.shaping for name, sc in catalog().items()}


def test_readme_names_every_task():
    from invoke import Collection

    import tasks

    names = set(Collection.from_module(tasks).task_names) - set(catalog())
    missing = [n for n in names if f"`invoke {n}" not in README]
    assert missing == []


def test_readme_lists_the_kernel_options_the_lab_needs():
    """Every option lab.vm.kconfig checks, with what it is for, in README's tables."""
    from lab.vm import kconfig

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for wanted in (kconfig.NEEDED, kconfig.OPTIONAL, kconfig.DOCKER):
        for option, why in wanted.items():
            assert f"| `CONFIG_{option}` | {why} |" in text, option
