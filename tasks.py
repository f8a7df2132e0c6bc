"""The twlab tasks for a plain `invoke` in a checkout. They live in lab/tasks.py (the installed
`twlab` command carries them); this file re-exports them, and makes the running Invoke a
TwlabProgram: usage errors exit 2, -h is help, as under ./twlab and twlab (lab/cli.py)."""

from lab.cli import adopt
from lab.tasks import *  # noqa: F403  (every task, the scenario tasks among them)

adopt()
