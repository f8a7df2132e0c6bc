"""What the task modules share: their help strings and how a task prints and exits."""

from __future__ import annotations

import json as _json

from invoke import Exit

__all__ = ["CATALOG_PARALLEL", "HOST_HELP", "FAMILY_HELP", "RUN_HELP", "show_doc", "exit_with", "exit_for"]

CATALOG_PARALLEL = 3       # labs at a time in `run all` and `check` on this machine's kernel
HOST_HELP = "a lab host: client, router or server"
FAMILY_HELP = ("the address family of the run's traffic: 4 (IPv4, the default), 6 (IPv6) or both (each "
               "scenario once per family; the IPv6 results are named SCENARIO/v6)")
RUN_HELP = "a run's artifacts directory, its report.json, or a recorded evidence file (tests/data/scenarios/)"


def show_doc(doc: dict, as_json: bool, view) -> None:
    """report.json or a summary on stdout (--json), else its view for the terminal."""
    if as_json:
        print(_json.dumps(doc, indent=2, default=str))
    else:
        view()


def exit_with(code: int, message: str | None = None) -> None:
    """The one way a task ends with a non-zero code (lab.verdict decides the code)."""
    if code:
        raise Exit(message, code=code)


def exit_for(report: dict) -> None:
    """A run's exit code from its verdict (lab.verdict.EXIT_CODES); a run that could not be
    judged says why in one line."""
    from lab.verdict import EXIT_CODES

    code = EXIT_CODES.get(report["verdict"], 1)
    exit_with(code, "twlab: " + " ".join(str(report.get("error") or report["verdict"]).split()) if code == 2 else None)


