"""The command line: Invoke's Program and Task, made to keep the promises of README.md.

* A usage error is one ``twlab:`` line and exit 2. Invoke's own parser errors exit 1, the code
  that means "a check failed"; here they become a line naming the command as it was typed
  (``./twlab`` or ``invoke``), with the task or flag that was probably meant.
* ``-h`` and ``--help`` after a task show its help. Invoke gives a task's arguments short flags
  from their letters, so ``--shape`` took ``-h``; and a required positional (``run SCENARIO``)
  swallowed ``--help`` as the scenario. Here no argument gets ``-h`` (TwlabTask), and ``-h`` or
  ``--help`` anywhere after a task asks for that task's help.
* Scenario words: Invoke takes no list of positional words and reads a word it does not know as
  the next task's name, so every scenario is also a task. Before Invoke parses, ``rewrite`` turns
  scenario words after ``matrix`` or ``check`` into their ``--scenario`` flags, and a scenario word
  in a task's place into ``run SCENARIO``; flags may then follow them
  (``invoke check lost-ack --backend netns``, ``invoke lost-ack --backend netns``).

The tasks live in lab/tasks.py. ``./twlab`` (``python -m lab``) and the installed ``twlab`` command
run TwlabProgram with them as its namespace (``main``), wherever they are started. A plain
``invoke`` in a checkout runs Invoke's own Program, which loads the checkout's tasks.py; that file
re-exports lab/tasks.py and calls ``adopt()``, which makes the running Program a TwlabProgram, so
everything from then on (parsing the tasks, help, running them) is the same. Only Invoke's core
options are parsed before tasks.py is loaded: a malformed core option (``invoke --list-depth``)
still exits 1 under a plain ``invoke``, 2 under ``./twlab`` and ``twlab``.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import sys
from typing import Any

import invoke
from invoke import Exit, Program, Task
from invoke.exceptions import ParseError

from .errors import quoted, shortened
from .quickexit import leave
from .words import did_you_mean

__all__ = ["TwlabTask", "TwlabProgram", "task", "guarded", "adopt", "main", "rewrite", "scenario_names"]

TAKES_SCENARIOS = {"matrix": "scenario", "check": "scenario"}
SHORT_INSTEAD_OF_H = {"shape": "e"}      # the same letter in run, check and vm


def scenario_names() -> list[str]:
    """The catalog's names (cheap enough for every `invoke` start: no scenario is imported)."""
    from scenarios import names

    return names()


class TwlabTask(Task):
    """Invoke's Task, with -h left to help: an argument whose automatic short flag would be -h
    takes another letter of its name (SHORT_INSTEAD_OF_H first, else the first free one)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list:
        args = super().get_arguments(ignore_unknown_help)
        taken = {n for a in args for n in a.names}
        for arg in args:
            if "h" not in arg.names:
                continue
            long = arg.names[0]
            letters = [SHORT_INSTEAD_OF_H.get(long, "")] + list(long)
            free = next((c for c in letters if c.isalpha() and c != "h" and c not in taken), None)
            arg.names = (long, free) if free else (long,)
            taken.update(arg.names)
        return args


task = functools.partial(invoke.task, klass=TwlabTask)


def _flag(ctx: Any, tok: str) -> tuple[Any, bool] | None:
    """(argument, value attached?) when *tok* is one of the task's flags: --x, --x=v, -x, -xv."""
    if ctx is None or not tok.startswith("-") or tok in ("-", "--"):
        return None
    name, eq, _ = tok.partition("=")
    if name in ctx.flags:
        return ctx.flags[name], bool(eq)
    if name in ctx.inverse_flags:                  # --no-x: a boolean's
        return ctx.flags[ctx.inverse_flags[name]], True
    if not name.startswith("--") and len(name) > 2 and name[:2] in ctx.flags:
        return ctx.flags[name[:2]], True          # -bnetns, or a cluster of booleans (-jt)
    return None


def rewrite(argv: list[str], contexts: Any, scenarios: set[str]) -> tuple[list[str], str | None]:
    """The task part of argv as Invoke should read it, and the task whose help was asked for
    (-h/--help after it), if any. Mirrors the order in which Invoke's parser reads a word: a flag
    of the current task, the value it waits for, a positional argument, a task name."""
    out: list[str] = []
    ctx, positionals, waiting = None, 0, False
    for i, tok in enumerate(argv):
        if tok == "--":
            return out + argv[i:], None
        if ctx is not None and tok in ("-h", "--help"):
            return out, ctx.name
        flag = _flag(ctx, tok)
        if flag is not None:
            arg, attached = flag
            waiting = bool(arg.takes_value) and not attached
        elif waiting:
            waiting = False
        elif positionals:
            positionals -= 1
        elif ctx is not None and ctx.name in TAKES_SCENARIOS and tok in scenarios:
            out.append(f"--{TAKES_SCENARIOS[ctx.name]}")
        elif tok in scenarios and "run" in contexts:
            ctx, positionals = contexts["run"], 0
            out.append("run")
        elif tok in contexts:
            ctx = contexts[tok]
            positionals = len(ctx.positional_args)
        out.append(tok)
    return out, None


class TwlabProgram(Program):
    """Invoke's Program; usage errors exit 2 with one line (see the module's docstring)."""

    typed: str | None = None               # the command as the user typed it (./twlab); else argv[0]

    @property
    def command(self) -> str:
        return self.typed or self.called_as or "invoke"

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as exc:
            raise self.usage_error(exc) from None

    def parse_tasks(self) -> None:
        self.parser = self._make_parser()
        words, help_for = rewrite(list(self.core.unparsed), self.parser.contexts, set(scenario_names()))
        if help_for:
            self.print_task_help(help_for)
            raise Exit
        self.core.unparsed = words
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise self.usage_error(exc) from None

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as exc:
            raise self.usage_error(exc) from None

    exits_at_once = False                 # the process's own program (main, adopt): lab.quickexit

    def execute(self) -> None:
        try:
            self._execute()
        except Exit as exc:
            if self.exits_at_once:
                leave(exc.code, exc.message)
            raise
        if self.exits_at_once:
            leave(0)

    def _execute(self) -> None:
        try:
            super().execute()
        except BrokenPipeError:             # `... | head`: the reader has gone, as for any Unix tool
            _quiet_stdout()
            raise Exit(code=141) from None  # 128 + SIGPIPE, what a shell reports for one
        except KeyboardInterrupt as exc:    # one that escaped a task's guard (a second Ctrl-C landing
            raise _interrupted(exc) from None   # as the guard began): Invoke would exit 1, silently
        except Exit as exc:                 # the tasks' own lines say `invoke ...`: say what was typed
            if not exc.message:
                raise
            message = shortened(exc.message)
            if os.path.basename(self.command) not in ("invoke", "inv"):
                message = message.replace("`invoke ", f"`{self.command} ")
            raise Exit(message, code=exc.code) from None

    def usage_error(self, exc: ParseError) -> Exit:
        return Exit(shortened(f"twlab: {self.explain(str(exc), exc.context)}"), code=2)

    def explain(self, msg: str, ctx: Any) -> str:
        """Invoke's parser message, said for this command line."""
        cmd = self.command
        task_name = getattr(ctx, "name", None)
        contexts = getattr(getattr(self, "parser", None), "contexts", {}) or {}
        if m := re.fullmatch(r"No idea what '(.*)' is!", msg, re.DOTALL):
            word = m.group(1)
            if word.startswith("-") and task_name:
                flags = [f for f in ctx.flags if f.startswith("--")]
                return (f"`{cmd} {task_name}` has no flag {quoted(word)}" + did_you_mean(word, flags)
                        + f"; `{cmd} {task_name} --help` lists its flags")
            if word.startswith("-"):
                return f"{cmd} has no option {quoted(word)}; `{cmd} --help` lists them"
            names = [n for n in contexts if n not in scenario_names()] + scenario_names()
            return (f"unknown task or scenario {quoted(word)}" + did_you_mean(word, names)
                    + f"; `{cmd} --list` shows the tasks, `{cmd} list` the scenarios")
        if m := re.fullmatch(r"'(.*)' did not receive required positional arguments: (.*)", msg):
            name, missing = m.group(1), m.group(2).replace("'", "").upper()
            example = {"SCENARIO": "lost-ack", "HOST": "client"}.get(missing)
            return (f"`{cmd} {name}` needs {missing}"
                    + (f", e.g. `{cmd} {name} {example}`" if example else "")
                    + (f" (`{cmd} list` shows the scenarios)" if missing == "SCENARIO" else "")
                    + f"; `{cmd} {name} --help` explains it")
        if m := re.fullmatch(r"Flag <Argument: ([\w-]+).*> needed value and was not given one!", msg):
            where = f"`{cmd} {task_name} --help`" if task_name else f"`{cmd} --help`"
            return f"--{m.group(1).replace('_', '-')} needs a value; {where} explains it"
        return f"{quoted(msg)}; `{cmd} --help` explains the options"


def _interrupted(exc: BaseException) -> Exit:
    """Exit 130 with the line an interrupted task says: which signal, what became of its labs.
    Nothing is interrupted any more: a further Ctrl-C cuts neither the check nor the exit short."""
    from .cleanup import after_interrupt
    from .interrupts import ignore_while_exiting

    ignore_while_exiting()
    return Exit(f"twlab: {after_interrupt(exc)}", code=130)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def adopt() -> None:
    """Make a plain `invoke` (Invoke's own Program, already running and now loading a checkout's
    tasks.py) a TwlabProgram for the rest of its run: the same parsing and exit codes as ./twlab."""
    running = getattr(sys.modules.get("invoke.main"), "program", None)
    if type(running) is Program:
        running.__class__ = TwlabProgram
        _as_the_command(running)


def main(argv: list[str] | None = None) -> None:
    """The `twlab` command (pyproject's console script) and ./twlab's entry (python -m lab), with
    the tasks of lab/tasks.py wherever it starts: TWLAB_AS is the command as typed (./twlab's $0)."""
    from importlib.metadata import PackageNotFoundError, version

    from invoke import Collection

    from . import tasks

    typed = os.environ.pop("TWLAB_AS", "") or "twlab"
    try:
        ours = version("twlab")
    except PackageNotFoundError:
        ours = "unknown"
    program = TwlabProgram(name="twlab", binary=typed, binary_names=[os.path.basename(typed)],
                           version=ours, namespace=Collection.from_module(tasks))
    program.typed = typed
    if argv is None:                              # the process's command line, not a caller's
        _as_the_command(program)
    program.run(argv)


def _as_the_command(program: TwlabProgram) -> None:
    """*program* is this process's command: it ends through lab.quickexit, and the collector runs
    less often while it starts - every 20 000 new objects, not 700: the imports of a run made 70
    young-generation collections, 11 ms of its start-up here, and a command's few seconds leave
    no garbage worth them."""
    program.exits_at_once = True
    gc.set_threshold(20_000, *gc.get_threshold()[1:])


def guarded(fn):
    """Turn LabErrors into one line and exit code 2 (1 for WaitTimeout), never a traceback; an
    interrupt into exit 130 and a line saying which signal and whether the lab is gone (checked)."""
    from functools import wraps

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from lab.errors import LabError
        from lab.interrupts import interrupts_as_exceptions

        try:
            with interrupts_as_exceptions():     # SIGTERM and SIGHUP end a task as Ctrl-C does
                return fn(*args, **kwargs)
        except LabError as exc:
            raise Exit(f"twlab: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None
    return wrapper


def add_scenario_tasks(namespace: dict, run: Task) -> None:
    """Every scenario as a task of tasks.py (*namespace*, its globals()): `invoke lost-ack [flags]` is
    `invoke run lost-ack [flags]`; after `invoke matrix` or `invoke check` scenario words name the
    scenarios to run there (rewrite above)."""
    def scenario_task(name: str) -> Task:
        def body(c):
            run.body(c, name)
        body.__doc__ = f"= `invoke run {name}`; after matrix or check: a scenario for it"
        body.__name__ = name.replace("-", "_")
        return task(name=name)(body)

    for name in scenario_names():
        namespace[f"scenario_{name.replace('-', '_')}"] = scenario_task(name)
