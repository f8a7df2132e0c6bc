"""A matrix column's command inside a VM guest, started without Invoke and without site.

lab.vm.column asks the guest for ``matrix --kernel host --backend B --out DIR --json --family F
--scenario S ... [--stack HOST=STACK;...]``. Under TCG, Invoke's own imports (unittest.mock, importlib.metadata, its
vendored yaml: 1.8 s warm, more cold) and site's (.pth files, the editable install's finder: the
guest's ``python -c pass`` took 1.35 s, ``python -S -c pass`` 0.52 s) were paid once per column
for nothing the column uses. So for exactly those arguments the guest runs this module with
``python -S`` (the venv's site-packages put on sys.path by hand, the checkout as the working
directory), which calls lab.matrix.run_matrix as `invoke matrix` does and exits with the same code
(lab.matrix.exit_code). Any other arguments - a flag the column does not pass - go through
Invoke as before (``command`` returns None), so nothing is parsed two ways.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["command", "main"]

_COLUMN = ["matrix", "--kernel", "host"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matrix", add_help=False, exit_on_error=False)
    p.add_argument("--backend", required=True, choices=("netns", "docker"))
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--family", default="4")
    p.add_argument("--scenario", action="append", required=True)
    p.add_argument("--stack", action="append")
    return p


def _parse(args: list[str]) -> argparse.Namespace | None:
    if args[:3] != _COLUMN:
        return None
    try:
        ns, rest = _parser().parse_known_args(args[3:])
    except (argparse.ArgumentError, SystemExit):
        return None
    return None if rest else ns


def command(python: str, args: list[str]) -> list[str] | None:
    """The guest's command line for twlab *args* without Invoke, or None when they are not a
    matrix column of the guest's own kernel as lab.vm.column builds it."""
    if _parse(args) is None:
        return None
    import sysconfig

    site = sysconfig.get_paths()["purelib"]          # this venv's: the guest runs the same one
    # the collector every 20 000 new objects from the first import on, as lab.cli sets it for a command
    boot = (f"import gc, sys; gc.set_threshold(20_000, *gc.get_threshold()[1:]); sys.path[1:1] = [{site!r}]; "
            "from lab.vm.guest import main; main()")
    return [python, "-S", "-c", boot, *args]


def main(argv: list[str] | None = None) -> None:
    """Run the column (``sys.argv[1:]``: the twlab arguments) and end the process with its code."""
    from pathlib import Path

    from ..errors import LabError
    from ..family import parse_family
    from ..interrupts import interrupts_as_exceptions
    from ..matrix import exit_code, run_matrix
    from ..quickexit import leave

    ns = _parse(list(sys.argv[1:] if argv is None else argv))
    if ns is None:
        leave(2, f"twlab: the guest's column command takes {' '.join(_COLUMN)} and its flags only")
    progress = lambda s: print(s, file=sys.stderr, flush=True)      # noqa: E731
    try:
        with interrupts_as_exceptions():
            m = run_matrix(["host"], ns.scenario, out=Path(ns.out), backend=[ns.backend], progress=progress,
                           families=parse_family(ns.family), stacks=ns.stack)
    except LabError as exc:
        leave(exc.exit_code, f"twlab: {exc}")
    except KeyboardInterrupt:
        leave(130, "twlab: interrupted")
    if ns.json:
        print(json.dumps(m, indent=2, default=str))
    leave(exit_code(m))
