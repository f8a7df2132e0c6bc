"""`invoke run lost-ack`, typed as the README says after its setup, in a new login shell with a
minimal environment (nothing of this test's PATH or virtualenv): the README's own lines are run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _readme_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block under *heading* (comments dropped)."""
    section = README.split(heading, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {heading!r}"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _login_shell(script: str) -> subprocess.CompletedProcess:
    env = {"HOME": os.environ.get("HOME", "/root"), "TERM": "dumb", "LANG": "C.UTF-8",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(["bash", "-lc", f"cd {REPO} && {script}"], env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_readme_says_how_invoke_gets_on_path():
    lines = _readme_block("### `invoke` on your PATH")
    assert lines[-1] == "invoke run lost-ack"
    assert any(line.startswith((". .venv/bin/activate", "source .venv/bin/activate")) for line in lines)


def test_without_that_step_a_new_shell_has_no_invoke():
    """Why the README must say it: a login shell finds no `invoke` of the checkout."""
    done = _login_shell("command -v invoke || echo missing")
    assert done.stdout.strip() == "missing" or not done.stdout.strip().startswith(str(REPO)), done.stdout


def test_invoke_run_lost_ack_as_the_readme_says_passes():
    lines = _readme_block("### `invoke` on your PATH")
    done = _login_shell(" && ".join(lines))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict: PASS" in done.stdout
    assert re.search(r"^artifacts: (artifacts/\S+-lost-ack)/", done.stdout, re.M)
